// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace ayaflow::store {

/// Settings of the SQLite history: the writer (SqliteSink) and the reader (HistoryReader).
struct StoreOptions {
  std::string db_path = "traffic.db";        ///< SQLite file; ":memory:" keeps it in memory (tests)
  std::optional<std::uint64_t> retention_s;  ///< delete rows older than this; nullopt = keep
  std::size_t batch_rows = 1000;             ///< rows per write transaction (at most)
  /// Rows waiting for the writer (~100 bytes each while they wait); more are dropped and
  /// counted. About 40 ms of the writer's work: a burst's worth.
  std::size_t queue_rows = 16384;
  std::chrono::milliseconds retention_interval{60000};  ///< between two retention passes
  std::size_t retention_chunk = 5000;             ///< rows per DELETE statement of a retention pass
  std::chrono::milliseconds log_interval{10000};  ///< at most one drop warning per interval
  /// Distinct addresses and ports the packets_keys summary records per 10-second bucket
  /// (docs/storage.md); past it the bucket is marked saturated and ip/port queries scan it
  /// whole. Bounds the writer's extra work (~25 us per new key) when every packet brings a
  /// new address or port. Sensible: 4 096 .. 1 000 000.
  std::size_t keys_per_bucket = 32768;
  /// Time budget of one history query: past it the query is interrupted and fails with
  /// ETIMEDOUT (the API answers 503 with Retry-After); waiting for a free read connection
  /// counts against it. Sensible: 500 ms .. 30 s.
  std::chrono::milliseconds query_timeout{2000};
  /// Read connections for history queries, at most (each ~1 MiB of page cache while in
  /// use); a query that finds all in use waits for one within its budget. Sensible: 1 .. 8.
  std::size_t query_connections = 2;

  /// Disk budget (docs/storage.md "Disk budget"): past this many bytes (database pages in
  /// use plus the -wal file) the oldest rows are deleted, budget_chunk rows per writer turn,
  /// until the database is back under it; freed pages are reused, so the file stops growing
  /// there. 0 = unlimited. 1 GiB by default: a fixed size a node's disk can spare, whatever
  /// the packet rate (about 11 million raw rows).
  std::uint64_t max_db_bytes = std::uint64_t{1} << 30;
  std::size_t budget_chunk = 5000;  ///< rows per DELETE statement of the budget
  /// Free-space floor of the file system holding the database: below it writes pause (rows
  /// dropped and counted with reason disk_space) until space returns. The floor is
  /// min_free_bytes or min_free_percent of the file system, whichever is smaller (a 0 means
  /// that part is not set; both 0 = no floor). Default: 5 %, at most 512 MiB.
  std::uint64_t min_free_bytes = std::uint64_t{512} << 20;
  std::uint32_t min_free_percent = 5;
  /// How often the free space is measured (statvfs) while writing or paused.
  std::chrono::milliseconds free_check_interval{250};
};

}  // namespace ayaflow::store
