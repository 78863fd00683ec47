// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
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
/// Memory: one entry per open (flow, window); the owner bounds it with openFlows(). An open
/// sum takes 112 B in a dense array plus an 8-byte index slot (the index is 0.35 to 0.7
/// full: 11 to 23 B per sum), about 128 B; a node-based hash map took 216 B. Both arrays
/// are mapped pages: taking the sums out gives their pages back as it goes, so the records
/// taken and the sums they came from are not resident at the same time.
class WindowAggregator {
 public:
  /// window_ms > 0.
  explicit WindowAggregator(std::int64_t window_ms);
  ~WindowAggregator();
  WindowAggregator(const WindowAggregator&) = delete;
  WindowAggregator& operator=(const WindowAggregator&) = delete;
  WindowAggregator(WindowAggregator&& o) noexcept;
  WindowAggregator& operator=(WindowAggregator&& o) noexcept;

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
  std::size_t openFlows() const noexcept { return count_; }

  /// Bytes allocated for the open sums (dense array and index), resident or not.
  std::size_t memoryBytes() const noexcept;

  /// Bytes of one open sum in the dense array (the index adds 8 B per slot).
  static std::size_t entryBytes() noexcept;

  /// End (Unix ms, exclusive) of the earliest open window, if any.
  std::optional<std::int64_t> nextWindowEnd() const;

  std::int64_t windowMs() const noexcept { return window_ms_; }

 private:
  struct Entry;
  struct Slot;

  void growIndex(std::size_t slots);
  void resizeEntries(std::size_t entries);
  void rebuildIndex();
  std::size_t take(std::optional<std::int64_t> before_window, std::vector<FlowRecord>& out);
  void release() noexcept;

  std::int64_t window_ms_;
  Entry* entries_ = nullptr;  // [0, count_) live, capacity_ allocated (mapped)
  std::size_t count_ = 0;
  std::size_t capacity_ = 0;
  Slot* index_ = nullptr;  // index_slots_ slots (a power of two, or 0), mapped
  std::size_t index_slots_ = 0;
  std::map<std::int64_t, std::size_t> windows_;  // window index -> open sums in it
  std::uint64_t next_update_key_ = 1;
  // 32 bits: one checkpoint a second wraps after 136 years.
  std::uint32_t epoch_ = 1;  // checkpoints taken + 1
  std::uint32_t last_checkpoint_epoch_ = 0;
  std::uint32_t unacked_from_ = 1;  // sums changed in this epoch or later go into a checkpoint
};

}  // namespace ayaflow::pipeline
