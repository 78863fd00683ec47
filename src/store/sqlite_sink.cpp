// SPDX-License-Identifier: MIT OR Apache-2.0
// SqliteSink: the writer thread, one transaction per batch (rows inserted, or updated in
// place for checkpointed aggregation windows), retention, drop accounting and metrics. The
// packets_keys summary is kept by KeysWriter (keys_writer.h).
#include "ayaflow/store/sqlite_sink.h"

#include <malloc.h>
#include <pthread.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ayaflow/common/interface_name.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/common/thread.h"
#include "ayaflow/flow/names.h"
#include "disk_budget.h"
#include "keys_writer.h"
#include "sqlite_util.h"

namespace ayaflow::store {
namespace {

using detail::DbPtr;
using detail::StmtPtr;
using SteadyClock = std::chrono::steady_clock;

// A batch at least this large is followed by malloc_trim() once written.
constexpr std::size_t kTrimAfterRows = 8192;

// Rows whose ends have no Kubernetes names use the statements without the name columns,
// and rows without TCP health figures (UDP without drops) those without the health columns:
// the same row (the columns stay NULL), without binding more parameters per row.
// Parameters keep their numbers in every variant (SQLite allows gaps).
#define AYAFLOW_INSERT_COLUMNS                                                             \
  "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, length, " \
  "packet_count, direction, src_hostname, dst_hostname, domain, interface"
#define AYAFLOW_NAME_COLUMNS                                    \
  ", src_namespace, src_pod, src_workload, src_workload_kind, " \
  "src_node, dst_namespace, dst_pod, dst_workload, dst_workload_kind, dst_node"
#define AYAFLOW_HEALTH_COLUMNS ", tcp_flags, tcp_state, rtt_us, rtt_kind, retransmits, drops"
// Indexed by [the record has names][the record has health figures].
constexpr const char* kInsertColumns[2][2] = {
    {AYAFLOW_INSERT_COLUMNS ") ", AYAFLOW_INSERT_COLUMNS AYAFLOW_HEALTH_COLUMNS ") "},
    {AYAFLOW_INSERT_COLUMNS AYAFLOW_NAME_COLUMNS ") ",
     AYAFLOW_INSERT_COLUMNS AYAFLOW_NAME_COLUMNS AYAFLOW_HEALTH_COLUMNS ") "}};
#undef AYAFLOW_HEALTH_COLUMNS
#undef AYAFLOW_NAME_COLUMNS
#undef AYAFLOW_INSERT_COLUMNS
// Parameters of one row: ?1..?13 always, the names ?14..?23, the health figures ?24..?29.
constexpr int kInsertBase = 13;
constexpr int kInsertParams = 29;

// Raw records are inserted up to this many rows per statement (INSERT ... VALUES (...),
// (...)): a statement's fixed cost (opening the table and index cursors, halting, resetting)
// is then paid once per group instead of once per row; with one row per statement it was
// about a third of the writer's CPU per row. Row j's parameters are those of the one-row
// statement plus j * kInsertParams: 2900 parameters, below SQLite's limit (32766 since
// 3.32; an older SQLite's 999 gets groups of 34).
constexpr std::size_t kMaxRowsPerInsert = 100;

/// "VALUES (...), (...)" for `rows` rows of the variant [named][health].
std::string insertSql(bool named, bool health, std::size_t rows) {
  std::string sql = kInsertColumns[named][health];
  sql += "VALUES ";
  for (std::size_t j = 0; j < rows; ++j) {
    const int base = static_cast<int>(j) * kInsertParams;
    sql += j == 0 ? "(" : ", (";
    const auto add = [&](int first, int last) {
      for (int i = first; i <= last; ++i) {
        if (i != 1) sql += ", ";
        sql += '?';
        sql += std::to_string(base + i);
      }
    };
    add(1, kInsertBase);
    if (named) add(kInsertBase + 1, kInsertBase + 10);
    if (health) add(kInsertBase + 11, kInsertParams);
    sql += ')';
  }
  return sql;
}

// The Kubernetes names of one end, five parameters from ?n: namespace, pod, workload,
// workload kind, node (see bindEndpoint()).
constexpr int kEndpointParams = 5;
constexpr int kInsertSrcNames = 14;
constexpr int kInsertDstNames = kInsertSrcNames + kEndpointParams;
// The TCP health figures, six parameters from ?n (see bindHealth()).
constexpr int kInsertHealth = 24;

// A checkpointed row of an open aggregation window, updated in place by rowid. The timestamp
// (indexed) is set only when an earlier packet turned up. A Kubernetes name already stored
// stays when the newer record has none (the name source failed, or no longer remembers
// the pod): every record of the row describes the same connection at the same time. The
// health figures are the window's so far, like the sums.
#define AYAFLOW_UPDATE                                                                        \
  "UPDATE packets SET length = ?1, packet_count = ?2, src_hostname = ?3, dst_hostname = ?4, " \
  "domain = ?5, tcp_flags = ?18, tcp_state = ?19, rtt_us = ?20, rtt_kind = ?21, "             \
  "retransmits = ?22, drops = ?23"
#define AYAFLOW_UPDATE_NAMES                                                                   \
  ", src_namespace = coalesce(?8, src_namespace), src_pod = coalesce(?9, src_pod), "           \
  "src_workload = coalesce(?10, src_workload), "                                               \
  "src_workload_kind = coalesce(?11, src_workload_kind), src_node = coalesce(?12, src_node), " \
  "dst_namespace = coalesce(?13, dst_namespace), dst_pod = coalesce(?14, dst_pod), "           \
  "dst_workload = coalesce(?15, dst_workload), "                                               \
  "dst_workload_kind = coalesce(?16, dst_workload_kind), dst_node = coalesce(?17, dst_node)"
// Indexed by [the timestamp moves][the record has names].
constexpr const char* kUpdateSql[2][2] = {
    {AYAFLOW_UPDATE " WHERE id = ?6", AYAFLOW_UPDATE AYAFLOW_UPDATE_NAMES " WHERE id = ?6"},
    {AYAFLOW_UPDATE ", timestamp = ?7 WHERE id = ?6",
     AYAFLOW_UPDATE ", timestamp = ?7" AYAFLOW_UPDATE_NAMES " WHERE id = ?6"}};
#undef AYAFLOW_UPDATE_NAMES
#undef AYAFLOW_UPDATE
constexpr int kUpdateSrcNames = 8;
constexpr int kUpdateDstNames = kUpdateSrcNames + kEndpointParams;
constexpr int kUpdateHealth = 18;

// A checkpointed row whose window ended this long ago without its final record (the final
// batch was dropped or failed) is forgotten; checked at most once per interval.
constexpr std::int64_t kForgetRowsAfterMs = 10 * 60 * 1000;
constexpr auto kForgetInterval = std::chrono::seconds(60);
// A hard bound on remembered rows (about 64 bytes each; at least twice the queue, which the
// agent sizes above the open flows), reached only when many windows' final records are lost:
// beyond it, the rows of every ended window are forgotten (checked at most once a second).
constexpr std::size_t kMaxWrittenRows = std::size_t{1} << 18;
constexpr auto kForgetOverInterval = std::chrono::seconds(1);

// The inner SELECT walks idx_timestamp from the oldest row, so each chunk costs about its
// own size whatever the table's.
constexpr const char* kRetentionSql =
    "DELETE FROM packets WHERE id IN "
    "(SELECT id FROM packets WHERE timestamp < ?1 ORDER BY timestamp LIMIT ?2)";

std::int64_t realtimeMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Binds text that stays valid until the statement is stepped and reset.
void bindText(sqlite3_stmt* stmt, int index, const char* text, std::size_t len) {
  sqlite3_bind_text(stmt, index, text, static_cast<int>(len), SQLITE_STATIC);
}

void bindOptional(sqlite3_stmt* stmt, int index, const std::optional<std::string>* text) {
  if (text != nullptr && *text) {
    bindText(stmt, index, (*text)->data(), (*text)->size());
  } else {
    sqlite3_bind_null(stmt, index);
  }
}

/// Text that is unknown when empty (NULL, never ''), bound without a copy.
void bindName(sqlite3_stmt* stmt, int index, const std::string& text) {
  if (text.empty()) {
    sqlite3_bind_null(stmt, index);
  } else {
    bindText(stmt, index, text.data(), text.size());
  }
}

/// True when either end of `r` has a Kubernetes name (a pod or the node).
bool hasK8sNames(const pipeline::FlowRecord& r) noexcept {
  if (!r.names) return false;
  const enrich::ConnectionNames& n = *r.names;
  return n.local.pod || n.local.node || n.remote.pod || n.remote.node;
}

/// Binds one end's Kubernetes names to parameters first..first+4 (namespace, pod, workload,
/// workload kind, node), NULL where unknown. The strings belong to the record's shared
/// names, which outlive the statement's step: bound without copies.
void bindEndpoint(sqlite3_stmt* stmt, int first, const enrich::EndpointNames* names) {
  static const std::string kNone;
  const enrich::PodName* pod = names != nullptr ? names->pod.get() : nullptr;
  bindName(stmt, first, pod != nullptr ? pod->ns : kNone);
  bindName(stmt, first + 1, pod != nullptr ? pod->pod : kNone);
  bindName(stmt, first + 2, pod != nullptr ? pod->workload : kNone);
  bindName(stmt, first + 3, pod != nullptr ? pod->workload_kind : kNone);
  bindName(stmt, first + 4, names != nullptr && names->node ? *names->node : kNone);
}

/// True when `r` has a TCP health figure worth a column: TCP flags, a state or RTT, or a
/// retransmission or drop (UDP rows without drops have none).
bool hasHealth(const pipeline::FlowRecord& r) noexcept {
  return r.tcp_flags != 0 || r.tcp_state != flow::TcpState::kUnknown || r.rtt_us != 0 ||
         r.retransmits != 0 || r.drops != 0;
}

/// Binds the health figures to parameters first..first+5 (tcp_flags, tcp_state, rtt_us,
/// rtt_kind, retransmits, drops): NULL for what a UDP record cannot have (flags, state, RTT).
void bindHealth(sqlite3_stmt* stmt, int first, const pipeline::FlowRecord& r) {
  const bool tcp = r.protocol == 6;
  if (tcp) {
    sqlite3_bind_int(stmt, first, r.tcp_flags);
  } else {
    sqlite3_bind_null(stmt, first);
  }
  const std::string_view state = flow::toString(r.tcp_state);
  if (state.empty()) {
    sqlite3_bind_null(stmt, first + 1);
  } else {
    bindText(stmt, first + 1, state.data(), state.size());
  }
  const std::string_view kind = flow::toString(r.rtt_kind);
  if (r.rtt_us == 0 || kind.empty()) {
    sqlite3_bind_null(stmt, first + 2);
    sqlite3_bind_null(stmt, first + 3);
  } else {
    sqlite3_bind_int64(stmt, first + 2, r.rtt_us);
    bindText(stmt, first + 3, kind.data(), kind.size());
  }
  sqlite3_bind_int64(stmt, first + 4, r.retransmits);
  sqlite3_bind_int64(stmt, first + 5, r.drops);
}

}  // namespace

struct SqliteSink::Impl {
  explicit Impl(StoreOptions o) : options(std::move(o)), queue(options.queue_rows) {
    if (options.batch_rows == 0) options.batch_rows = 1;
    if (options.retention_chunk == 0) options.retention_chunk = 1;
    loc = detail::locate(options.db_path);
    loc.errors->log_interval_ms = options.log_interval.count();
  }

