// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/store/history_reader.h"

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ayaflow/common/system_error.h"
#include "ayaflow/flow/names.h"
#include "sqlite_util.h"

namespace ayaflow::store {
namespace {

using detail::DbPtr;
using detail::StmtPtr;
using SteadyClock = std::chrono::steady_clock;

std::string columnText(sqlite3_stmt* stmt, int col) {
  const auto* t = sqlite3_column_text(stmt, col);
  if (t == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(t),
                     static_cast<std::size_t>(sqlite3_column_bytes(stmt, col)));
}

std::optional<std::string> columnOptional(sqlite3_stmt* stmt, int col) {
  if (sqlite3_column_type(stmt, col) == SQLITE_NULL) return std::nullopt;
  return columnText(stmt, col);
}

struct Sql {
  struct Bind {
    bool is_text;
    std::int64_t i;
    std::string s;
  };
  std::string text;
  std::vector<Bind> binds;  // binds[k] is parameter ?k+1
};

/// The history SELECT. It always walks idx_timestamp newest first, so LIMIT stops it early;
/// since/until bound the walk; the other filters are checked on the rows it visits.
Sql buildSql(const flow::HistoryQuery& q) {
  Sql sql;
  sql.text =
      "SELECT id, timestamp, src_ip, dst_ip, src_port, dst_port, protocol, length, "
      "packet_count, direction, src_hostname, dst_hostname, domain, interface, "
      "src_namespace, src_pod, src_workload, src_workload_kind, src_node, "
      "dst_namespace, dst_pod, dst_workload, dst_workload_kind, dst_node, "
      "tcp_flags, tcp_state, rtt_us, rtt_kind, retransmits, drops "
      "FROM packets INDEXED BY idx_timestamp";
  const char* glue = " WHERE ";
  const auto param = [&](Sql::Bind bind) {
    sql.binds.push_back(std::move(bind));
    return "?" + std::to_string(sql.binds.size());
  };
  const auto clause = [&](const std::string& text) {
    sql.text += glue;
    sql.text += text;
    glue = " AND ";
  };
  if (q.since_ms) clause("timestamp >= " + param({false, *q.since_ms, {}}));
  if (q.until_ms) clause("timestamp <= " + param({false, *q.until_ms, {}}));
  if (q.ip) {
    const std::string p = param({true, 0, q.ip->toString()});
    clause("(src_ip = " + p + " OR dst_ip = " + p + ")");
  }
  if (q.port) {
    const std::string p = param({false, *q.port, {}});
    clause("(src_port = " + p + " OR dst_port = " + p + ")");
  }
  if (q.protocol) clause("protocol = " + param({true, 0, flow::protocolColumn(*q.protocol)}));
  if (q.direction) clause("direction = " + param({true, 0, flow::directionName(*q.direction)}));
  // Kubernetes names: either end. No index: checked on the rows the walk visits.
  const auto either = [&](const char* column, const std::optional<std::string>& value) {
    if (!value) return;
    const std::string p = param({true, 0, *value});
    clause(std::string("(src_") + column + " = " + p + " OR dst_" + column + " = " + p + ")");
  };
  either("namespace", q.ns);
  either("pod", q.pod);
  either("workload", q.workload);
  if (q.tcp_state) clause("tcp_state = " + param({true, 0, *q.tcp_state}));
  const std::size_t limit = std::clamp<std::size_t>(q.limit, 1, flow::HistoryQuery::kMaxLimit);
  sql.text += " ORDER BY timestamp DESC, id DESC LIMIT " +
              param({false, static_cast<std::int64_t>(limit), {}});
  return sql;
}

int progress(void* arg) noexcept {
  const auto* deadline = static_cast<const SteadyClock::time_point*>(arg);
  return SteadyClock::now() > *deadline ? 1 : 0;
}

constexpr std::int64_t kMinTime = INT64_MIN;
constexpr std::int64_t kMaxTime = INT64_MAX;

/// keyBucket() of a timestamp, without overflow at the ends of the range.
std::int64_t bucketOf(std::int64_t t) {
  return detail::keyBucket(std::max<std::int64_t>(t, INT64_MIN / 2));
}

/// The summary's epochs from ?1 (the newest) down to ?2, newest first: a skip-scan down its
/// primary key, two lookups per epoch, that stops when the caller stops stepping.
constexpr const char* kEpochWalkSql =
    "WITH RECURSIVE e(x) AS ("
    "SELECT (SELECT max(epoch) FROM packets_keys WHERE epoch <= ?1) "
    "UNION ALL "
    "SELECT (SELECT max(epoch) FROM packets_keys WHERE epoch < x) FROM e WHERE x > ?2) "
    "SELECT x FROM e WHERE x >= ?2";

/// Buckets of epoch ?5 between ?2 and ?1 that hold every key of the query (?3 the address,
/// ?4 the port) or are saturated (the empty-blob key: they may hold any), newest first: one
/// range of the primary key (epoch, k, bucket) per key, merged.
std::string bucketWalkSql(const flow::HistoryQuery& q) {
  std::string sql = "SELECT a.bucket FROM packets_keys AS a";
  if (q.ip && q.port) {
    sql += " JOIN packets_keys AS b ON b.epoch = ?5 AND b.k = ?4 AND b.bucket = a.bucket";
  }
  sql += q.ip ? " WHERE a.epoch = ?5 AND a.k = ?3" : " WHERE a.epoch = ?5 AND a.k = ?4";
  sql +=
      " AND a.bucket BETWEEN ?2 AND ?1 UNION SELECT bucket FROM packets_keys WHERE epoch = ?5 "
      "AND k = x'' AND bucket BETWEEN ?2 AND ?1 ORDER BY 1 DESC";
  return sql;
}

flow::HistoryRow readRow(sqlite3_stmt* raw) {
  flow::HistoryRow r;
  r.id = sqlite3_column_int64(raw, 0);
  r.timestamp_ms = sqlite3_column_int64(raw, 1);
  r.src_ip = columnText(raw, 2);
  r.dst_ip = columnText(raw, 3);
  r.src_port = static_cast<std::uint16_t>(sqlite3_column_int(raw, 4));
  r.dst_port = static_cast<std::uint16_t>(sqlite3_column_int(raw, 5));
  r.protocol = columnText(raw, 6);
  r.length = static_cast<std::uint64_t>(sqlite3_column_int64(raw, 7));
  r.packet_count = sqlite3_column_type(raw, 8) == SQLITE_NULL
                       ? 1
                       : static_cast<std::uint64_t>(sqlite3_column_int64(raw, 8));
  r.direction = columnText(raw, 9);
  r.src_hostname = columnOptional(raw, 10);
  r.dst_hostname = columnOptional(raw, 11);
  r.domain = columnOptional(raw, 12);
  r.interface = columnOptional(raw, 13);
  r.src_namespace = columnOptional(raw, 14);
  r.src_pod = columnOptional(raw, 15);
  r.src_workload = columnOptional(raw, 16);
  r.src_workload_kind = columnOptional(raw, 17);
  r.src_node = columnOptional(raw, 18);
  r.dst_namespace = columnOptional(raw, 19);
  r.dst_pod = columnOptional(raw, 20);
  r.dst_workload = columnOptional(raw, 21);
  r.dst_workload_kind = columnOptional(raw, 22);
  r.dst_node = columnOptional(raw, 23);
  const auto number = [raw](int i) -> std::optional<std::uint32_t> {
    if (sqlite3_column_type(raw, i) == SQLITE_NULL) return std::nullopt;
    return static_cast<std::uint32_t>(sqlite3_column_int64(raw, i));
  };
  r.tcp_flags = number(24);
  r.tcp_state = columnOptional(raw, 25);
  r.rtt_us = number(26);
  r.rtt_kind = columnOptional(raw, 27);
  r.retransmits = number(28);
  r.drops = number(29);
  return r;
}

/// A failed SQLite call of a query, with the result code and SQLite's message.
struct QueryFailure {
  int rc;
  std::string message;
};

}  // namespace

struct HistoryReader::Impl {
  Impl(const detail::DbLocation& location, std::chrono::milliseconds timeout,
       std::size_t connections)
      : loc(location), query_timeout(timeout), max_connections(connections) {
    // ":memory:": a memdb database lives as long as one connection to it does.
    if (loc.in_memory) memory_keeper = detail::openReader(loc);
  }

