// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "ayaflow/flow/packet.h"
#include "ayaflow/flow/record.h"

namespace ayaflow::store {

/// A row waiting to be written, still binary (no text): one packet in raw mode, or one
/// directional flow's sums over a window in aggregated mode.
struct PendingRow {
  flow::IpAddress src, dst;
  std::int64_t timestamp_ms = 0;  ///< Unix ms (first packet's in aggregated mode)
  std::uint64_t length = 0;       ///< bytes
  std::uint64_t packet_count = 1;
  std::uint16_t src_port = 0, dst_port = 0;
  std::uint8_t protocol = 0;
  flow::Direction direction = flow::Direction::kIngress;

  /// The row for one packet seen at `unix_ms`.
  static PendingRow fromPacket(const flow::Packet& p, std::int64_t unix_ms) noexcept;
};

/// "TCP" (6), "UDP" (17) or "IP(n)": the protocol column's text (SPEC §4).
std::string protocolText(std::uint8_t protocol);

/// "ingress" or "egress".
const char* directionText(flow::Direction direction) noexcept;

/// Fills `out` (id 0, no hostnames or domain) from `row`, reusing out's string capacity.
void toRecord(const PendingRow& row, flow::FlowRecord& out);

/// Sums packets per directional flow (src, dst, src_port, dst_port, protocol, direction) per
/// window. Windows are aligned on Unix time: window k covers [k*W, (k+1)*W) ms, so every
/// agent with the same W cuts time the same way. A packet goes to the window of its own
/// timestamp. The row of a (flow, window) keeps the first packet's timestamp (the earliest
/// one, whatever the arrival order), the exact byte total and packet count.
///
/// Ownership/threads: a plain value owned by the store's writer thread; not thread-safe.
/// Memory: one entry per open (flow, window); the owner bounds it with openFlows().
class WindowAggregator {
 public:
  /// window_ms > 0.
  explicit WindowAggregator(std::int64_t window_ms);

  void add(const flow::Packet& p, std::int64_t unix_ms);

  /// Moves the sums of every window that ends at or before now_ms into `out`, ordered by
  /// timestamp; returns how many.
  std::size_t takeClosed(std::int64_t now_ms, std::vector<PendingRow>& out);

  /// Moves every sum into `out` (ordered by timestamp), closed or not; returns how many.
  std::size_t takeAll(std::vector<PendingRow>& out);

  /// Open (flow, window) sums.
  std::size_t openFlows() const noexcept { return sums_.size(); }

  /// End (Unix ms, exclusive) of the earliest open window, if any.
  std::optional<std::int64_t> nextWindowEnd() const;

  std::int64_t windowMs() const noexcept { return window_ms_; }

 private:
  struct Key {
    flow::IpAddress src, dst;
    std::int64_t window = 0;
    std::uint16_t src_port = 0, dst_port = 0;
    std::uint8_t protocol = 0;
    std::uint8_t direction = 0;
    std::uint8_t pad[2] = {};
    bool operator==(const Key& o) const noexcept;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };

  std::size_t take(std::optional<std::int64_t> before_window, std::vector<PendingRow>& out);

  std::int64_t window_ms_;
  std::unordered_map<Key, PendingRow, KeyHash> sums_;
  std::map<std::int64_t, std::size_t> windows_;  // window index -> open sums in it
};

}  // namespace ayaflow::store
