// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/live_source.h"

#include <time.h>

#include <algorithm>
#include <utility>

#include "ayaflow/api/core_routes.h"
#include "ayaflow/common/interface_name.h"
#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/flow_key.h"

namespace ayaflow::api {

// /api/live's list comes from the map's candidate set only up to kTopTracked entries;
// beyond it every request would scan the whole map.
static_assert(kLiveTopConnections <= flow::ConnectionMap::kTopTracked,
              "raise ConnectionMap::kTopTracked with kLiveTopConnections");

namespace {

std::int64_t clockNs(clockid_t clock) noexcept {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

LiveConnection toLiveConnection(const flow::ConnectionEntry& entry) {
  LiveConnection c;
  c.connection = flow::formatConnection(entry.key);
  c.bytes_sent = entry.stats.bytes_sent;
  c.bytes_received = entry.stats.bytes_received;
  c.packets_count = entry.stats.packets_count;
  c.protocol = entry.key.protocol;
  c.tcp = entry.stats.tcp;
  for (const std::uint32_t ifindex : {entry.stats.ifindex_sent, entry.stats.ifindex_received}) {
    if (ifindex == 0) continue;
    std::string name = common::interfaceLabel(ifindex);
    if (std::find(c.interfaces.begin(), c.interfaces.end(), name) == c.interfaces.end()) {
      c.interfaces.push_back(std::move(name));
    }
  }
  if (!c.interfaces.empty()) c.interface = c.interfaces.front();
  return c;
}

MapLiveSource::MapLiveSource(std::function<Totals()> totals, const flow::ConnectionMap& map,
                             const enrich::Enricher* enricher)
    : totals_(std::move(totals)),
      map_(map),
      enricher_(enricher),
      started_(std::chrono::steady_clock::now()) {}

double MapLiveSource::uptimeSeconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

std::vector<LiveConnection> MapLiveSource::topConnections(std::size_t n) const {
  std::vector<LiveConnection> out;
  // Connections are named for when they were first seen (a pod IP may since have been
  // reused): their monotonic timestamps in Unix ms.
  const std::int64_t offset_ns = clockNs(CLOCK_REALTIME) - clockNs(CLOCK_MONOTONIC);
  const auto unixMs = [offset_ns](std::uint64_t monotonic_ns) {
    return (static_cast<std::int64_t>(monotonic_ns) + offset_ns) / 1000000;
  };
  for (const flow::ConnectionEntry& e : map_.top(n)) {
    LiveConnection c = toLiveConnection(e);
    c.counts_retransmits = counts_retransmits_;
    c.counts_drops = counts_drops_;
    if (c.tcp.drops != 0 && drop_reason_names_)
      c.drop_reason = drop_reason_names_(c.tcp.drop_reason);
    if (enricher_ != nullptr) {
      enrich::ConnectionNames names;
      enricher_->enrich(e.key, unixMs(e.stats.first_seen_ns), names);
      c.domain = std::move(names.domain);
      c.local_hostname = std::move(names.local.hostname);
      c.remote_hostname = std::move(names.remote.hostname);
      c.local_pod = std::move(names.local.pod);
      c.remote_pod = std::move(names.remote.pod);
      c.local_node = std::move(names.local.node);
      c.remote_node = std::move(names.remote.node);
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace ayaflow::api