  /// A pooled connection, or a new one while fewer than max_connections are open; waits for
  /// one until `deadline` otherwise. Throws SystemError (ETIMEDOUT when none became free).
  DbPtr acquire(SteadyClock::time_point deadline) const {
    {
      std::unique_lock<std::mutex> lock(pool_mu);
      if (!pool_cv.wait_until(lock, deadline, [&] {
            return !pool.empty() || in_use + pool.size() < max_connections;
          })) {
        loc.errors->query_busy.fetch_add(1, std::memory_order_relaxed);
        throw SystemError(ETIMEDOUT, "history query on " + loc.display + ": all " +
                                         std::to_string(max_connections) +
                                         " read connections stayed busy for " +
                                         std::to_string(query_timeout.count()) + " ms");
      }
      ++in_use;
      if (!pool.empty()) {
        DbPtr db = std::move(pool.back());
        pool.pop_back();
        return db;
      }
    }
    try {
      return detail::openReader(loc, query_timeout);
    } catch (const SystemError& e) {
      giveBack(nullptr);
      std::string cause = e.what();
      if (cause.rfind(loc.display + ": ", 0) == 0) cause.erase(0, loc.display.size() + 2);
      loc.errors->report(detail::StorageErrors::kRead, loc.display, cause);
      throw;
    }
  }