  // ---- writer thread ------------------------------------------------------------------

  void write(const pipeline::RecordBatch& batch) {
    interface_names.clear();  // looked up again per batch: interfaces come, go and are renamed
    last_ifindex = 0;
    for (std::size_t done = 0; done < batch.size(); done += options.batch_rows) {
      commitRows(batch.data() + done, std::min(options.batch_rows, batch.size() - done));
    }
  }

  /// Interface names by ifindex for the batch being written (bound without copies), and the
  /// last one used (most rows of a batch share it).
  std::unordered_map<std::uint32_t, std::string> interface_names;
  std::uint32_t last_ifindex = 0;
  const std::string* last_interface = nullptr;

  /// The row of a checkpointed (flow, window) sum, by its update_key.
  struct WrittenRow {
    sqlite3_int64 rowid = 0;
    std::int64_t window_end_ms = 0;
    std::int64_t first_ms = 0;
    std::uint64_t packets = 0;  ///< packet_count committed
  };
  /// What a committed transaction changes in `written`.
  struct Staged {
    std::uint64_t key = 0;
    WrittenRow row;
    bool erase = false;
  };

  /// Binds the INSERT's parameters for `r` (numbered from `base` + 1), formatting text into
  /// the caller's buffers. `named`, `health`: the statement has the name columns, the health
  /// columns (bound NULL where `r` has none, as the statements without them leave them).
  void bindInsert(sqlite3_stmt* insert, int base, bool named, bool health,
                  const pipeline::FlowRecord& r, char* src, char* dst, char* protocol) {
    const enrich::EndpointNames* src_names = r.srcNames();
    const enrich::EndpointNames* dst_names = r.dstNames();
    const char* direction = flow::directionName(r.direction);
    sqlite3_bind_int64(insert, base + 1, r.first_ms);
    bindText(insert, base + 2, src, flow::formatAddress(r.src, src));
    bindText(insert, base + 3, dst, flow::formatAddress(r.dst, dst));
    sqlite3_bind_int(insert, base + 4, r.src_port);
    sqlite3_bind_int(insert, base + 5, r.dst_port);
    bindText(insert, base + 6, protocol, flow::formatProtocol(r.protocol, protocol));
    sqlite3_bind_int64(insert, base + 7, static_cast<sqlite3_int64>(r.bytes));
    sqlite3_bind_int64(insert, base + 8, static_cast<sqlite3_int64>(r.packets));
    bindText(insert, base + 9, direction, std::char_traits<char>::length(direction));
    bindOptional(insert, base + 10, src_names ? &src_names->hostname : nullptr);
    bindOptional(insert, base + 11, dst_names ? &dst_names->hostname : nullptr);
    bindOptional(insert, base + 12, r.names ? &r.names->domain : nullptr);
    // Where the flow's packets were counted; the name is looked up here, on the writer
    // thread (cached), never on the capture path.
    if (r.ifindex != 0) {
      if (r.ifindex != last_ifindex) {
        auto it = interface_names.find(r.ifindex);
        if (it == interface_names.end()) {
          it = interface_names.emplace(r.ifindex, common::interfaceLabel(r.ifindex)).first;
        }
        last_ifindex = r.ifindex;
        last_interface = &it->second;
      }
      bindText(insert, base + 13, last_interface->data(), last_interface->size());
    } else {
      sqlite3_bind_null(insert, base + 13);
    }
    if (named) {
      bindEndpoint(insert, base + kInsertSrcNames, src_names);
      bindEndpoint(insert, base + kInsertDstNames, dst_names);
    }
    if (health) {
      if (hasHealth(r)) {
        bindHealth(insert, base + kInsertHealth, r);
      } else {
        for (int i = 0; i < 6; ++i) sqlite3_bind_null(insert, base + kInsertHealth + i);
      }
    }
  }

