// SPDX-License-Identifier: MIT OR Apache-2.0
// DiskBudget: the size budget (oldest rows first, in chunks) and the free-space floor.
#include "disk_budget.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "ayaflow/common/logging.h"

namespace ayaflow::store::detail {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Data pages and free pages, read from the database header (no table is scanned).
constexpr const char* kPagesSql =
    "SELECT page_count, freelist_count, page_size "
    "FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()";
// As retention's: the inner SELECT walks idx_timestamp from the oldest row, so a chunk costs
// about its own size whatever the table's.
constexpr const char* kDeleteOldestSql =
    "DELETE FROM packets WHERE id IN (SELECT id FROM packets ORDER BY timestamp LIMIT ?1)";
constexpr const char* kOldestSql = "SELECT min(timestamp) FROM packets";

// A pass deletes until the size is this fraction of the budget under it, so that it does
// not start again at the next row.
constexpr std::uint64_t kLowWaterDivisor = 16;
// Writes resume once the free space is this fraction of the floor above it.
constexpr std::uint64_t kResumeDivisor = 8;
// The size is measured after this many rows written, or this long after the last
// measurement (~100 KB of raw rows: the slack past the budget).
constexpr std::size_t kMeasureRows = 1000;
constexpr auto kMeasureInterval = std::chrono::seconds(1);
// Pages given back to the file system per turn (auto_vacuum=INCREMENTAL files): 4 MiB.
constexpr int kVacuumPages = 1024;

std::string directoryOf(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::uint64_t fileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

std::int64_t pragmaInt(sqlite3* db, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) return -1;
  StmtPtr stmt(raw);
  return sqlite3_step(raw) == SQLITE_ROW ? sqlite3_column_int64(raw, 0) : -1;
}

/// "1.6 MiB": one decimal, so that a floor and the free space below it never read the same.
std::string mib(std::uint64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1u << 20));
  return text;
}

}  // namespace

DiskBudget::DiskBudget(sqlite3* db, const DbLocation& loc, const StoreOptions& options,
                       KeysWriter& keys)
    : db_(db), loc_(loc), options_(options), keys_(keys) {
  if (!loc.in_memory) {
    const char* file = sqlite3_db_filename(db, "main");
    if (file != nullptr && *file != '\0') {
      wal_path_ = std::string(file) + "-wal";
      directory_ = directoryOf(file);
    }
  }
  pages_stmt_ = prepare(db, kPagesSql, loc.display);
  delete_stmt_ = prepare(db, kDeleteOldestSql, loc.display);
  oldest_stmt_ = prepare(db, kOldestSql, loc.display);
  incremental_ = pragmaInt(db, "PRAGMA auto_vacuum") == 2;
  page_size_ =
      static_cast<std::uint64_t>(std::max<std::int64_t>(pragmaInt(db, "PRAGMA page_size"), 512));
  if (options.max_db_bytes != 0 && !wal_path_.empty()) {
    // The -wal file counts against the budget: under a small budget keep it to about an
    // eighth (checkpoints every ~1000 pages, 4 MiB, by default; never more often than every
    // 64 pages), and truncate it to a quarter after a burst (64 MiB by default).
    const std::uint64_t pages =
        std::clamp<std::uint64_t>(options.max_db_bytes / 8 / page_size_, 64, 1000);
    sqlite3_wal_autocheckpoint(db, static_cast<int>(pages));
    const std::uint64_t limit = std::min<std::uint64_t>(options.max_db_bytes / 4, 64u << 20);
    const std::string sql = "PRAGMA journal_size_limit=" + std::to_string(limit);
    exec(db, sql.c_str());
  }
}

void DiskBudget::measure() {
  sqlite3_stmt* s = pages_stmt_.get();
  if (sqlite3_step(s) == SQLITE_ROW) {
    page_size_ = static_cast<std::uint64_t>(sqlite3_column_int64(s, 2));
    file_pages_bytes_ = static_cast<std::uint64_t>(sqlite3_column_int64(s, 0)) * page_size_;
    free_pages_bytes_ = static_cast<std::uint64_t>(sqlite3_column_int64(s, 1)) * page_size_;
  }
  sqlite3_reset(s);
  const std::uint64_t wal = wal_path_.empty() ? 0 : fileSize(wal_path_);
  db_bytes_.store(file_pages_bytes_ - std::min(free_pages_bytes_, file_pages_bytes_) + wal,
                  std::memory_order_relaxed);
  file_bytes_.store(file_pages_bytes_ + wal, std::memory_order_relaxed);
}

