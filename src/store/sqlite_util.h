// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_store: RAII for sqlite3 handles and the start-up checks.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

namespace ayaflow::store::detail {

struct DbCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const noexcept { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

/// Width of a time bucket of the `packets_keys` summary (see docs/storage.md). Part of the
/// file format: a database's buckets are all this wide.
constexpr std::int64_t kKeyBucketMs = 10000;

/// Buckets per epoch of the summary (1 minute): its primary key starts with the epoch, so
/// the writer's inserts stay within the newest epoch's part of the tree, and a query looks an
/// address up once per epoch.
constexpr std::int64_t kKeyEpochBuckets = 6;

/// Floor division (negative timestamps too).
constexpr std::int64_t floorDiv(std::int64_t a, std::int64_t b) noexcept {
  return a >= 0 ? a / b : -((-(a + 1)) / b) - 1;
}

/// The summary bucket of a row's timestamp, and the epoch of a bucket.
constexpr std::int64_t keyBucket(std::int64_t timestamp_ms) noexcept {
  return floorDiv(timestamp_ms, kKeyBucketMs);
}
constexpr std::int64_t keyEpoch(std::int64_t bucket) noexcept {
  return floorDiv(bucket, kKeyEpochBuckets);
}
static_assert(keyBucket(-1) == -1 && keyBucket(0) == 0 && keyBucket(-10000) == -1 &&
              keyBucket(-10001) == -2 && keyEpoch(5) == 0 && keyEpoch(6) == 1 &&
              keyEpoch(-1) == -1);

/// Runtime SQLite failures of one database, for the writer and its readers: counted, and
/// logged (logger "store", warning) once per distinct cause and at most once per
/// log_interval for a repeated one. Thread-safe.
class StorageErrors {
 public:
  enum Operation { kRead = 0, kWrite = 1 };

  /// Counts a failure of `op` and logs `cause` (SQLite's message) if it is new or the last
  /// line for `op` is older than log_interval.
  void report(Operation op, const std::string& display, const std::string& cause);
  /// Counts a failure of `op` that its caller logs itself.
  void add(Operation op) noexcept { counts_[op].fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t count(Operation op) const noexcept {
    return counts_[op].load(std::memory_order_relaxed);
  }

  std::atomic<std::uint64_t> query_timeouts{0};  ///< history queries stopped by their budget
  std::atomic<std::uint64_t> query_busy{0};      ///< history queries that found no free connection
  std::atomic<std::int64_t> log_interval_ms{10000};

 private:
  std::atomic<std::uint64_t> counts_[2] = {};
  std::mutex mu_;
  struct Last {
    std::string cause;
    std::chrono::steady_clock::time_point at;
    std::uint64_t suppressed = 0;
    bool logged = false;
  } last_[2];  // guarded by mu_
};

/// Where and how to open the database: a file path, or a memdb URI for ":memory:".
struct DbLocation {
  std::string display;  ///< the path as the user gave it (used in messages)
  std::string open_name;
  bool uri = false;
  bool in_memory = false;
  std::shared_ptr<StorageErrors> errors = std::make_shared<StorageErrors>();  ///< shared by copies
};

DbLocation locate(const std::string& db_path);

/// Start-up checks that read but never modify anything: the directory is writable, an
/// existing file is writable and starts with the SQLite header, and PRAGMA quick_check says
/// "ok". Throws ConfigError with one line naming the file.
void checkBeforeOpen(const DbLocation& loc);

/// Opens the write connection: WAL, synchronous=NORMAL, busy timeout, the `packets` table
/// created or migrated in place (missing columns added), the timestamp index, the
/// `packets_keys` summary and `ayaflow_meta` (keys_from_ms: rows older than that may predate
/// the summary). Throws ConfigError (file unusable) or SystemError.
DbPtr openWriter(const DbLocation& loc);

/// Opens a read-only connection whose busy timeout is `busy_timeout`. Throws SystemError.
DbPtr openReader(const DbLocation& loc,
                 std::chrono::milliseconds busy_timeout = std::chrono::milliseconds(5000));

/// SQL that adds every row of `packets` to `packets_keys` (idempotent). For tests and for
/// rebuilding the summary by hand (docs/storage.md).
extern const char* const kRebuildKeysSql;

/// Prepares `sql` on `db`; throws SystemError naming `what` on failure.
StmtPtr prepare(sqlite3* db, const char* sql, const std::string& what);

/// Runs `sql` (no results); returns the SQLite result code.
int exec(sqlite3* db, const char* sql) noexcept;

}  // namespace ayaflow::store::detail