  /// True when rows[0..rows_per_insert) exist (`left` records) and are all raw.
  bool rawGroupAt(const pipeline::FlowRecord* rows, std::size_t left) const noexcept {
    if (rows_per_insert < 2 || left < rows_per_insert) return false;
    for (std::size_t j = 0; j < rows_per_insert; ++j) {
      if (rows[j].update_key != 0) return false;
    }
    return true;
  }

  /// Inserts the raw records rows[0..rows_per_insert) with one statement, then adds their
  /// keys to the summary. Returns the SQLite result code.
  int insertGroup(const pipeline::FlowRecord* rows) {
    bool named = false, health = false;
    for (std::size_t j = 0; j < rows_per_insert; ++j) {
      named = named || hasK8sNames(rows[j]);
      health = health || hasHealth(rows[j]);
    }
    StmtPtr& group = insert_groups[named][health];
    if (!group) {
      // Prepared on first use: aggregated mode never needs them, and each holds a program and
      // parameters for rows_per_insert rows.
      sqlite3_stmt* raw = nullptr;
      const std::string sql = insertSql(named, health, rows_per_insert);
      const int rc = sqlite3_prepare_v3(write_db.get(), sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                                        &raw, nullptr);
      group.reset(raw);
      if (rc != SQLITE_OK) return rc;
    }
    sqlite3_stmt* insert = group.get();
    for (std::size_t j = 0; j < rows_per_insert; ++j) {
      bindInsert(insert, static_cast<int>(j) * kInsertParams, named, health, rows[j],
                 group_text[j].src, group_text[j].dst, group_text[j].protocol);
    }
    int rc = run(insert);
    for (std::size_t j = 0; rc == SQLITE_OK && j < rows_per_insert; ++j) {
      rc = keys->add(rows[j], rows[j].first_ms, group_text[j].src, group_text[j].dst);
    }
    return rc;
  }

