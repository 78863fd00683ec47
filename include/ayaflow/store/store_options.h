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
  std::chrono::milliseconds query_timeout{5000};  ///< a history query running longer fails
};

}  // namespace ayaflow::store
