// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ayaflow/flow/packet.h"
#include "ayaflow/flow/record.h"

namespace ayaflow::store {

/// Settings of a Store. Defaults follow SPEC §4.
struct StoreOptions {
  std::string db_path = "traffic.db";        ///< SQLite file; ":memory:" keeps it in memory (tests)
  std::uint32_t aggregation_window_s = 0;    ///< 0: a row per packet; N: per flow per N s
  std::optional<std::uint64_t> retention_s;  ///< delete rows older than this; nullopt = keep
  std::size_t batch_rows = 1000;             ///< rows per write transaction (at most)
  std::chrono::milliseconds batch_interval{2000};  ///< pending rows are written this often
  std::size_t queue_capacity = 65536;  ///< packets the capture side may queue (preallocated)
  std::chrono::milliseconds retention_interval{60000};  ///< between two retention passes
  std::size_t retention_chunk = 5000;  ///< rows per DELETE statement of a retention pass
  std::size_t max_open_flows = 65536;  ///< aggregated mode: open (flow, window) sums in memory
  std::chrono::milliseconds log_interval{10000};  ///< at most one drop warning per interval
  std::chrono::milliseconds query_timeout{5000};  ///< a history query running longer fails
  /// Optional: called on the writer thread for every row just before it is inserted,
  /// to fill src_hostname / dst_hostname / domain. Must not block for long; an
  /// exception it throws is logged once and the row is stored as it is.
  std::function<void(flow::FlowRecord&)> enrich;
};

/// Counters of a Store; a snapshot of atomics (each exact, not a point-in-time cut).
/// "Packets" are submit() calls; a stored row holds packet_count of them (1 in raw mode).
struct StoreStats {
  std::uint64_t packets_queued = 0;               ///< accepted by submit()
  std::uint64_t rows_dropped_queue_full = 0;      ///< packets refused: queue full
  std::uint64_t rows_dropped_stopped = 0;         ///< packets submitted after stop()
  std::uint64_t rows_stored = 0;                  ///< rows committed
  std::uint64_t packets_stored = 0;               ///< sum of packet_count of committed rows
  std::uint64_t rows_dropped_write_error = 0;     ///< rows of failed transactions
  std::uint64_t packets_dropped_write_error = 0;  ///< packets in those rows
  std::uint64_t batches = 0;                      ///< committed write transactions
  std::uint64_t write_errors = 0;                 ///< failed write transactions
  std::uint64_t rows_deleted = 0;                 ///< by retention
  std::uint64_t retention_chunks = 0;             ///< DELETE statements run by retention
  std::size_t queue_depth = 0;                    ///< packets waiting in the queue now
  std::size_t queue_capacity = 0;
  std::size_t open_flows = 0;  ///< aggregated mode: (flow, window) sums not yet written
};

/// Persistent history (SPEC §4): packets in, rows in the SQLite table `packets` out.
///
/// Ownership: owns one writer thread, which alone owns the write connection and its
/// prepared statements, and a small pool of read-only connections for query().
///
/// Threads: submit() is for the capture thread (any thread; it is safe to call from
/// several); it never waits on SQLite and never allocates: packets go into a preallocated
/// ring of `queue_capacity` guarded by a mutex held for one copy. query() and stats() may be
/// called from any thread at any time, concurrently with writes (WAL). flush(), stop() and
/// the destructor may be called from any thread except the writer (from enrich).
///
/// Writes: raw mode buffers rows and commits them in one transaction per `batch_rows` rows
/// or per `batch_interval`, whichever comes first. Aggregated mode sums packets per
/// directional flow (src, dst, ports, protocol, direction) per window of N s aligned on Unix
/// time, and writes a window's rows once it has ended. Timestamps: a packet's CLOCK_MONOTONIC
/// timestamp_ns becomes Unix ms with the writer's CLOCK_REALTIME - CLOCK_MONOTONIC offset;
/// a packet with timestamp_ns 0 is stamped when the writer takes it.
///
/// Errors: the constructor throws ConfigError (one line naming the file, the file left
/// untouched) when the path is not a SQLite database, the database is damaged, or its
/// directory is not writable, and SystemError on other SQLite failures. After that nothing
/// on the write path throws: rows that cannot be stored (queue full, disk full, I/O error)
/// are counted in stats() and logged (logger "store") at most once per `log_interval`, and
/// writing resumes by itself when the cause goes away. query() throws SystemError.
class Store {
 public:
  explicit Store(StoreOptions options);
  ~Store();  ///< stop()
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  /// Hands one packet to the writer. Never blocks on SQLite, never allocates; when the
  /// queue is full the packet is counted in rows_dropped_queue_full.
  void submit(const flow::Packet& packet) noexcept;

  /// Writes everything submitted before the call (pending batch, open aggregation windows
  /// included) and returns when it is committed or has failed. No-op after stop().
  void flush();

  /// Drains the queue, writes the pending batch and open windows, stops the writer thread
  /// and closes the write connection. Idempotent. query() keeps working afterwards.
  void stop();

  /// Stored rows, newest first (timestamp, then id, descending), matching every filter of
  /// `q`; at most q.limit (clamped to 1..HistoryQuery::kMaxLimit). Read-only connection,
  /// never waits for a write batch. Throws SystemError on failure, with code ETIMEDOUT
  /// when the query ran longer than `query_timeout`.
  std::vector<flow::FlowRecord> query(const flow::HistoryQuery& q) const;

  StoreStats stats() const;

  /// The database path as given.
  const std::string& path() const;

  /// Waits until the writer has taken every packet submitted before the call and dealt with
  /// it by the normal rules (full batches committed, a partial batch kept pending), and
  /// until any retention pass in progress has finished. For tests.
  void syncForTest();

  /// SQLite's EXPLAIN QUERY PLAN for the history query `q`, one detail per line. For tests.
  std::string queryPlanForTest(const flow::HistoryQuery& q) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::store
