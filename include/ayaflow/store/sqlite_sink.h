// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "ayaflow/pipeline/batch_queue.h"
#include "ayaflow/pipeline/flow_record.h"
#include "ayaflow/store/store_options.h"

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::store {
namespace detail {
struct DbLocation;
}

/// Counters of a SqliteSink; each exact (not a point-in-time cut).
struct SqliteSinkStats {
  std::uint64_t rows_stored = 0;     ///< rows committed (inserted)
  std::uint64_t rows_updated = 0;    ///< updates of checkpointed rows committed
  std::uint64_t packets_stored = 0;  ///< sum of packet_count of committed rows (at present)
  /// final records of failed transactions (a checkpointed row keeps its older counts)
  std::uint64_t rows_dropped_write_error = 0;
  std::uint64_t packets_dropped_write_error = 0;  ///< packets of those records not stored
  std::uint64_t batches = 0;                      ///< committed write transactions
  std::uint64_t write_errors = 0;                 ///< failed write transactions
  std::uint64_t rows_deleted = 0;                 ///< by retention (age)
  std::uint64_t retention_chunks = 0;             ///< DELETE statements run by retention
  std::uint64_t rows_deleted_size = 0;  ///< oldest rows deleted to stay within max_db_bytes
  std::uint64_t budget_chunks = 0;      ///< DELETE statements run for the size budget
  /// final records not written while writes were paused by the free-space floor
  std::uint64_t rows_dropped_disk_space = 0;
  std::uint64_t packets_dropped_disk_space = 0;  ///< packets of those records not stored
  std::uint64_t db_bytes = 0;          ///< database pages in use plus the -wal file (last measured)
  std::uint64_t db_file_bytes = 0;     ///< the database file plus the -wal file (last measured)
  std::uint64_t max_db_bytes = 0;      ///< the size budget; 0 = unlimited
  std::uint64_t disk_free_bytes = 0;   ///< free space of the database's file system (0: unknown)
  std::uint64_t disk_floor_bytes = 0;  ///< the free-space floor in bytes
  bool writes_paused = false;          ///< free space below the floor: rows are dropped
  std::uint64_t write_failures = 0;    ///< failed write statements (transactions, retention)
  std::uint64_t read_errors = 0;       ///< history queries failed by SQLite (not by their budget)
  std::uint64_t queries_timed_out = 0;  ///< history queries stopped by query_timeout
  std::uint64_t queries_busy = 0;       ///< history queries that found every connection busy
  pipeline::BatchQueueStats queue;      ///< the hand-off from the pipeline (rows)
};

/// The ayaflow_storage_* families of `stats`.
std::vector<prometheus::MetricFamily> storageFamilies(const SqliteSinkStats& stats);

/// The SQLite history's writer (table `packets`, see docs/storage.md): a record sink whose
/// thread alone owns the write connection and its prepared statements.
///
/// Writes: each batch from the pipeline is committed in transactions of at most batch_rows
/// rows; addresses, protocol and direction become text only while they are bound.
/// Aggregated mode: the first record of a (flow, window) sum (provisional or final) inserts
/// its row; later ones (same update_key) update that row in place by rowid, so a window
/// keeps one row per flow whose counts grow at each checkpoint and end exact. Retention
/// deletes rows older than retention_s every retention_interval, retention_chunk rows per
/// statement, serving the queue between chunks. The disk budget (docs/storage.md) deletes the
/// oldest rows, a chunk per turn, past max_db_bytes, and pauses writes (rows dropped and
/// counted) while the file system's free space is below the floor.
///
/// Threads: consume() on the pipeline thread (a full queue drops the batch and counts its
/// rows; while the pipeline flushes or stops it waits for room, bounded); flush(), stop(),
/// stats(), metrics() from any other thread.
///
/// Errors: the constructor throws ConfigError (one line naming the file, the file left
/// untouched) when the path is not a SQLite database, the database is damaged, or its
/// directory is not writable, and SystemError on other SQLite failures. After that nothing
/// throws: rows that cannot be stored (queue full, disk full, I/O error) are counted and
/// logged (logger "store") at most once per log_interval, and writing resumes by itself when
/// the cause goes away.
class SqliteSink final : public pipeline::RecordSink {
 public:
  explicit SqliteSink(StoreOptions options);
  ~SqliteSink() override;  ///< stop()
  SqliteSink(const SqliteSink&) = delete;
  SqliteSink& operator=(const SqliteSink&) = delete;

  const char* name() const noexcept override { return "sqlite"; }
  bool consume(pipeline::BatchPtr batch, Deadline room_until) noexcept override;
  bool takeCheckpointLost() noexcept override;
  void flush() override;
  /// Writes every queued batch, stops the thread and closes the write connection.
  void stop() override;

  SqliteSinkStats stats() const;

  /// ayaflow_storage_* families.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

  /// Waits until every batch consumed before the call is written and any retention pass in
  /// progress has finished. For tests.
  void syncForTest();

 private:
  friend class HistoryReader;  // reads the same database
  const detail::DbLocation& location() const;
  std::chrono::milliseconds queryTimeout() const;
  std::size_t queryConnections() const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::store
