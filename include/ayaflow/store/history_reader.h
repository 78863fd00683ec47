// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ayaflow/flow/history.h"
#include "ayaflow/store/sqlite_sink.h"

namespace ayaflow::store {

/// Reads the SQLite history for GET /api/history over a small pool of read-only
/// connections, concurrently with the writer (WAL): a query never waits for a write batch.
///
/// Reads the database `writer` writes (which created or migrated the table), with the
/// writer's query_timeout; for ":memory:" the same in-memory database, which it keeps alive
/// after the writer stops. Threads: query() may be called from any thread, concurrently.
/// Errors: query() throws SystemError, with code ETIMEDOUT when it ran longer than
/// query_timeout.
class HistoryReader {
 public:
  explicit HistoryReader(const SqliteSink& writer);
  ~HistoryReader();
  HistoryReader(const HistoryReader&) = delete;
  HistoryReader& operator=(const HistoryReader&) = delete;

  /// Stored rows, newest first (timestamp, then id, descending), matching every filter of
  /// `q`; at most q.limit (clamped to 1..HistoryQuery::kMaxLimit). The query always walks
  /// the timestamp index newest first, so the limit stops it early; since/until bound the
  /// walk and the other filters are checked on the rows it visits.
  std::vector<flow::HistoryRow> query(const flow::HistoryQuery& q) const;

  /// Closes the pooled connections that no query is using, so that the writer's connection
  /// can be the last one (closing it then checkpoints the WAL and removes it). Queries keep
  /// working and open connections again as they need them.
  void closeIdle();

  /// SQLite's EXPLAIN QUERY PLAN for the history query `q`, one detail per line. For tests.
  std::string queryPlanForTest(const flow::HistoryQuery& q) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::store
