// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/flow_record.h"

namespace ayaflow::pipeline {

/// Sums packets per directional flow (src, dst, src_port, dst_port, protocol, direction) per
/// window. Windows are aligned on Unix time: window k covers [k*W, (k+1)*W) ms, so every
/// agent with the same W cuts time the same way. A packet goes to the window of its first
/// timestamp. The record of a (flow, window) keeps the earliest first_ms and the latest
/// last_ms whatever the arrival order, the exact byte total and packet count, and the
/// interface and flags of the first packet added.
///
/// Checkpoints: checkpoint() copies a provisional record of every open sum that changed since
/// the last acknowledged checkpoint, so the sinks can store a window's counts before it ends.
/// Each (flow, window) sum has an update_key shared by its provisional and final records.
///
/// Ownership/threads: a plain value owned by the pipeline thread; not thread-safe.
/// Memory: one entry per open (flow, window); the owner bounds it with openFlows().
class WindowAggregator {
 public:
  /// window_ms > 0.
  explicit WindowAggregator(std::int64_t window_ms);

  /// Adds a packet (or flow-table entry) whose packets span [first_ms, last_ms].
  void add(const flow::Packet& p, std::int64_t first_ms, std::int64_t last_ms);

  /// Moves the sums of every window that ends at or before now_ms into `out`, ordered by
  /// first_ms; returns how many.
  std::size_t takeClosed(std::int64_t now_ms, std::vector<FlowRecord>& out);

  /// Moves every sum into `out` (ordered by first_ms), closed or not; returns how many.
  std::size_t takeAll(std::vector<FlowRecord>& out);

  /// Copies into `out` a provisional record (cumulative sums) of every open sum changed since
  /// the last acknowledged checkpoint, ordered by first_ms; returns how many. Changes after
  /// the call belong to the next checkpoint.
  std::size_t checkpoint(std::vector<FlowRecord>& out);

  /// Every sink took the last checkpoint: the next one carries only later changes. Without
  /// it, the next checkpoint carries this one's records again (with their newer sums).
  void acknowledgeCheckpoint() noexcept { unacked_from_ = last_checkpoint_epoch_ + 1; }

  /// The next checkpoint carries every open sum (a sink lost an earlier one).
  void checkpointEverything() noexcept { unacked_from_ = 0; }

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

  struct Sum {
    FlowRecord record;
    std::uint64_t changed = 0;  ///< the epoch of the latest add()
  };
  using Sums = std::unordered_map<Key, Sum, KeyHash>;

  std::size_t take(std::optional<std::int64_t> before_window, std::vector<FlowRecord>& out);

  std::int64_t window_ms_;
  Sums sums_;
  std::map<std::int64_t, std::size_t> windows_;  // window index -> open sums in it
  std::uint64_t next_update_key_ = 1;
  std::uint64_t epoch_ = 1;  // checkpoints taken + 1
  std::uint64_t last_checkpoint_epoch_ = 0;
  std::uint64_t unacked_from_ = 1;  // sums changed in this epoch or later go into a checkpoint
};

}  // namespace ayaflow::pipeline
