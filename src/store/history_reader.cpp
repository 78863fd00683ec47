// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/store/history_reader.h"

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <mutex>
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

constexpr std::size_t kReaderPoolSize = 4;

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
      "packet_count, direction, src_hostname, dst_hostname, domain "
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
  const std::size_t limit = std::clamp<std::size_t>(q.limit, 1, flow::HistoryQuery::kMaxLimit);
  sql.text += " ORDER BY timestamp DESC, id DESC LIMIT " +
              param({false, static_cast<std::int64_t>(limit), {}});
  return sql;
}

int progress(void* arg) noexcept {
  const auto* deadline = static_cast<const SteadyClock::time_point*>(arg);
  return SteadyClock::now() > *deadline ? 1 : 0;
}

}  // namespace

struct HistoryReader::Impl {
  Impl(const detail::DbLocation& location, std::chrono::milliseconds timeout)
      : loc(location), query_timeout(timeout) {
    // ":memory:": a memdb database lives as long as one connection to it does.
    if (loc.in_memory) memory_keeper = detail::openReader(loc);
  }

  DbPtr acquire() const {
    {
      std::lock_guard<std::mutex> lock(pool_mu);
      if (!pool.empty()) {
        DbPtr db = std::move(pool.back());
        pool.pop_back();
        return db;
      }
    }
    return detail::openReader(loc);
  }

  void release(DbPtr db) const {
    std::lock_guard<std::mutex> lock(pool_mu);
    if (pool.size() < kReaderPoolSize) pool.push_back(std::move(db));
  }

  std::vector<flow::HistoryRow> query(const flow::HistoryQuery& q) const {
    const Sql sql = buildSql(q);
    DbPtr db = acquire();
    sqlite3* raw_db = db.get();
    const auto fail = [&](int rc) -> void {
      if ((rc & 0xff) == SQLITE_INTERRUPT) {
        throw SystemError(ETIMEDOUT, "history query on " + loc.display + " took longer than " +
                                         std::to_string(query_timeout.count()) +
                                         " ms; narrow it with since/until");
      }
      throw SystemError(EIO, "reading " + loc.display + ": " + sqlite3_errmsg(raw_db));
    };
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(raw_db, sql.text.c_str(), -1, &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) fail(rc);
    for (std::size_t i = 0; i < sql.binds.size(); ++i) {
      const auto& b = sql.binds[i];
      const int index = static_cast<int>(i) + 1;
      if (b.is_text) {
        sqlite3_bind_text(raw, index, b.s.data(), static_cast<int>(b.s.size()), SQLITE_STATIC);
      } else {
        sqlite3_bind_int64(raw, index, b.i);
      }
    }
    SteadyClock::time_point deadline = SteadyClock::now() + query_timeout;
    sqlite3_progress_handler(raw_db, 1000, &progress, &deadline);
    std::vector<flow::HistoryRow> out;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
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
      out.push_back(std::move(r));
    }
    sqlite3_progress_handler(raw_db, 0, nullptr, nullptr);
    if (rc != SQLITE_DONE) fail(rc);  // the connection is dropped, not pooled
    stmt.reset();
    release(std::move(db));
    return out;
  }

  std::string queryPlan(const flow::HistoryQuery& q) const {
    const Sql sql = buildSql(q);
    DbPtr db = acquire();
    const std::string explain = "EXPLAIN QUERY PLAN " + sql.text;
    StmtPtr stmt = detail::prepare(db.get(), explain.c_str(), loc.display);
    std::string out;
    while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
      out += columnText(stmt.get(), 3);
      out += '\n';
    }
    stmt.reset();
    release(std::move(db));
    return out;
  }

  detail::DbLocation loc;
  std::chrono::milliseconds query_timeout;
  mutable std::mutex pool_mu;
  mutable std::vector<DbPtr> pool;  // guarded by pool_mu
  DbPtr memory_keeper;
};

HistoryReader::HistoryReader(const SqliteSink& writer)
    : impl_(std::make_unique<Impl>(writer.location(), writer.queryTimeout())) {}

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
