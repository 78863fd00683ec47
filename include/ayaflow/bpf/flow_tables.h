// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ayaflow/abi/event.h"

namespace ayaflow::bpf {

/// Receives each entry read out of a kernel flow table.
class FlowSink {
 public:
  virtual ~FlowSink() = default;
  virtual void onFlow(const ayaflow_flow_key& key, const ayaflow_flow_value& value) noexcept = 0;
};

/// The two kernel flow tables of aggregated mode (include/ayaflow/abi/event.h): the program
/// counts packets into flow_tables[0]; swapAndCollect() points it at the other table, which
/// returns only after every program run that could still use the old table has finished (the
/// kernel waits for an RCU grace period on a map-in-map update), then reads and empties the
/// old table. No packet is counted twice or missed, and nothing races with the reads.
///
/// Ownership: borrows the map fds of a BpfProgram, which must outlive it. Threads: one owning
/// thread. Memory: one preallocated chunk of keys and values (`chunk_entries` of each).
/// Errors: SystemError when a map operation fails (the table then keeps its entries and the
/// next call reads them).
class FlowTables {
 public:
  FlowTables(int outer_map_fd, int table_a_fd, int table_b_fd, std::size_t chunk_entries = 1024);

  /// Swaps the tables, then reads and empties the one just retired, passing every entry to
  /// `sink`. Returns the number of entries. Blocks for the grace period (milliseconds).
  std::size_t swapAndCollect(FlowSink& sink);

  /// For shutdown, once the programs are detached: swaps (so that a run still in flight
  /// finishes), then empties both tables. Returns the number of entries.
  std::size_t collectAll(FlowSink& sink);

  /// Which table (0 or 1) the program counts into now.
  int activeTable() const noexcept { return active_; }

 private:
  void swap();
  std::size_t drain(int table_fd, FlowSink& sink);
  std::size_t drainOneByOne(int table_fd, FlowSink& sink);

  int outer_fd_;
  int tables_[2];
  int active_ = 0;  // flow_tables[0] starts as table a (static initialisation in the program)
  bool batch_ops_ = true;
  std::vector<ayaflow_flow_key> keys_;
  std::vector<ayaflow_flow_value> values_;
};

}  // namespace ayaflow::bpf