  /// Steps and resets a bound statement; SQLITE_OK when it ran.
  static int run(sqlite3_stmt* stmt) {
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    // No sqlite3_clear_bindings(): every statement's parameters are all bound again before
    // its next step (each variant binds exactly the parameters it has).
    sqlite3_reset(stmt);
    return rc;
  }

  /// Updates the row of a checkpointed sum in place; *updated is false when the row is gone
  /// (retention deleted it), so the caller inserts a new one.
  int update(const pipeline::FlowRecord& r, const WrittenRow& row, bool* updated) {
    const bool earlier = r.first_ms < row.first_ms;
    const bool named = hasK8sNames(r);
    sqlite3_stmt* stmt = update_stmts[earlier][named].get();
    const enrich::EndpointNames* src_names = r.srcNames();
    const enrich::EndpointNames* dst_names = r.dstNames();
    sqlite3_bind_int64(stmt, 1, static_cast<sqlite3_int64>(r.bytes));
    sqlite3_bind_int64(stmt, 2, static_cast<sqlite3_int64>(r.packets));
    bindOptional(stmt, 3, src_names ? &src_names->hostname : nullptr);
    bindOptional(stmt, 4, dst_names ? &dst_names->hostname : nullptr);
    bindOptional(stmt, 5, r.names ? &r.names->domain : nullptr);
    sqlite3_bind_int64(stmt, 6, row.rowid);
    if (earlier) sqlite3_bind_int64(stmt, 7, r.first_ms);
    bindHealth(stmt, kUpdateHealth, r);
    if (named) {
      bindEndpoint(stmt, kUpdateSrcNames, src_names);
      bindEndpoint(stmt, kUpdateDstNames, dst_names);
    }
    const int rc = run(stmt);
    *updated = rc == SQLITE_OK && sqlite3_changes(write_db.get()) > 0;
    return rc;
  }

