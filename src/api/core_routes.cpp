// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/core_routes.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace ayaflow::api {
namespace {

Response jsonResponse(const nlohmann::json& body) {
  Response response;
  // Connection strings come from the kernel side; never let a stray byte turn into a throw.
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

/// The connection's health figures (docs/api.md), each only where it means something: the TCP
/// state, flags and RTT for TCP; retransmissions (TCP) and drops while their probe is attached.
void addHealth(nlohmann::json& stats, const LiveConnection& c) {
  const flow::ConnectionHealth& t = c.tcp;
  if (c.protocol == 6) {
    const std::string_view state = flow::toString(t.state);
    if (!state.empty()) stats["state"] = state;
    if (t.flags_sent != 0) stats["tcp_flags_sent"] = flow::tcpFlagsText(t.flags_sent);
    if (t.flags_received != 0) stats["tcp_flags_received"] = flow::tcpFlagsText(t.flags_received);
    if (t.rttUs() != 0) {
      stats["rtt_us"] = t.rttUs();
      stats["rtt_kind"] = flow::toString(t.rttKind());
    }
    if (t.handshake_rtt_us != 0) stats["handshake_rtt_us"] = t.handshake_rtt_us;
    if (t.srtt_us != 0) stats["srtt_us"] = t.srtt_us;
    if (c.counts_retransmits) stats["retransmits"] = t.retransmits;
  }
  if (c.counts_drops) stats["drops"] = t.drops;
  if (!c.drop_reason.empty()) stats["drop_reason"] = c.drop_reason;
}

double perSecond(std::uint64_t total, double uptime) {
  return uptime > 0.0 ? static_cast<double>(total) / uptime : 0.0;
}

/// The top-connections list, recomputed at most once per `max_age` by a single request at
/// a time; requests arriving while it is being recomputed get the previous list.
/// Thread-safe (called from every server thread).
class TopCache {
 public:
  using Clock = std::chrono::steady_clock;
  using List = std::shared_ptr<const std::vector<LiveConnection>>;

  TopCache(const LiveSource& source, std::chrono::milliseconds max_age)
      : source_(source), max_age_(max_age) {}

  List get() {
    if (max_age_.count() <= 0) return compute();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (list_ && Clock::now() - computed_at_ < max_age_) return list_;
    }
    std::unique_lock<std::mutex> computing(compute_mutex_, std::try_to_lock);
    if (!computing.owns_lock()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (list_) return list_;  // someone is refreshing it: this one is at most one age old
      }
      computing.lock();  // the very first computation: wait for it
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (list_ && Clock::now() - computed_at_ < max_age_) return list_;  // just refreshed
    }
    List fresh = compute();  // may throw: the router answers 500, the old list stays
    std::lock_guard<std::mutex> lock(mutex_);
    list_ = fresh;
    computed_at_ = Clock::now();
    return fresh;
  }

 private:
  List compute() const {
    auto list =
        std::make_shared<std::vector<LiveConnection>>(source_.topConnections(kLiveTopConnections));
    // Defensive: a source returning more than asked must not widen the answer.
    if (list->size() > kLiveTopConnections) list->resize(kLiveTopConnections);
    return list;
  }

  const LiveSource& source_;
  const std::chrono::milliseconds max_age_;
  std::mutex compute_mutex_;  // held by the one request recomputing the list
  std::mutex mutex_;
  List list_;                        // guarded by mutex_
  Clock::time_point computed_at_{};  // guarded by mutex_
};

}  // namespace

void addCoreRoutes(Router& router, const LiveSource& source,
                   std::chrono::milliseconds live_max_age) {
  router.add("GET", "/api/health", [&source](const Request&) {
    const auto totals = source.totals();
    return jsonResponse({{"status", "ok"},
                         {"active_connections", source.activeConnections()},
                         {"total_packets", totals.packets}});
  });

  router.add("GET", "/api/stats", [&source](const Request&) {
    const auto totals = source.totals();
    const double uptime = source.uptimeSeconds();
    return jsonResponse({{"uptime_seconds", uptime},
                         {"total_packets", totals.packets},
                         {"total_bytes", totals.bytes},
                         {"active_connections", source.activeConnections()},
                         {"packets_per_second", perSecond(totals.packets, uptime)},
                         {"bytes_per_second", perSecond(totals.bytes, uptime)}});
  });

  auto top = std::make_shared<TopCache>(source, live_max_age);
  router.add("GET", "/api/live", [&source, top](const Request&) {
    auto connections = nlohmann::json::array();
    const TopCache::List list = top->get();  // keeps the list alive while it is read
    for (const auto& c : *list) {
      nlohmann::json entry = {{"connection", c.connection},
                              {"stats",
                               {{"bytes_sent", c.bytes_sent},
                                {"bytes_received", c.bytes_received},
                                {"packets_count", c.packets_count}}}};
      // Present only when known (deep inspection, --resolve-dns).
      if (!c.interface.empty()) entry["interface"] = c.interface;
      if (!c.interfaces.empty()) entry["interfaces"] = c.interfaces;
      if (c.domain) entry["domain"] = *c.domain;
      if (c.local_hostname) entry["local_hostname"] = *c.local_hostname;
      if (c.remote_hostname) entry["remote_hostname"] = *c.remote_hostname;
      addEndpointNames(entry, "local_", c.local_pod.get(), c.local_node.get());
      addEndpointNames(entry, "remote_", c.remote_pod.get(), c.remote_node.get());
      addHealth(entry["stats"], c);
      connections.push_back(std::move(entry));
    }
    const auto totals = source.totals();
    return jsonResponse({{"connections", std::move(connections)},
                         {"total_packets", totals.packets},
                         {"total_bytes", totals.bytes}});
  });
}

std::string streamFrame(const LiveSource& source) {
  const auto totals = source.totals();
  const nlohmann::json frame = {{"total_packets", totals.packets},
                                {"total_bytes", totals.bytes},
                                {"active_connections", source.activeConnections()}};
  return frame.dump();
}

}  // namespace ayaflow::api