  /// Returns a connection taken by acquire(); null when it was dropped.
  void giveBack(DbPtr db) const {
    {
      std::lock_guard<std::mutex> lock(pool_mu);
      --in_use;
      if (db) pool.push_back(std::move(db));
    }
    pool_cv.notify_one();
  }

  std::vector<flow::HistoryRow> query(const flow::HistoryQuery& q) const {
    const SteadyClock::time_point deadline = SteadyClock::now() + query_timeout;
    DbPtr db = acquire(deadline);
    sqlite3* raw_db = db.get();
    std::vector<flow::HistoryRow> out;
    SteadyClock::time_point progress_deadline = deadline;
    sqlite3_progress_handler(raw_db, 1000, &progress, &progress_deadline);
    try {
      run(raw_db, q, out);
    } catch (const QueryFailure& f) {
      sqlite3_progress_handler(raw_db, 0, nullptr, nullptr);
      if ((f.rc & 0xff) == SQLITE_INTERRUPT) {
        // Its statements are finalized: the connection is as good as new.
        giveBack(std::move(db));
        loc.errors->query_timeouts.fetch_add(1, std::memory_order_relaxed);
        throw SystemError(ETIMEDOUT, "history query on " + loc.display + " took longer than " +
                                         std::to_string(query_timeout.count()) +
                                         " ms; narrow it with since/until");
      }
      giveBack(nullptr);  // dropped: a damaged file or an I/O error may have left it odd
      loc.errors->report(detail::StorageErrors::kRead, loc.display, f.message);
      throw SystemError(EIO, "reading " + loc.display + ": " + f.message);
    }
    sqlite3_progress_handler(raw_db, 0, nullptr, nullptr);
    giveBack(std::move(db));
    return out;
  }

  /// Prepares `sql`; throws QueryFailure.
  static StmtPtr prepareOrFail(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) throw QueryFailure{rc, sqlite3_errmsg(db)};
    return stmt;
  }

  static void bindAll(sqlite3_stmt* stmt, const Sql& sql) {
    for (std::size_t i = 0; i < sql.binds.size(); ++i) {
      const auto& b = sql.binds[i];
      const int index = static_cast<int>(i) + 1;
      if (b.is_text) {
        sqlite3_bind_text(stmt, index, b.s.data(), static_cast<int>(b.s.size()), SQLITE_STATIC);
      } else {
        sqlite3_bind_int64(stmt, index, b.i);
      }
    }
  }