  /// Commits `n` records in one transaction: raw and not-yet-written records are inserted,
  /// records of a checkpointed (flow, window) update its row. `written` changes only once
  /// the transaction has committed.
  void commitRows(const pipeline::FlowRecord* rows, std::size_t n) {
    sqlite3* db = write_db.get();
    int rc = detail::exec(db, "BEGIN");
    std::uint64_t packets = 0;  // packets the transaction adds to the database
    std::uint64_t inserted = 0, updated = 0;
    staged.clear();
    char src[flow::kMaxAddressText];
    char dst[flow::kMaxAddressText];
    char protocol[flow::kMaxProtocolText];
    for (std::size_t i = 0; rc == SQLITE_OK && i < n; ++i) {
      const pipeline::FlowRecord& r = rows[i];
      if (rawGroupAt(rows + i, n - i)) {
        // Raw records (no row to update, no rowid to remember): a group per statement.
        rc = insertGroup(rows + i);
        inserted += rows_per_insert;
        for (std::size_t j = 0; j < rows_per_insert; ++j) packets += rows[i + j].packets;
        i += rows_per_insert - 1;
        continue;
      }
      const bool provisional = r.state == pipeline::RecordState::kProvisional;
      const auto it = r.update_key != 0 ? written.find(r.update_key) : written.end();
      bool done = false;
      WrittenRow row;
      if (it != written.end()) {
        row = it->second;
        rc = update(r, row, &done);
        if (done) {
          ++updated;
          packets += r.packets - std::min(r.packets, row.packets);
        }
      }
      if (rc == SQLITE_OK && !done) {
        const bool named = hasK8sNames(r);
        const bool health = hasHealth(r);
        sqlite3_stmt* insert = insert_stmts[named][health].get();
        bindInsert(insert, 0, named, health, r, src, dst, protocol);
        rc = run(insert);
        row.rowid = sqlite3_last_insert_rowid(db);
        row.first_ms = r.first_ms;
        ++inserted;
        packets += r.packets;
        if (rc == SQLITE_OK) rc = keys->add(r, r.first_ms, src, dst);
      } else if (rc == SQLITE_OK && done && r.first_ms < row.first_ms &&
                 detail::keyBucket(r.first_ms) != detail::keyBucket(row.first_ms)) {
        // The row moved to an earlier bucket: its keys must be found there too.
        flow::formatAddress(r.src, src);
        flow::formatAddress(r.dst, dst);
        rc = keys->add(r, r.first_ms, src, dst);
      }
      if (r.update_key == 0) continue;
      if (provisional) {
        row.window_end_ms = r.window_end_ms;
        row.first_ms = std::min(row.first_ms, r.first_ms);
        row.packets = r.packets;
        staged.push_back(Staged{r.update_key, row, false});
      } else if (it != written.end()) {
        staged.push_back(Staged{r.update_key, row, true});
      }
    }
    if (rc == SQLITE_OK) rc = detail::exec(db, "COMMIT");
    if (rc != SQLITE_OK) {
      last_error = sqlite3_errmsg(db);
      if (last_error == "not an error") last_error = sqlite3_errstr(rc);
      if (!sqlite3_get_autocommit(db)) detail::exec(db, "ROLLBACK");
      keys->rolledBack();
      loc.errors->add(detail::StorageErrors::kWrite);
      write_errors.fetch_add(1, std::memory_order_relaxed);
      const Lost lost = forgetUnwritten(rows, n);
      rows_dropped_write.fetch_add(lost.rows, std::memory_order_relaxed);
      packets_dropped_write.fetch_add(lost.packets, std::memory_order_relaxed);
      failing = true;
      reportDrops(SteadyClock::now());
      return;
    }
    for (const Staged& st : staged) {
      if (st.erase) {
        written.erase(st.key);
      } else {
        written[st.key] = st.row;
      }
    }
    rows_stored.fetch_add(inserted, std::memory_order_relaxed);
    rows_updated.fetch_add(updated, std::memory_order_relaxed);
    packets_stored.fetch_add(packets, std::memory_order_relaxed);
    batches.fetch_add(1, std::memory_order_relaxed);
    if (failing) {
      failing = false;
      reportDrops(SteadyClock::now(), /*force=*/true);
      logger("store")->info("{}: writing again", loc.display);
    }
  }

  /// Writes are paused (free space below the floor): the batch's final records are dropped
  /// and counted; provisional ones are not lost (the next checkpoint sends their sums again).
  void dropForDiskSpace(const pipeline::RecordBatch& batch) {
    const Lost lost = forgetUnwritten(batch.data(), batch.size());
    rows_dropped_disk.fetch_add(lost.rows, std::memory_order_relaxed);
    packets_dropped_disk.fetch_add(lost.packets, std::memory_order_relaxed);
  }

