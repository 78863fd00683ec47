// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/health/health_probes.h"

namespace ayaflow::health {

/// What changed for one flow since the previous collect().
struct HealthUpdate {
  /// Sockets: the socket's local -> remote tuple; drops: the dropped packets' src -> dst.
  ayaflow_tuple tuple{};
  std::uint32_t retransmits = 0;   ///< retransmitted segments (sockets)
  std::uint32_t drops = 0;         ///< dropped packets (drops)
  std::uint64_t drop_bytes = 0;    ///< their IP bytes
  std::uint16_t drop_reason = 0;   ///< the reason with most drops in this delta (0 = none)
  std::uint32_t srtt_us = 0;       ///< smoothed RTT of a new sample; 0 = no new sample
  std::uint64_t timestamp_ns = 0;  ///< CLOCK_MONOTONIC of the RTT sample or the latest drop
  bool is_socket = false;          ///< true: from sock_health; false: from drop_flows
};

/// The update as a health-only packet (packets 0) for the live map and the history, as if
/// leaving its tuple's source (egress): the live connection map turns it round when the
/// source is the connection's remote end (flow::RecordOutcome::flipped). timestamp_ns 0 (no
/// sample time) is stamped downstream.
flow::Packet toPacket(const HealthUpdate& u) noexcept;

struct CollectorOptions {
  /// Map entries that have not changed for this long are deleted from the kernel maps (the
  /// collector forgets them too); 0 = never.
  std::chrono::seconds idle_timeout{120};
};

/// Turns the probes' cumulative per-key values into deltas, about once a second, on one
/// thread (not thread-safe). Exact: for every key, the deltas delivered sum to the kernel's
/// cumulative value, as long as the entry is not evicted from the LRU sock_health map (the
/// kernel totals stay exact regardless). Memory is bounded by the maps' sizes: state for a
/// key the map no longer holds is forgotten at the next collect(); buffers are reused.
/// Cost: one walk of each map (see HealthProbes), a hash lookup per entry.
/// HealthCollector does not own `maps`, which must outlive it.
class HealthCollector {
 public:
  using Sink = std::function<void(const HealthUpdate&)>;

  explicit HealthCollector(HealthMaps& maps, CollectorOptions options = {});

  /// Calls sink once per socket with a new retransmission or RTT sample and once per drop
  /// tuple with new drops (reasons merged: drops/drop_bytes summed, drop_reason the most
  /// counted). now_ns: CLOCK_MONOTONIC (bpf_ktime_get_ns's clock), for pruning. Returns the
  /// number of updates delivered.
  std::size_t collect(const Sink& sink);
  std::size_t collect(const Sink& sink, std::uint64_t now_ns);

  std::size_t trackedSockets() const { return sockets_.size(); }
  std::size_t trackedDrops() const { return drops_.size(); }

 private:
  struct TupleHash {
    std::size_t operator()(const ayaflow_tuple& t) const;
  };
  struct TupleEq {
    bool operator()(const ayaflow_tuple& a, const ayaflow_tuple& b) const;
  };
  struct DropKeyHash {
    std::size_t operator()(const ayaflow_drop_key& k) const;
  };
  struct DropKeyEq {
    bool operator()(const ayaflow_drop_key& a, const ayaflow_drop_key& b) const;
  };
  struct SocketState {
    std::uint64_t retrans = 0;
    std::uint64_t sample_ns = 0;
    std::uint64_t changed_ns = 0;
    std::uint64_t seen = 0;  // generation of the last walk that saw the key
  };
  struct DropState {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    std::uint64_t changed_ns = 0;
    std::uint64_t seen = 0;
  };
  struct DropDelta {
    std::uint64_t packets = 0, bytes = 0, last_ns = 0, top_packets = 0;
    std::uint32_t top_reason = 0;
  };

  HealthMaps& maps_;
  CollectorOptions options_;
  std::uint64_t generation_ = 0;
  std::unordered_map<ayaflow_tuple, SocketState, TupleHash, TupleEq> sockets_;
  std::unordered_map<ayaflow_drop_key, DropState, DropKeyHash, DropKeyEq> drops_;
  std::unordered_map<ayaflow_tuple, DropDelta, TupleHash, TupleEq> drop_deltas_;  // per pass
  std::vector<ayaflow_tuple> stale_sockets_;
  std::vector<ayaflow_drop_key> stale_drops_;
};

}  // namespace ayaflow::health
