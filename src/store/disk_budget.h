// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_store: the disk budget of the SQLite history (docs/storage.md "Disk
// budget"): a size budget that deletes the oldest rows in chunks, and a free-space floor of
// the file system below which writes pause. Used by SqliteSink's writer thread only.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "ayaflow/store/store_options.h"
#include "keys_writer.h"
#include "sqlite_util.h"

namespace ayaflow::store::detail {

/// Counters and gauges of a DiskBudget, readable from any thread.
struct DiskBudgetStats {
  std::uint64_t rows_deleted = 0;  ///< rows deleted to stay within max_db_bytes
  std::uint64_t chunks = 0;        ///< DELETE statements run for the budget
  std::uint64_t db_bytes = 0;      ///< last measured: pages in use plus the -wal file
  std::uint64_t file_bytes = 0;    ///< last measured: the database file plus the -wal file
  std::uint64_t free_bytes = 0;    ///< last measured free space of the file system (0: unknown)
  std::uint64_t floor_bytes = 0;   ///< the free-space floor in bytes at the last measurement
  bool paused = false;             ///< writes paused: free space below the floor
};

/// Keeps the database within StoreOptions::max_db_bytes and pauses writes below the
/// free-space floor. Not thread-safe except stats(): the writer thread owns it, with the
/// connection its statements are prepared on.
///
/// Size: measured from SQLite's own page counts (page_count - freelist_count pages, i.e. the
/// pages holding data; free pages are reused before the file grows) plus the -wal file's
/// size: ~20 us, so once per 1000 rows written or per second. Past the budget the oldest rows
/// (by timestamp) go, one chunk per turn, until the size is 1/16 under the budget; the
/// packets_keys summary loses the epochs older than the oldest row left. A database created
/// with auto_vacuum=INCREMENTAL also gives its free pages back to the file system while the
/// file is larger than the budget (so a lowered budget shrinks it).
///
/// Floor: the file system's free space (statvfs) at most once per free_check_interval; below
/// the floor writes pause (the caller drops rows and counts them) and resume once the free
/// space is 1/8 of the floor above it. One log line on entering and on leaving the state.
class DiskBudget {
 public:
  /// Prepares its statements on `db`; tunes the WAL's size to a small budget. Throws as
  /// prepare() does.
  DiskBudget(sqlite3* db, const DbLocation& loc, const StoreOptions& options, KeysWriter& keys);

  /// True while writes are paused by the free-space floor; measures it when due.
  bool paused(std::chrono::steady_clock::time_point now);
  /// When the floor is measured next (the writer wakes up for it while paused).
  std::chrono::steady_clock::time_point nextFreeCheck() const { return next_free_check_; }

  /// One turn of the size budget after `rows_written` rows were committed: measures the size
  /// and, past the budget, deletes one chunk of the oldest rows (at least twice the rows just
  /// written, so that deleting outruns writing). True while more chunks are due (the writer
  /// should not sleep).
  bool step(std::size_t rows_written);

  /// Finalizes its statements (before the connection closes); stats() stay readable.
  void close();

  DiskBudgetStats stats() const;

 private:
  void measure();
  void deleteChunk(std::size_t rows_written);

  sqlite3* const db_;
  const DbLocation& loc_;
  const StoreOptions& options_;
  KeysWriter& keys_;
  std::string wal_path_;   // empty: in memory
  std::string directory_;  // holding the database (statvfs)
  StmtPtr pages_stmt_;     // page_count, freelist_count, page_size
  StmtPtr delete_stmt_;    // the oldest rows
  StmtPtr oldest_stmt_;    // min(timestamp) left
  bool incremental_ = false;
  std::int64_t keys_epoch_ = INT64_MIN;  // the summary holds no epoch before this one
  bool deleting_ = false;
  bool vacuuming_ = false;  // giving free pages back: measured every turn
  bool measured_once_ = false;
  std::size_t rows_since_measure_ = 0;
  std::chrono::steady_clock::time_point last_measure_{};
  std::uint64_t pass_deleted_ = 0;
  std::uint64_t file_pages_bytes_ = 0;
  std::uint64_t free_pages_bytes_ = 0;
  std::uint64_t page_size_ = 4096;
  std::chrono::steady_clock::time_point next_free_check_{};
  bool paused_ = false;

  std::atomic<std::uint64_t> rows_deleted_{0}, chunks_{0}, db_bytes_{0}, file_bytes_{0},
      free_bytes_{0}, floor_bytes_{0};
  std::atomic<bool> paused_flag_{false};
};

}  // namespace ayaflow::store::detail
