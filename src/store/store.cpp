// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "ayaflow/store/aggregator.h"
#include "sqlite_util.h"

namespace ayaflow::store {
namespace {

using detail::DbPtr;
using detail::StmtPtr;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kDrainChunk = 512;  // packets copied out of the queue per lock
// The queue's first slots stay resident; deeper ones go back to the kernel once the queue
// has drained, at most once per interval.
constexpr std::size_t kQueueSlotsKept = 2048;  // 160 KiB
constexpr auto kQueueReleaseInterval = std::chrono::seconds(5);
constexpr std::size_t kReaderPoolSize = 4;

std::int64_t clockNs(clockid_t id) noexcept {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

std::int64_t floorDiv(std::int64_t a, std::int64_t b) noexcept {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

constexpr const char* kInsertSql =
    "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, length, "
    "packet_count, direction, src_hostname, dst_hostname, domain) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

// The inner SELECT walks idx_timestamp from the oldest row, so each chunk costs about its
// own size whatever the table's.
constexpr const char* kRetentionSql =
    "DELETE FROM packets WHERE id IN "
    "(SELECT id FROM packets WHERE timestamp < ?1 ORDER BY timestamp LIMIT ?2)";

struct Counters {
  std::atomic<std::uint64_t> packets_queued{0};
  std::atomic<std::uint64_t> dropped_queue_full{0};
  std::atomic<std::uint64_t> dropped_stopped{0};
  std::atomic<std::uint64_t> rows_stored{0};
  std::atomic<std::uint64_t> packets_stored{0};
  std::atomic<std::uint64_t> rows_dropped_write{0};
  std::atomic<std::uint64_t> packets_dropped_write{0};
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> write_errors{0};
  std::atomic<std::uint64_t> rows_deleted{0};
  std::atomic<std::uint64_t> retention_chunks{0};
  std::atomic<std::size_t> open_flows{0};
};

void bindText(sqlite3_stmt* stmt, int index, const std::string& text) {
  sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

void bindOptional(sqlite3_stmt* stmt, int index, const std::optional<std::string>& text) {
  if (text) {
    bindText(stmt, index, *text);
  } else {
    sqlite3_bind_null(stmt, index);
  }
}

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

/// The hand-off queue's slots: one anonymous mapping whose pages the kernel provides on
/// first write, so a queue that never gets deep costs only the pages it reached.
class PacketSlots {
 public:
  PacketSlots() = default;
  explicit PacketSlots(std::size_t n) : n_(n), bytes_(n * sizeof(flow::Packet)) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<unsigned char*>(p);
  }
  PacketSlots(PacketSlots&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), n_(o.n_), bytes_(o.bytes_) {}
  PacketSlots& operator=(PacketSlots&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(n_, o.n_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  PacketSlots(const PacketSlots&) = delete;
  PacketSlots& operator=(const PacketSlots&) = delete;
  ~PacketSlots() {
    if (data_ != nullptr) munmap(data_, bytes_);
  }

  std::size_t size() const noexcept { return n_; }
  /// Gives the pages of slots [first, end) back to the kernel (they read as zero until
  /// written again). The caller makes sure nothing uses those slots meanwhile.
  void release(std::size_t first) noexcept {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const std::size_t from = (first * sizeof(flow::Packet) + page - 1) / page * page;
    if (from < bytes_) madvise(data_ + from, bytes_ - from, MADV_DONTNEED);
  }
  void put(std::size_t i, const flow::Packet& p) noexcept {
    std::memcpy(data_ + i * sizeof p, &p, sizeof p);
  }
  void get(std::size_t i, std::size_t count, flow::Packet* out) const noexcept {
    if (count > 0) std::memcpy(out, data_ + i * sizeof *out, count * sizeof *out);
  }

 private:
  static_assert(std::is_trivially_copyable_v<flow::Packet>);
  unsigned char* data_ = nullptr;
  std::size_t n_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace

struct Store::Impl {
  explicit Impl(StoreOptions o) : options(std::move(o)) {
    if (options.batch_rows == 0) options.batch_rows = 1;
    if (options.queue_capacity == 0) options.queue_capacity = 1;
    if (options.retention_chunk == 0) options.retention_chunk = 1;
    if (options.max_open_flows == 0) options.max_open_flows = 1;
    loc = detail::locate(options.db_path);
    ring = PacketSlots(options.queue_capacity);
    wake_threshold = std::min(options.batch_rows, std::max<std::size_t>(1, ring.size() / 4));
    pending.reserve(options.batch_rows + 1);
    if (options.aggregation_window_s > 0) {
      aggregator.emplace(static_cast<std::int64_t>(options.aggregation_window_s) * 1000);
    }
  }

  // ---- capture side -------------------------------------------------------------------

  void submit(const flow::Packet& packet) noexcept {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!accepting) {
        counters.dropped_stopped.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (size == ring.size()) {
        counters.dropped_queue_full.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      std::size_t tail = head + size;
      if (tail >= ring.size()) tail -= ring.size();
      ring.put(tail, packet);
      if (tail >= touched) touched = tail + 1;
      ++size;
      // Wake the writer once per batch's worth of packets, not per packet; otherwise its
      // timer picks them up.
      if (writer_waiting && size >= wake_threshold) {
        writer_waiting = false;
        wake = true;
      }
    }
    counters.packets_queued.fetch_add(1, std::memory_order_relaxed);
    if (wake) cv.notify_one();
  }

  // ---- writer thread ------------------------------------------------------------------

  void start() {
    writer = std::thread([this] { run(); });
  }

  /// Copies up to `max` packets out of the ring into `out`; returns how many.
  std::size_t pop(flow::Packet* out, std::size_t max) {
    std::lock_guard<std::mutex> lock(mu);
    const std::size_t n = std::min(max, size);
    const std::size_t first = std::min(n, ring.size() - head);
    ring.get(head, first, out);
    ring.get(0, n - first, out + first);
    head += n;
    if (head >= ring.size()) head -= ring.size();
    size -= n;
    // An empty queue starts again at slot 0, so it only ever touches the pages its
    // deepest backlog needed.
    if (size == 0) {
      head = 0;
      releaseQueuePages();
    }
    return n;
  }

  /// With `mu` held. After a burst, hands the queue's deep pages back once it is empty, at
  /// most once per kQueueReleaseInterval (a page fault per page is the next burst's price).
  void releaseQueuePages() noexcept {
    if (size != 0 || touched <= kQueueSlotsKept) return;
    const auto now = SteadyClock::now();
    if (now - last_release < kQueueReleaseInterval) return;
    head = 0;
    ring.release(kQueueSlotsKept);
    touched = kQueueSlotsKept;
    last_release = now;
  }

  void updateClock() noexcept {
    realtime_ms = clockNs(CLOCK_REALTIME) / 1000000;
    offset_ns = clockNs(CLOCK_REALTIME) - clockNs(CLOCK_MONOTONIC);
  }

  std::int64_t unixMs(std::uint64_t monotonic_ns) const noexcept {
    if (monotonic_ns == 0) return realtime_ms;
    return floorDiv(static_cast<std::int64_t>(monotonic_ns) + offset_ns, 1000000);
  }

  /// Takes `count` packets from the queue (those present when the loop looked) and files
  /// them: raw rows into the pending batch (committed each time it is full), or into the
  /// aggregator.
  void drain(std::size_t count) {
    flow::Packet chunk[kDrainChunk];
    while (count > 0) {
      const std::size_t n = pop(chunk, std::min(count, kDrainChunk));
      if (n == 0) break;
      count -= n;
      for (std::size_t i = 0; i < n; ++i) {
        const flow::Packet& p = chunk[i];
        if (aggregator) {
          aggregator->add(p, unixMs(p.firstTimestampNs()));
        } else {
          pending.push_back(PendingRow::fromPacket(p, unixMs(p.timestamp_ns)));
          if (pending.size() >= options.batch_rows) commitPending();
        }
      }
      if (aggregator && aggregator->openFlows() > options.max_open_flows) {
        // Bounded memory: write every open sum now. Totals stay exact; a flow may get a
        // second row for the same window.
        logger("store")->debug("{} open flows exceed {}: writing the open windows early",
                               aggregator->openFlows(), options.max_open_flows);
        aggregator->takeAll(pending);
        commitPending();
      }
    }
    if (aggregator) counters.open_flows.store(aggregator->openFlows(), std::memory_order_relaxed);
  }

  /// Commits every pending row, batch_rows per transaction.
  void commitPending() {
    std::size_t done = 0;
    while (done < pending.size()) {
      const std::size_t n = std::min(options.batch_rows, pending.size() - done);
      commitRows(pending.data() + done, n);
      done += n;
    }
    pending.clear();
    // An aggregated window (or an early write at the open-flow cap) can hand over far
    // more rows than a batch: do not keep that peak's capacity.
    if (pending.capacity() > 4 * (options.batch_rows + 1)) {
      std::vector<PendingRow>().swap(pending);
      pending.reserve(options.batch_rows + 1);
    }
  }

  void commitRows(const PendingRow* rows, std::size_t n) {
    sqlite3* db = write_db.get();
    sqlite3_stmt* insert = insert_stmt.get();
    int rc = detail::exec(db, "BEGIN");
    std::uint64_t packets = 0;
    for (std::size_t i = 0; rc == SQLITE_OK && i < n; ++i) {
      toRecord(rows[i], record);
      packets += rows[i].packet_count;
      if (options.enrich) enrich();
      sqlite3_bind_int64(insert, 1, record.timestamp_ms);
      bindText(insert, 2, record.src_ip);
      bindText(insert, 3, record.dst_ip);
      sqlite3_bind_int(insert, 4, record.src_port);
      sqlite3_bind_int(insert, 5, record.dst_port);
      bindText(insert, 6, record.protocol);
      sqlite3_bind_int64(insert, 7, static_cast<sqlite3_int64>(record.length));
      sqlite3_bind_int64(insert, 8, static_cast<sqlite3_int64>(record.packet_count));
      bindText(insert, 9, record.direction);
      bindOptional(insert, 10, record.src_hostname);
      bindOptional(insert, 11, record.dst_hostname);
      bindOptional(insert, 12, record.domain);
      rc = sqlite3_step(insert);
      if (rc == SQLITE_DONE) rc = SQLITE_OK;
      sqlite3_reset(insert);
      sqlite3_clear_bindings(insert);
    }
    if (rc == SQLITE_OK) rc = detail::exec(db, "COMMIT");
    if (rc != SQLITE_OK) {
      last_error = sqlite3_errmsg(db);
      if (last_error == "not an error") last_error = sqlite3_errstr(rc);
      if (!sqlite3_get_autocommit(db)) detail::exec(db, "ROLLBACK");
      counters.write_errors.fetch_add(1, std::memory_order_relaxed);
      counters.rows_dropped_write.fetch_add(n, std::memory_order_relaxed);
      counters.packets_dropped_write.fetch_add(packets, std::memory_order_relaxed);
      failing = true;
      reportDrops(SteadyClock::now());
      return;
    }
    counters.rows_stored.fetch_add(n, std::memory_order_relaxed);
    counters.packets_stored.fetch_add(packets, std::memory_order_relaxed);
    counters.batches.fetch_add(1, std::memory_order_relaxed);
    if (failing) {
      failing = false;
      reportDrops(SteadyClock::now(), /*force=*/true);
      logger("store")->info("{}: writing again", loc.display);
    }
  }

  void enrich() noexcept {
    try {
      options.enrich(record);
    } catch (const std::exception& e) {
      if (!enrich_failure_logged) {
        logger("store")->error("row enrichment failed: {} (rows are stored without it)", e.what());
        enrich_failure_logged = true;
      }
    } catch (...) {
      if (!enrich_failure_logged) {
        logger("store")->error("row enrichment failed (rows are stored without it)");
        enrich_failure_logged = true;
      }
    }
  }

  /// Logs drops since the last report, at most once per log_interval (unless forced).
  void reportDrops(SteadyClock::time_point now, bool force = false) {
    if (!force && reported_once && now - last_report < options.log_interval) return;
    const std::uint64_t full = counters.dropped_queue_full.load(std::memory_order_relaxed);
    const std::uint64_t failed = counters.rows_dropped_write.load(std::memory_order_relaxed);
    bool logged = false;
    if (full > reported_full) {
      logger("store")->warn(
          "{} packets not stored: the store queue ({} packets) was full ({} in all); the disk "
          "cannot keep up with this packet rate (consider --aggregation-window)",
          full - reported_full, ring.size(), full);
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
    counters.retention_chunks.fetch_add(1, std::memory_order_relaxed);
    if (rc != SQLITE_DONE) {
      logger("store")->warn("{}: retention: cannot delete old rows: {}", loc.display,
                            sqlite3_errmsg(write_db.get()));
      retention_active = false;
      return;
    }
    const auto deleted = static_cast<std::uint64_t>(sqlite3_changes(write_db.get()));
    counters.rows_deleted.fetch_add(deleted, std::memory_order_relaxed);
    retention_pass_deleted += deleted;
    if (deleted < options.retention_chunk) {
      retention_active = false;
      if (retention_pass_deleted > 0) {
        logger("store")->debug("retention: deleted {} rows older than {} s", retention_pass_deleted,
                               *options.retention_s);
      }
    }
  }

  SteadyClock::time_point nextDeadline(SteadyClock::time_point now) const {
    SteadyClock::time_point deadline = next_tick;
    if (options.retention_s) deadline = std::min(deadline, next_retention);
    if (aggregator) {
      if (const auto end = aggregator->nextWindowEnd()) {
        deadline = std::min(deadline, now + std::chrono::milliseconds(*end - realtime_ms));
      }
    }
    return deadline;
  }

  void run() {
    pthread_setname_np(pthread_self(), "ayaflow-store");
    updateClock();
    auto now = SteadyClock::now();
    next_tick = now + options.batch_interval;
    next_retention = now;  // a pass at start-up, then every retention_interval
    for (;;) {
      bool stop_now = false;
      std::uint64_t flush_seen = 0, sync_seen = 0;
      std::size_t queued = 0;
      {
        std::unique_lock<std::mutex> lock(mu);
        const auto requested = [this] {
          return stop_requested || flush_requested != flush_done || sync_requested != sync_done;
        };
        if (!retention_active && !requested() && size < wake_threshold) {
          writer_waiting = true;
          cv.wait_until(lock, nextDeadline(SteadyClock::now()),
                        [&] { return requested() || size >= wake_threshold; });
          writer_waiting = false;
        }
        stop_now = stop_requested;
        flush_seen = flush_requested;
        sync_seen = sync_requested;
        releaseQueuePages();  // also when the queue emptied less than an interval ago
        // On stop, submit() no longer accepts, so this is everything there will be.
        queued = size;
      }
      updateClock();
      drain(queued);
      now = SteadyClock::now();

      const bool flush_now = stop_now || flush_seen != flush_done_local;
      if (aggregator) {
        if (flush_now) {
          aggregator->takeAll(pending);
        } else {
          aggregator->takeClosed(realtime_ms, pending);
        }
        counters.open_flows.store(aggregator->openFlows(), std::memory_order_relaxed);
        commitPending();
      }
      if (now >= next_tick) {
        if (!aggregator) commitPending();
        reportDrops(now);
        next_tick = now + options.batch_interval;
      }
      if (flush_now && !pending.empty()) commitPending();

      if (!stop_now && options.retention_s) {
        if (!retention_active && now >= next_retention) {
          const auto keep_ms = static_cast<std::int64_t>(
              std::min<std::uint64_t>(*options.retention_s, INT64_MAX / 1000) * 1000);
          retention_cutoff_ms = realtime_ms - keep_ms;
          retention_active = true;
          retention_pass_deleted = 0;
          next_retention = now + options.retention_interval;
        }
        // One chunk per loop turn: the queue is served between chunks.
        if (retention_active) retentionStep();
      }

      flush_done_local = flush_seen;
      {
        std::lock_guard<std::mutex> lock(mu);
        flush_done = flush_seen;
        if (!retention_active) sync_done = sync_seen;
      }
      done_cv.notify_all();
      if (stop_now) break;
    }
    reportDrops(SteadyClock::now(), /*force=*/true);
    insert_stmt.reset();
    retention_stmt.reset();
    write_db.reset();
    {
      std::lock_guard<std::mutex> lock(mu);
      writer_exited = true;
    }
    done_cv.notify_all();
  }

  // ---- control ------------------------------------------------------------------------

  void flush() {
    std::unique_lock<std::mutex> lock(mu);
    if (stop_requested || writer_exited) return;
    const std::uint64_t mine = ++flush_requested;
    cv.notify_one();
    done_cv.wait(lock, [&] { return flush_done >= mine || writer_exited; });
  }

  void syncForTest() {
    std::unique_lock<std::mutex> lock(mu);
    if (stop_requested || writer_exited) return;
    const std::uint64_t mine = ++sync_requested;
    cv.notify_one();
    done_cv.wait(lock, [&] { return sync_done >= mine || writer_exited; });
  }

  void stop() {
    std::lock_guard<std::mutex> stop_lock(stop_mu);
    {
      std::lock_guard<std::mutex> lock(mu);
      stop_requested = true;
      accepting = false;
    }
    cv.notify_one();
    {
      // Close idle read connections first, so that the writer's connection is the last one
      // and closing it checkpoints the WAL into the database file and removes it.
      std::lock_guard<std::mutex> lock(pool_mu);
      pool.clear();
    }
    if (writer.joinable() && writer.get_id() != std::this_thread::get_id()) writer.join();
  }

  // ---- readers ------------------------------------------------------------------------

  DbPtr acquireReader() const {
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

  void releaseReader(DbPtr db) const {
    std::lock_guard<std::mutex> lock(pool_mu);
    if (pool.size() < kReaderPoolSize) pool.push_back(std::move(db));
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
  static Sql buildSql(const flow::HistoryQuery& q) {
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
    if (q.protocol) clause("protocol = " + param({true, 0, protocolText(*q.protocol)}));
    if (q.direction) clause("direction = " + param({true, 0, directionText(*q.direction)}));
    const std::size_t limit = std::clamp<std::size_t>(q.limit, 1, flow::HistoryQuery::kMaxLimit);
    sql.text += " ORDER BY timestamp DESC, id DESC LIMIT " +
                param({false, static_cast<std::int64_t>(limit), {}});
    return sql;
  }

  static int progress(void* arg) noexcept {
    const auto* deadline = static_cast<const SteadyClock::time_point*>(arg);
    return SteadyClock::now() > *deadline ? 1 : 0;
  }

  std::vector<flow::FlowRecord> query(const flow::HistoryQuery& q) const {
    const Sql sql = buildSql(q);
    DbPtr db = acquireReader();
    sqlite3* raw_db = db.get();
    const auto fail = [&](int rc) -> void {
      if ((rc & 0xff) == SQLITE_INTERRUPT) {
        throw SystemError(ETIMEDOUT, "history query on " + loc.display + " took longer than " +
                                         std::to_string(options.query_timeout.count()) +
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
    SteadyClock::time_point deadline = SteadyClock::now() + options.query_timeout;
    sqlite3_progress_handler(raw_db, 1000, &Impl::progress, &deadline);
    std::vector<flow::FlowRecord> out;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      flow::FlowRecord r;
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
    releaseReader(std::move(db));
    return out;
  }

  std::string queryPlan(const flow::HistoryQuery& q) const {
    const Sql sql = buildSql(q);
    DbPtr db = acquireReader();
    const std::string explain = "EXPLAIN QUERY PLAN " + sql.text;
    StmtPtr stmt = detail::prepare(db.get(), explain.c_str(), loc.display);
    std::string out;
    while (sqlite3_step(stmt.get()) == SQLITE_ROW) {
      out += columnText(stmt.get(), 3);
      out += '\n';
    }
    stmt.reset();
    releaseReader(std::move(db));
    return out;
  }

  StoreStats stats() const {
    StoreStats s;
    const auto get = [](const auto& a) { return a.load(std::memory_order_relaxed); };
    s.packets_queued = get(counters.packets_queued);
    s.rows_dropped_queue_full = get(counters.dropped_queue_full);
    s.rows_dropped_stopped = get(counters.dropped_stopped);
    s.rows_stored = get(counters.rows_stored);
    s.packets_stored = get(counters.packets_stored);
    s.rows_dropped_write_error = get(counters.rows_dropped_write);
    s.packets_dropped_write_error = get(counters.packets_dropped_write);
    s.batches = get(counters.batches);
    s.write_errors = get(counters.write_errors);
    s.rows_deleted = get(counters.rows_deleted);
    s.retention_chunks = get(counters.retention_chunks);
    s.open_flows = get(counters.open_flows);
    s.queue_capacity = ring.size();
    std::lock_guard<std::mutex> lock(mu);
    s.queue_depth = size;
    return s;
  }

  StoreOptions options;
  detail::DbLocation loc;
  Counters counters;

  // Queue and hand-shakes; all guarded by mu.
  mutable std::mutex mu;
  std::condition_variable cv;       // wakes the writer
  std::condition_variable done_cv;  // wakes flush()/syncForTest()/stop() waiters
  PacketSlots ring;                 // queue_capacity packets, pages touched on first use
  std::size_t head = 0;
  std::size_t size = 0;
  std::size_t touched = 0;  // slots [0, touched) may have resident pages
  SteadyClock::time_point last_release{};
  std::size_t wake_threshold = 1;  // immutable after construction
  bool writer_waiting = false;
  bool accepting = true;
  bool stop_requested = false;
  bool writer_exited = false;
  std::uint64_t flush_requested = 0, flush_done = 0;
  std::uint64_t sync_requested = 0, sync_done = 0;

  std::mutex stop_mu;  // serialises stop()
  std::thread writer;

  // Writer thread only (set up before it starts).
  DbPtr write_db;
  StmtPtr insert_stmt;
  StmtPtr retention_stmt;
  std::vector<PendingRow> pending;
  std::optional<WindowAggregator> aggregator;
  flow::FlowRecord record;  // reused for every insert
  std::int64_t realtime_ms = 0;
  std::int64_t offset_ns = 0;  // CLOCK_REALTIME - CLOCK_MONOTONIC
  std::uint64_t flush_done_local = 0;
  SteadyClock::time_point next_tick;
  SteadyClock::time_point next_retention;
  bool retention_active = false;
  std::int64_t retention_cutoff_ms = 0;
  std::uint64_t retention_pass_deleted = 0;
  bool failing = false;
  bool enrich_failure_logged = false;
  std::string last_error;
  bool reported_once = false;
  SteadyClock::time_point last_report;
  std::uint64_t reported_full = 0;
  std::uint64_t reported_failed = 0;

  // Read-only connections, guarded by pool_mu.
  mutable std::mutex pool_mu;
  mutable std::vector<DbPtr> pool;
  DbPtr memory_keeper;  // ":memory:": keeps the memdb database alive after stop()
};

Store::Store(StoreOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& s = *impl_;
  detail::checkBeforeOpen(s.loc);
  s.write_db = detail::openWriter(s.loc);
  if (s.loc.in_memory) s.memory_keeper = detail::openReader(s.loc);
  s.insert_stmt = detail::prepare(s.write_db.get(), kInsertSql, s.loc.display);
  s.retention_stmt = detail::prepare(s.write_db.get(), kRetentionSql, s.loc.display);
  s.start();
}

Store::~Store() { stop(); }

void Store::submit(const flow::Packet& packet) noexcept { impl_->submit(packet); }

void Store::flush() { impl_->flush(); }

void Store::stop() { impl_->stop(); }

std::vector<flow::FlowRecord> Store::query(const flow::HistoryQuery& q) const {
  return impl_->query(q);
}

StoreStats Store::stats() const { return impl_->stats(); }

const std::string& Store::path() const { return impl_->options.db_path; }

void Store::syncForTest() { impl_->syncForTest(); }

std::string Store::queryPlanForTest(const flow::HistoryQuery& q) const {
  return impl_->queryPlan(q);
}

}  // namespace ayaflow::store