  struct Lost {
    std::uint64_t rows = 0;
    std::uint64_t packets = 0;  ///< beyond what their checkpointed rows already hold
  };

  /// Records that did not reach the database: final ones are lost (a checkpointed row keeps
  /// its last committed counts, and is forgotten); provisional ones are not (the next
  /// checkpoint or the final record carries their sums again), but a checkpoint was missed.
  Lost forgetUnwritten(const pipeline::FlowRecord* rows, std::size_t n) {
    Lost lost;
    for (std::size_t i = 0; i < n; ++i) {
      const pipeline::FlowRecord& r = rows[i];
      if (r.state == pipeline::RecordState::kProvisional) {
        checkpoint_lost.store(true, std::memory_order_relaxed);
        continue;
      }
      ++lost.rows;
      std::uint64_t committed = 0;
      if (r.update_key != 0) {
        const auto it = written.find(r.update_key);
        if (it != written.end()) {
          committed = it->second.packets;
          written.erase(it);
        }
      }
      lost.packets += r.packets - std::min(r.packets, committed);
    }
    return lost;
  }

  /// Forgets checkpointed rows whose window ended long ago without a final record (bounds
  /// `written` when final batches are lost), and the map's storage once it is empty.
  void forgetStaleRows(SteadyClock::time_point now) {
    const bool over = written.size() > std::max(kMaxWrittenRows, 2 * options.queue_rows) &&
                      now >= next_forget_over;
    if (now < next_forget && !over) return;
    next_forget = now + kForgetInterval;
    next_forget_over = now + kForgetOverInterval;
    const std::int64_t cutoff = realtimeMs() - (over ? 0 : kForgetRowsAfterMs);
    for (auto it = written.begin(); it != written.end();) {
      it = it->second.window_end_ms < cutoff ? written.erase(it) : std::next(it);
    }
    if (written.empty() && written.bucket_count() > 4096) {
      std::unordered_map<std::uint64_t, WrittenRow>().swap(written);
    }
  }

  /// Logs drops since the last report, at most once per log_interval (unless forced).
  void reportDrops(SteadyClock::time_point now, bool force = false) {
    if (!force && reported_once && now - last_report < options.log_interval) return;
    const std::uint64_t full = queue.stats().records_dropped_full;
    const std::uint64_t failed = rows_dropped_write.load(std::memory_order_relaxed);
    bool logged = false;
    if (full > reported_full) {
      logger("store")->warn(
          "{} rows not stored: the SQLite queue ({} rows) was full ({} in all); the disk "
          "cannot keep up with this packet rate (consider --aggregation-window)",
          full - reported_full, options.queue_rows, full);
      reported_full = full;
      logged = true;
    }
    if (failed > reported_failed) {
      logger("store")->warn("{} rows not stored: cannot write to {}: {} ({} in all)",
                            failed - reported_failed, loc.display, last_error, failed);
      reported_failed = failed;
      logged = true;
    }
    if (logged) {
      last_report = now;
      reported_once = true;
    }
  }

  /// One DELETE chunk of the retention pass in progress.
  void retentionStep() {
    sqlite3_stmt* del = retention_stmt.get();
    sqlite3_bind_int64(del, 1, retention_cutoff_ms);
    sqlite3_bind_int64(del, 2, static_cast<sqlite3_int64>(options.retention_chunk));
    const int rc = sqlite3_step(del);
    sqlite3_reset(del);
    retention_chunks.fetch_add(1, std::memory_order_relaxed);
    if (rc != SQLITE_DONE) {
      loc.errors->add(detail::StorageErrors::kWrite);
      logger("store")->warn("{}: retention: cannot delete old rows: {}", loc.display,
                            sqlite3_errmsg(write_db.get()));
      retention_active = false;
      return;
    }
    const auto deleted = static_cast<std::uint64_t>(sqlite3_changes(write_db.get()));
    rows_deleted.fetch_add(deleted, std::memory_order_relaxed);
    retention_pass_deleted += deleted;
    if (deleted < options.retention_chunk) {
      retention_active = false;
      // The summary's epochs that end before the cutoff: their rows are gone.
      if (keys->deleteBefore(retention_cutoff_ms) != SQLITE_OK) {
        loc.errors->add(detail::StorageErrors::kWrite);
        logger("store")->warn("{}: retention: cannot delete old summary keys: {}", loc.display,
                              sqlite3_errmsg(write_db.get()));
      }
      if (retention_pass_deleted > 0) {
        logger("store")->debug("retention: deleted {} rows older than {} s", retention_pass_deleted,
                               *options.retention_s);
      }
    }
  }