bool DiskBudget::step(std::size_t rows_written) {
  const std::uint64_t max = options_.max_db_bytes;
  if (max == 0) return false;
  // Measuring costs ~20 us (each pragma opens a read transaction): once per kMeasureRows
  // rows written (0.02 us a row), at least once a second, and every turn of a pass.
  rows_since_measure_ += rows_written;
  const auto now = SteadyClock::now();
  if (!deleting_ && !vacuuming_ && measured_once_ && rows_since_measure_ < kMeasureRows &&
      now - last_measure_ < kMeasureInterval) {
    return false;
  }
  rows_since_measure_ = 0;
  last_measure_ = now;
  measured_once_ = true;
  measure();
  const std::uint64_t used = db_bytes_.load(std::memory_order_relaxed);
  if (!deleting_ && used > max) {
    deleting_ = true;
    pass_deleted_ = 0;
  }
  if (deleting_ && used <= max - max / kLowWaterDivisor) {
    deleting_ = false;
    if (pass_deleted_ > 0) {
      logger("store")->debug("{}: disk budget: deleted the {} oldest rows ({} used of {})",
                             loc_.display, pass_deleted_, mib(used), mib(max));
    }
  }
  if (deleting_) {
    deleteChunk(rows_written);
    // False when the chunk failed or found no row (what is over the budget is not rows: the
    // -wal file held by a reader, the summary): the writer sleeps instead of spinning, and
    // the next batch tries again.
    return deleting_;
  }
  // A file larger than the budget (the budget was lowered, or a pass just ended) gives its
  // free pages back when it can: only auto_vacuum=INCREMENTAL files can, a chunk per turn.
  vacuuming_ =
      incremental_ && file_bytes_.load(std::memory_order_relaxed) > max && free_pages_bytes_ > 0;
  if (vacuuming_) {
    const std::string sql = "PRAGMA incremental_vacuum(" + std::to_string(kVacuumPages) + ")";
    if (exec(db_, sql.c_str()) != SQLITE_OK) {
      loc_.errors->report(StorageErrors::kWrite, loc_.display, sqlite3_errmsg(db_));
      vacuuming_ = false;
    }
  }
  return vacuuming_;
}

void DiskBudget::deleteChunk(std::size_t rows_written) {
  const std::size_t chunk = std::max(options_.budget_chunk, 2 * rows_written);
  sqlite3_stmt* del = delete_stmt_.get();
  sqlite3_bind_int64(del, 1, static_cast<sqlite3_int64>(std::max<std::size_t>(chunk, 1)));
  const int rc = sqlite3_step(del);
  sqlite3_reset(del);
  chunks_.fetch_add(1, std::memory_order_relaxed);
  if (rc != SQLITE_DONE) {
    loc_.errors->report(
        StorageErrors::kWrite, loc_.display,
        std::string("disk budget: cannot delete the oldest rows: ") + sqlite3_errmsg(db_));
    deleting_ = false;  // tried again at the next turn
    return;
  }
  const auto deleted = static_cast<std::uint64_t>(sqlite3_changes(db_));
  rows_deleted_.fetch_add(deleted, std::memory_order_relaxed);
  pass_deleted_ += deleted;
  if (deleted == 0) deleting_ = false;  // no row left: the rest is not rows
  // The summary's epochs older than the oldest row left go with them (all of it when no
  // row is left): a query for an address never finds a bucket without its keys.
  std::int64_t oldest = INT64_MAX;
  sqlite3_stmt* q = oldest_stmt_.get();
  if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_type(q, 0) != SQLITE_NULL) {
    oldest = sqlite3_column_int64(q, 0);
  }
  sqlite3_reset(q);
  // Only when a whole epoch went: deleteBefore() also forgets the keys the summary writer
  // remembers, which then costs an INSERT per key again.
  const std::int64_t epoch = oldest == INT64_MAX ? INT64_MAX : keyEpoch(keyBucket(oldest));
  if (epoch <= keys_epoch_) return;
  keys_epoch_ = epoch;
  if (keys_.deleteBefore(oldest) != SQLITE_OK) {
    loc_.errors->report(
        StorageErrors::kWrite, loc_.display,
        std::string("disk budget: cannot delete old summary keys: ") + sqlite3_errmsg(db_));
  }
}

bool DiskBudget::paused(SteadyClock::time_point now) {
  if (directory_.empty() || now < next_free_check_) return paused_;
  next_free_check_ = now + options_.free_check_interval;
  struct statvfs vfs {};
  if (::statvfs(directory_.c_str(), &vfs) != 0) return paused_;  // unknown: no change
  const std::uint64_t unit = vfs.f_frsize != 0 ? vfs.f_frsize : vfs.f_bsize;
  const std::uint64_t total = static_cast<std::uint64_t>(vfs.f_blocks) * unit;
  const std::uint64_t free = static_cast<std::uint64_t>(vfs.f_bavail) * unit;
  std::uint64_t floor = UINT64_MAX;
  if (options_.min_free_bytes != 0) floor = options_.min_free_bytes;
  if (options_.min_free_percent != 0) {
    floor = std::min(floor, total / 100 * options_.min_free_percent);
  }
  if (floor == UINT64_MAX) floor = 0;
  free_bytes_.store(free, std::memory_order_relaxed);
  floor_bytes_.store(floor, std::memory_order_relaxed);
  if (!paused_ && free < floor) {
    paused_ = true;
    logger("store")->warn(
        "{}: writes paused: disk full ({} free on its file system, below the floor of {}); rows "
        "are dropped and counted until space returns",
        loc_.display, mib(free), mib(floor));
  } else if (paused_ && free >= floor + floor / kResumeDivisor) {
    paused_ = false;
    logger("store")->info("{}: writes resumed: {} free on its file system", loc_.display,
                          mib(free));
  }
  paused_flag_.store(paused_, std::memory_order_relaxed);
  return paused_;
}

void DiskBudget::close() {
  pages_stmt_.reset();
  delete_stmt_.reset();
  oldest_stmt_.reset();
}

DiskBudgetStats DiskBudget::stats() const {
  DiskBudgetStats s;
  s.rows_deleted = rows_deleted_.load(std::memory_order_relaxed);
  s.chunks = chunks_.load(std::memory_order_relaxed);
  s.db_bytes = db_bytes_.load(std::memory_order_relaxed);
  s.file_bytes = file_bytes_.load(std::memory_order_relaxed);
  s.free_bytes = free_bytes_.load(std::memory_order_relaxed);
  s.floor_bytes = floor_bytes_.load(std::memory_order_relaxed);
  s.paused = paused_flag_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace ayaflow::store::detail
