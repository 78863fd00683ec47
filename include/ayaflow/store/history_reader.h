// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ayaflow/flow/history.h"
#include "ayaflow/store/sqlite_sink.h"

namespace ayaflow::store {

/// Reads the SQLite history for GET /api/history over a bounded pool of read-only
/// connections (StoreOptions::query_connections), concurrently with the writer (WAL): a
/// query never waits for a write batch.
///
/// Reads the database `writer` writes (which created or migrated the table), with the
/// writer's query_timeout; for ":memory:" the same in-memory database, which it keeps alive
/// after the writer stops. Threads: query() may be called from any thread, concurrently;
/// each holds one connection for at most query_timeout.
/// Errors: query() throws SystemError: ETIMEDOUT when it ran longer than query_timeout or
/// found no free connection within it (counted in the writer's stats; the connection stays
/// usable), EIO when SQLite fails (the cause is counted and logged by the writer's
/// StorageErrors, once per distinct cause, and the connection is closed).
class HistoryReader {
 public:
  explicit HistoryReader(const SqliteSink& writer);
  ~HistoryReader();
  HistoryReader(const HistoryReader&) = delete;
  HistoryReader& operator=(const HistoryReader&) = delete;

  /// Stored rows, newest first (timestamp, then id, descending), matching every filter of
  /// `q`; at most q.limit (clamped to 1..HistoryQuery::kMaxLimit). The query walks the
  /// timestamp index newest first, so the limit stops it early; since/until bound the walk.
  /// With ip or port, it walks only the minutes whose packets_keys summary holds them
  /// (docs/storage.md); other filters are checked on the rows it visits.
  std::vector<flow::HistoryRow> query(const flow::HistoryQuery& q) const;

  /// Closes the pooled connections that no query is using, so that the writer's connection
  /// can be the last one (closing it then checkpoints the WAL and removes it). Queries keep
  /// working and open connections again as they need them.
  void closeIdle();

  /// SQLite's EXPLAIN QUERY PLAN for the statements of history query `q`, one detail per
  /// line (with ip or port: the bucket walk's, then the per-bucket query's). For tests.
  std::string queryPlanForTest(const flow::HistoryQuery& q) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::store