  void run() {
    common::setUpThread("ayaflow-store", /*batch=*/true);
    auto now = SteadyClock::now();
    next_report = now + options.log_interval;
    next_retention = now;  // a pass at start-up, then every retention_interval
    std::uint64_t sync_pending = 0;
    for (;;) {
      // One retention chunk per turn while a pass is active: the queue is served between.
      SteadyClock::time_point deadline = next_report;
      if (options.retention_s) deadline = std::min(deadline, next_retention);
      if (retention_active) deadline = now;
      if (budget_active) deadline = now;
      if (budget->paused(now)) deadline = std::min(deadline, budget->nextFreeCheck());
      pipeline::BatchQueue::Item item = queue.pop(deadline);
      std::size_t rows = 0;
      if (item.batch) {
        rows = item.batch->size();
        if (budget->paused(SteadyClock::now())) {
          dropForDiskSpace(*item.batch);
        } else {
          write(*item.batch);
        }
        // An aggregation window's batch can be megabytes; once written (this is usually its
        // last reference) hand the freed heap back, so RSS follows the live state.
        item.batch.reset();
        if (rows >= kTrimAfterRows) malloc_trim(0);
      }
      if (item.flush_ticket != 0) queue.done(item.flush_ticket);
      if (item.sync_ticket != 0) sync_pending = item.sync_ticket;
      now = SteadyClock::now();
      forgetStaleRows(now);
      if (now >= next_report) {
        reportDrops(now);
        next_report = now + options.log_interval;
      }
      if (item.closed) break;
      if (options.retention_s) {
        if (!retention_active && now >= next_retention) {
          const auto keep_ms = static_cast<std::int64_t>(
              std::min<std::uint64_t>(*options.retention_s, INT64_MAX / 1000) * 1000);
          retention_cutoff_ms = realtimeMs() - keep_ms;
          retention_active = true;
          retention_pass_deleted = 0;
          next_retention = now + options.retention_interval;
        }
        if (retention_active) retentionStep();
      }
      // Beside retention: one chunk of the oldest rows per turn while over the size budget.
      budget_active = budget->step(rows);
      if (sync_pending != 0 && !retention_active && !budget_active) {
        queue.synced(sync_pending);
        sync_pending = 0;
      }
    }
    reportDrops(SteadyClock::now(), /*force=*/true);
    for (auto& by_names : insert_stmts) {
      for (StmtPtr& stmt : by_names) stmt.reset();
    }
    for (auto& by_names : insert_groups) {
      for (StmtPtr& stmt : by_names) stmt.reset();
    }
    for (auto& by_names : update_stmts) {
      for (StmtPtr& stmt : by_names) stmt.reset();
    }
    retention_stmt.reset();
    budget->close();
    keys.reset();
    write_db.reset();
    queue.closeConsumer();
  }

  void stop() {
    std::lock_guard<std::mutex> lock(stop_mu);
    queue.close();
    if (writer.joinable() && writer.get_id() != std::this_thread::get_id()) writer.join();
  }

  SqliteSinkStats stats() const {
    SqliteSinkStats s;
    const auto get = [](const auto& a) { return a.load(std::memory_order_relaxed); };
    s.rows_stored = get(rows_stored);
    s.rows_updated = get(rows_updated);
    s.packets_stored = get(packets_stored);
    s.rows_dropped_write_error = get(rows_dropped_write);
    s.packets_dropped_write_error = get(packets_dropped_write);
    s.batches = get(batches);
    s.write_errors = get(write_errors);
    s.rows_deleted = get(rows_deleted);
    s.retention_chunks = get(retention_chunks);
    s.rows_dropped_disk_space = get(rows_dropped_disk);
    s.packets_dropped_disk_space = get(packets_dropped_disk);
    const detail::DiskBudgetStats b = budget->stats();
    s.rows_deleted_size = b.rows_deleted;
    s.budget_chunks = b.chunks;
    s.db_bytes = b.db_bytes;
    s.db_file_bytes = b.file_bytes;
    s.max_db_bytes = options.max_db_bytes;
    s.disk_free_bytes = b.free_bytes;
    s.disk_floor_bytes = b.floor_bytes;
    s.writes_paused = b.paused;
    s.write_failures = loc.errors->count(detail::StorageErrors::kWrite);
    s.read_errors = loc.errors->count(detail::StorageErrors::kRead);
    s.queries_timed_out = get(loc.errors->query_timeouts);
    s.queries_busy = get(loc.errors->query_busy);
    s.queue = queue.stats();
    return s;
  }

