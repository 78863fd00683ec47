// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/health/health_collector.h"

#include <time.h>

#include <cstring>
#include <string_view>

namespace ayaflow::health {
namespace {

std::uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::size_t hashBytes(const void* data, std::size_t n) {
  return std::hash<std::string_view>{}(std::string_view(static_cast<const char*>(data), n));
}

/// A counter's growth since `prev`. A value below it means the entry was deleted (or
/// evicted) and created again since: everything it holds is new.
std::uint64_t growth(std::uint64_t now, std::uint64_t prev) {
  return now >= prev ? now - prev : now;
}

std::uint32_t clamp32(std::uint64_t v) {
  return v > 0xffffffffULL ? 0xffffffffU : static_cast<std::uint32_t>(v);
}

}  // namespace

flow::Packet toPacket(const HealthUpdate& u) noexcept {
  flow::Packet p;
  flow::copyTuple(u.tuple, p);
  p.direction = flow::Direction::kEgress;
  p.packets = 0;
  p.length = 0;
  p.timestamp_ns = u.timestamp_ns;
  p.retransmits = u.retransmits;
  p.drops = u.drops;
  p.drop_reason = u.drop_reason;
  p.srtt_us = u.srtt_us;
  return p;
}

std::size_t HealthCollector::TupleHash::operator()(const ayaflow_tuple& t) const {
  return hashBytes(&t, sizeof(t));
}
bool HealthCollector::TupleEq::operator()(const ayaflow_tuple& a, const ayaflow_tuple& b) const {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}
std::size_t HealthCollector::DropKeyHash::operator()(const ayaflow_drop_key& k) const {
  return hashBytes(&k, sizeof(k));
}
bool HealthCollector::DropKeyEq::operator()(const ayaflow_drop_key& a,
                                            const ayaflow_drop_key& b) const {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

HealthCollector::HealthCollector(HealthMaps& maps, CollectorOptions options)
    : maps_(maps), options_(options) {}

std::size_t HealthCollector::collect(const Sink& sink) { return collect(sink, monotonicNs()); }

std::size_t HealthCollector::collect(const Sink& sink, std::uint64_t now_ns) {
  const std::uint64_t gen = ++generation_;
  const std::uint64_t idle_ns =
      static_cast<std::uint64_t>(options_.idle_timeout.count()) * 1000000000ULL;
  std::size_t delivered = 0;
  HealthUpdate update;

  maps_.forEachSocket([&](const ayaflow_tuple& key, const ayaflow_sock_health& value) {
    auto [it, inserted] = sockets_.try_emplace(key);
    SocketState& st = it->second;
    if (inserted) st.changed_ns = now_ns;
    st.seen = gen;
    const std::uint64_t retrans = growth(value.retrans_segs, st.retrans);
    const bool new_sample = value.sample_ns != 0 && value.sample_ns != st.sample_ns;
    st.retrans = value.retrans_segs;
    st.sample_ns = value.sample_ns;
    if (retrans == 0 && !new_sample) return;
    st.changed_ns = now_ns;
    update = HealthUpdate{};
    update.tuple = key;
    update.is_socket = true;
    update.retransmits = clamp32(retrans);
    if (new_sample) {
      update.srtt_us = value.srtt_us;
      update.timestamp_ns = value.sample_ns;
    }
    sink(update);
    ++delivered;
  });

  drop_deltas_.clear();  // keeps its buckets: no allocation in the steady state
  maps_.forEachDrop([&](const ayaflow_drop_key& key, const ayaflow_drop_value& value) {
    auto [it, inserted] = drops_.try_emplace(key);
    DropState& st = it->second;
    if (inserted) st.changed_ns = now_ns;
    st.seen = gen;
    const std::uint64_t packets = growth(value.packets, st.packets);
    const std::uint64_t bytes =
        value.packets >= st.packets ? growth(value.bytes, st.bytes) : value.bytes;
    st.packets = value.packets;
    st.bytes = value.bytes;
    if (packets == 0) return;
    st.changed_ns = now_ns;
    DropDelta& d = drop_deltas_[key.tuple];
    d.packets += packets;
    d.bytes += bytes;
    if (value.last_ns > d.last_ns) d.last_ns = value.last_ns;
    if (packets > d.top_packets) {
      d.top_packets = packets;
      d.top_reason = key.reason;
    }
  });
  for (const auto& [tuple, d] : drop_deltas_) {
    update = HealthUpdate{};
    update.tuple = tuple;
    update.drops = clamp32(d.packets);
    update.drop_bytes = d.bytes;
    update.drop_reason = static_cast<std::uint16_t>(d.top_reason > 0xffff ? 0xffff : d.top_reason);
    update.timestamp_ns = d.last_ns;
    sink(update);
    ++delivered;
  }

  // Forget keys the maps no longer hold; delete (and forget) keys idle for too long.
  stale_sockets_.clear();
  for (auto it = sockets_.begin(); it != sockets_.end();) {
    if (it->second.seen != gen) {
      it = sockets_.erase(it);
    } else if (idle_ns != 0 && now_ns - it->second.changed_ns >= idle_ns) {
      stale_sockets_.push_back(it->first);
      it = sockets_.erase(it);
    } else {
      ++it;
    }
  }
  stale_drops_.clear();
  for (auto it = drops_.begin(); it != drops_.end();) {
    if (it->second.seen != gen) {
      it = drops_.erase(it);
    } else if (idle_ns != 0 && now_ns - it->second.changed_ns >= idle_ns) {
      stale_drops_.push_back(it->first);
      it = drops_.erase(it);
    } else {
      ++it;
    }
  }
  if (!stale_sockets_.empty()) maps_.removeSockets(stale_sockets_);
  if (!stale_drops_.empty()) maps_.removeDrops(stale_drops_);
  return delivered;
}

}  // namespace ayaflow::health