  /// Steps `stmt` to the end, appending its rows; throws QueryFailure.
  static void collect(sqlite3* db, sqlite3_stmt* stmt, std::vector<flow::HistoryRow>& out) {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) out.push_back(readRow(stmt));
    if (rc != SQLITE_DONE) throw QueryFailure{rc, sqlite3_errmsg(db)};
  }

  /// keys_from_ms of the database: rows older than it may be missing from packets_keys.
  /// kMaxTime when the database has no summary.
  static std::int64_t keysFrom(sqlite3* db) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM ayaflow_meta WHERE key = 'keys_from_ms'", -1,
                                &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) {
      if (std::string(sqlite3_errmsg(db)).find("no such table") != std::string::npos) {
        return kMaxTime;
      }
      throw QueryFailure{rc, sqlite3_errmsg(db)};
    }
    rc = sqlite3_step(raw);
    if (rc == SQLITE_ROW) return sqlite3_column_int64(raw, 0);
    if (rc == SQLITE_DONE) return kMaxTime;
    throw QueryFailure{rc, sqlite3_errmsg(db)};
  }

  /// The query's rows into `out`. With an address or port filter, the part of the time range
  /// the summary covers walks only the minutes that hold the address and port, newest first;
  /// the rest (rows stored before the summary existed) walks the timestamp index.
  void run(sqlite3* db, const flow::HistoryQuery& q, std::vector<flow::HistoryRow>& out) const {
    const std::size_t limit = std::clamp<std::size_t>(q.limit, 1, flow::HistoryQuery::kMaxLimit);
    if (!q.ip && !q.port) {
      const Sql sql = buildSql(q);
      StmtPtr stmt = prepareOrFail(db, sql.text);
      bindAll(stmt.get(), sql);
      collect(db, stmt.get(), out);
      return;
    }
    const std::int64_t lo = q.since_ms.value_or(kMinTime);
    const std::int64_t hi = q.until_ms.value_or(kMaxTime);
    const std::int64_t keys_from = keysFrom(db);
    if (keys_from != kMaxTime && hi >= keys_from && hi >= lo) {
      const std::int64_t covered_lo = std::max(lo, keys_from);
      // One statement for every bucket: since/until and limit re-bound per bucket.
      flow::HistoryQuery range = q;
      range.since_ms = covered_lo;
      range.until_ms = hi;
      range.limit = limit;
      const Sql rows_sql = buildSql(range);  // ?1 since, ?2 until, the limit last
      StmtPtr rows = prepareOrFail(db, rows_sql.text);
      bindAll(rows.get(), rows_sql);
      const int limit_index = static_cast<int>(rows_sql.binds.size());

      const std::int64_t hi_bucket = bucketOf(hi);
      const std::int64_t lo_bucket = bucketOf(covered_lo);
      StmtPtr epochs = prepareOrFail(db, kEpochWalkSql);
      sqlite3_bind_int64(epochs.get(), 1, detail::keyEpoch(hi_bucket));
      sqlite3_bind_int64(epochs.get(), 2, detail::keyEpoch(lo_bucket));
      StmtPtr buckets = prepareOrFail(db, bucketWalkSql(q));
      sqlite3_bind_int64(buckets.get(), 1, hi_bucket);
      sqlite3_bind_int64(buckets.get(), 2, lo_bucket);
      std::string ip_text;
      if (q.ip) {
        ip_text = q.ip->toString();
        sqlite3_bind_text(buckets.get(), 3, ip_text.data(), static_cast<int>(ip_text.size()),
                          SQLITE_STATIC);
      }
      if (q.port) sqlite3_bind_int(buckets.get(), 4, *q.port);
      int rc = SQLITE_DONE;
      while (out.size() < limit && (rc = sqlite3_step(epochs.get())) == SQLITE_ROW) {
        sqlite3_reset(buckets.get());
        sqlite3_bind_int64(buckets.get(), 5, sqlite3_column_int64(epochs.get(), 0));
        int brc;
        while (out.size() < limit && (brc = sqlite3_step(buckets.get())) == SQLITE_ROW) {
          const std::int64_t bucket = sqlite3_column_int64(buckets.get(), 0);
          const __int128 start = static_cast<__int128>(bucket) * detail::kKeyBucketMs;
          const __int128 end = start + detail::kKeyBucketMs - 1;
          const auto from = static_cast<std::int64_t>(std::max<__int128>(start, covered_lo));
          const auto to = static_cast<std::int64_t>(std::min<__int128>(end, hi));
          sqlite3_reset(rows.get());
          sqlite3_bind_int64(rows.get(), 1, from);
          sqlite3_bind_int64(rows.get(), 2, to);
          sqlite3_bind_int64(rows.get(), limit_index,
                             static_cast<std::int64_t>(limit - out.size()));
          collect(db, rows.get(), out);
        }
        if (out.size() < limit && brc != SQLITE_DONE) {
          throw QueryFailure{brc, sqlite3_errmsg(db)};
        }
      }
      if (out.size() < limit && rc != SQLITE_DONE) throw QueryFailure{rc, sqlite3_errmsg(db)};
    }
    if (out.size() < limit && lo < keys_from) {
      // Rows stored before the summary existed: the timestamp walk.
      flow::HistoryQuery older = q;
      older.until_ms = std::min(hi, keys_from - 1);
      older.limit = limit - out.size();
      if (older.since_ms && *older.since_ms > *older.until_ms) return;
      const Sql sql = buildSql(older);
      StmtPtr stmt = prepareOrFail(db, sql.text);
      bindAll(stmt.get(), sql);
      collect(db, stmt.get(), out);
    }
  }

  std::string queryPlan(const flow::HistoryQuery& q) const {
    DbPtr db = acquire(SteadyClock::now() + query_timeout);
    std::string out;
    std::vector<std::string> statements;
    if (q.ip || q.port) {
      statements.push_back(kEpochWalkSql);
      statements.push_back(bucketWalkSql(q));
      flow::HistoryQuery range = q;
      range.since_ms = range.since_ms.value_or(0);
      range.until_ms = range.until_ms.value_or(0);
      statements.push_back(buildSql(range).text);
    } else {
      statements.push_back(buildSql(q).text);
    }
    try {
      for (const auto& sql : statements) {
        const std::string explain = "EXPLAIN QUERY PLAN " + sql;
        StmtPtr stmt = detail::prepare(db.get(), explain.c_str(), loc.display);
        while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
          out += columnText(stmt.get(), 3);
          out += '\n';
        }
      }
    } catch (...) {
      giveBack(std::move(db));
      throw;
    }
    giveBack(std::move(db));
    return out;
  }

  detail::DbLocation loc;
  std::chrono::milliseconds query_timeout;
  std::size_t max_connections;
  mutable std::mutex pool_mu;
  mutable std::condition_variable pool_cv;
  mutable std::vector<DbPtr> pool;  // guarded by pool_mu: idle connections
  mutable std::size_t in_use = 0;   // guarded by pool_mu: connections taken by queries
  DbPtr memory_keeper;
};

HistoryReader::HistoryReader(const SqliteSink& writer)
    : impl_(std::make_unique<Impl>(writer.location(), writer.queryTimeout(),
                                   writer.queryConnections())) {}

HistoryReader::~HistoryReader() = default;

std::vector<flow::HistoryRow> HistoryReader::query(const flow::HistoryQuery& q) const {
  return impl_->query(q);
}

void HistoryReader::closeIdle() {
  std::lock_guard<std::mutex> lock(impl_->pool_mu);
  impl_->pool.clear();
}

std::string HistoryReader::queryPlanForTest(const flow::HistoryQuery& q) const {
  return impl_->queryPlan(q);
}

}  // namespace ayaflow::store