  StoreOptions options;
  detail::DbLocation loc;
  pipeline::BatchQueue queue;
  std::atomic<std::uint64_t> rows_stored{0}, rows_updated{0}, packets_stored{0},
      rows_dropped_write{0}, packets_dropped_write{0}, batches{0}, write_errors{0}, rows_deleted{0},
      retention_chunks{0}, rows_dropped_disk{0}, packets_dropped_disk{0};
  std::atomic<bool> checkpoint_lost{false};  // set by the writer, taken by the pipeline
  std::mutex stop_mu;                        // serialises stop()
  std::thread writer;

  // Writer thread only (set up before it starts).
  DbPtr write_db;
  StmtPtr insert_stmts[2][2];   // one row, [named][health]
  StmtPtr insert_groups[2][2];  // rows_per_insert rows, [named][health]
  std::size_t rows_per_insert = 0;
  /// The text of a group's addresses and protocols, bound until its statement has run.
  struct RowText {
    char src[flow::kMaxAddressText];
    char dst[flow::kMaxAddressText];
    char protocol[flow::kMaxProtocolText];
  };
  std::vector<RowText> group_text;  // rows_per_insert
  StmtPtr update_stmts[2][2];       // as kUpdateSql
  StmtPtr retention_stmt;
  // Rows of open aggregation windows written at a checkpoint, by update_key: at most one per
  // open (flow, window) sum (plus, for 10 minutes, those whose final record was lost; never
  // more than the hard bound once ended windows are forgotten).
  std::unordered_map<std::uint64_t, WrittenRow> written;
  std::vector<Staged> staged;  // reused by commitRows()
  SteadyClock::time_point next_forget;
  SteadyClock::time_point next_forget_over;
  std::optional<detail::KeysWriter> keys;    // the packets_keys summary
  std::optional<detail::DiskBudget> budget;  // size budget and free-space floor
  // Over the size budget: a chunk per turn. True at start-up so that the first turn measures
  // a database the budget was lowered for, without waiting for a batch.
  bool budget_active = true;
  SteadyClock::time_point next_report;
  SteadyClock::time_point next_retention;
  bool retention_active = false;
  std::int64_t retention_cutoff_ms = 0;
  std::uint64_t retention_pass_deleted = 0;
  bool failing = false;
  std::string last_error;
  bool reported_once = false;
  SteadyClock::time_point last_report;
  std::uint64_t reported_full = 0;
  std::uint64_t reported_failed = 0;
};

SqliteSink::SqliteSink(StoreOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& s = *impl_;
  detail::checkBeforeOpen(s.loc);
  s.write_db = detail::openWriter(s.loc);
  const int max_params = sqlite3_limit(s.write_db.get(), SQLITE_LIMIT_VARIABLE_NUMBER, -1);
  s.rows_per_insert = std::min<std::size_t>(kMaxRowsPerInsert,
                                            static_cast<std::size_t>(max_params) / kInsertParams);
  s.group_text.resize(s.rows_per_insert);
  for (int named = 0; named < 2; ++named) {
    for (int health = 0; health < 2; ++health) {
      s.insert_stmts[named][health] =
          detail::prepare(s.write_db.get(), insertSql(named, health, 1).c_str(), s.loc.display);
    }
  }
  for (int earlier = 0; earlier < 2; ++earlier) {
    for (int named = 0; named < 2; ++named) {
      s.update_stmts[earlier][named] =
          detail::prepare(s.write_db.get(), kUpdateSql[earlier][named], s.loc.display);
    }
  }
  s.retention_stmt = detail::prepare(s.write_db.get(), kRetentionSql, s.loc.display);
  s.keys.emplace(s.write_db.get(), s.loc.display, s.options.keys_per_bucket);
  s.budget.emplace(s.write_db.get(), s.loc, s.options, *s.keys);
  s.writer = std::thread([impl = impl_.get()] { impl->run(); });
}

SqliteSink::~SqliteSink() { stop(); }

bool SqliteSink::consume(pipeline::BatchPtr batch, Deadline room_until) noexcept {
  return impl_->queue.push(std::move(batch), room_until);
}

bool SqliteSink::takeCheckpointLost() noexcept {
  return impl_->checkpoint_lost.exchange(false, std::memory_order_relaxed);
}

void SqliteSink::flush() { impl_->queue.flush(); }

void SqliteSink::stop() { impl_->stop(); }

SqliteSinkStats SqliteSink::stats() const { return impl_->stats(); }

const detail::DbLocation& SqliteSink::location() const { return impl_->loc; }

std::chrono::milliseconds SqliteSink::queryTimeout() const { return impl_->options.query_timeout; }

std::size_t SqliteSink::queryConnections() const {
  return std::max<std::size_t>(impl_->options.query_connections, 1);
}

void SqliteSink::syncForTest() { impl_->queue.sync(); }

std::shared_ptr<const prometheus::Collectable> SqliteSink::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [impl = impl_.get()] { return storageFamilies(impl->stats()); });
}

}  // namespace ayaflow::store
