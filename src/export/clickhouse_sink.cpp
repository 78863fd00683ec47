// SPDX-License-Identifier: MIT OR Apache-2.0
// ClickHouseSink: the sender thread, its spool of sealed INSERTs, back-off, the batch-id check
// before a resend, table creation and retention by daily partitions.
#include "ayaflow/export/clickhouse_sink.h"

#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>

#include "ayaflow/common/interface_name.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "ayaflow/common/thread.h"
#include "ayaflow/export/clickhouse_schema.h"
#include "ayaflow/pipeline/batch_queue.h"
#include "http_post.h"

namespace ayaflow::exporter {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRetentionInterval = std::chrono::hours(1);
constexpr auto kLogInterval = std::chrono::seconds(60);
constexpr std::size_t kTrimAfterRecords = 8192;

/// One sealed INSERT: rows of one UTC day, with the id every row carries.
struct Chunk {
  std::uint64_t id = 0;
  std::string body;  // RowBinary rows
  std::uint64_t rows = 0;
  std::int64_t min_s = 0, max_s = 0;  // range of `start`, to find the rows by id cheaply
  bool tried = false;                 // an attempt failed: the next is a retry
  bool uncertain = false;             // an attempt may have landed: look it up first
  bool counted_spooled = false;
};

}  // namespace

struct ClickHouseSink::Impl {
  explicit Impl(ClickHouseOptions o) : options(std::move(o)), queue(options.queue_records) {
    if (options.batch_rows == 0) options.batch_rows = 1;
    detail::HttpTarget target;
    try {
      target = detail::HttpTarget::parse(options.url);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("--clickhouse-url: ") + e.what());
    }
    try {
      poster = std::make_unique<detail::HttpPoster>(
          target, detail::basicAuthorization(options.user, options.password), options.ca_file,
          options.timeout);
    } catch (const std::exception& e) {
      throw ConfigError("--clickhouse-ca-file: '" + options.ca_file + "': " + e.what());
    }
    const std::string table = options.database + "." + options.table;
    insert_target = "/?query=" + detail::urlEncode("INSERT INTO " + table + " (" +
                                                   clickHouseColumns() + ") FORMAT RowBinary");
    std::random_device rd;
    next_id = (std::uint64_t{rd()} << 32) ^ rd();
    table_ready = !options.create_table;
  }

  // ---- sender thread --------------------------------------------------------------------

  void run() {
    common::setUpThread("ayaflow-ch", /*batch=*/true);
    Clock::time_point now = Clock::now();
    next_retention = now;
    next_log = now + kLogInterval;
    for (;;) {
      Clock::time_point deadline = now + std::chrono::seconds(1);
      if (pending_rows != 0) deadline = std::min(deadline, pending_since + options.flush_interval);
      if (!spool.empty() || !table_ready) deadline = std::min(deadline, next_attempt);
      pipeline::BatchQueue::Item item = queue.pop(std::max(deadline, Clock::now()));
      publishDepth();
      if (item.batch) {
        take(*item.batch);
        // A window's batch (and its INSERT bodies) can be megabytes: once sent, hand the
        // freed heap back so RSS follows what is held, as the SQLite writer does.
        if (item.batch->size() >= kTrimAfterRecords) trim_pending = true;
        item.batch.reset();
      }
      now = Clock::now();
      if (pending_rows != 0 && (now >= pending_since + options.flush_interval || item.closed ||
                                item.flush_ticket != 0)) {
        seal();
      }
      if (item.closed) break;
      if (now >= next_attempt || item.flush_ticket != 0) sendSpool(now, Clock::time_point::max());
      if (trim_pending && spool.empty()) {
        malloc_trim(0);
        trim_pending = false;
      }
      if (item.flush_ticket != 0) queue.done(item.flush_ticket);
      if (options.retention_days && table_ready && now >= next_retention) {
        retention();
        next_retention = now + kRetentionInterval;
      }
      if (now >= next_log) {
        reportDrops();
        next_log = now + kLogInterval;
      }
    }
    // Stopping: what is spooled gets stop_timeout (and no back-off), the rest is counted.
    const Clock::time_point until = Clock::now() + options.stop_timeout;
    while (!spool.empty() && Clock::now() < until) {
      next_attempt = Clock::now();
      sendSpool(Clock::now(), until);
      if (!spool.empty()) {
        std::this_thread::sleep_until(std::min(until, Clock::now() + options.backoff_min));
      }
    }
    for (const Chunk& c : spool) dropped_stopped += c.rows;
    spool.clear();
    spool_rows = 0;
    publishDepth();
    reportDrops();
    poster->close();
    queue.closeConsumer();
  }

  void take(const pipeline::RecordBatch& batch) {
    if (!batch.empty() && batch.front().state == pipeline::RecordState::kProvisional) return;
    interfaces.clear();  // names looked up again per batch: interfaces come and go
    for (const pipeline::FlowRecord& r : batch) {
      const std::int64_t day = utcDay(r.first_ms);
      if (pending_rows != 0 && (day != pending_day || pending_rows >= options.batch_rows)) {
        seal();
        // Send each full INSERT at once rather than after the whole window is encoded: a
        // window of 100 000 flows then holds one INSERT body at a time, not fourteen MB.
        if (Clock::now() >= next_attempt) sendSpool(Clock::now(), Clock::time_point::max());
      }
      if (pending_rows == 0) {
        pending_day = day;
        pending_since = Clock::now();
        pending.min_s = pending.max_s = r.first_ms / 1000;
      }
      auto it = interfaces.find(r.ifindex);
      if (it == interfaces.end()) {
        it = interfaces.emplace(r.ifindex, common::interfaceLabel(r.ifindex)).first;
      }
      RowContext context{&options.node, &it->second, next_id};
      appendRowBinary(r, context, pending.body);
      ++pending_rows;
      pending.min_s = std::min(pending.min_s, r.first_ms / 1000);
      pending.max_s = std::max(pending.max_s, r.first_ms / 1000);
    }
  }

  /// The INSERT being built joins the spool (or is dropped past the spool's bound).
  void seal() {
    if (pending_rows == 0) return;
    pending.id = next_id++;
    pending.rows = pending_rows;
    if (spool_rows + pending.rows > options.spool_records && !spool.empty()) {
      dropped_spool_full += pending.rows;
    } else {
      // Waiting behind an INSERT that failed: this one is spooled as well.
      if (!spool.empty() && spool.front().tried) {
        pending.counted_spooled = true;
        spooled += pending.rows;
      }
      spool_rows += pending.rows;
      spool.push_back(std::move(pending));
    }
    pending = Chunk{};
    pending_rows = 0;
    publishDepth();
  }

  /// Sends spooled INSERTs in order until one fails (then backs off) or `until`.
  void sendSpool(Clock::time_point now, Clock::time_point until) {
    if (!table_ready) {
      if (!ensureTable()) return fail(now);
    }
    while (!spool.empty() && Clock::now() < until) {
      Chunk& c = spool.front();
      if (!sendChunk(c)) {
        if (!c.counted_spooled) {
          c.counted_spooled = true;
          spooled += c.rows;
          for (Chunk& later : spool) {
            if (!later.counted_spooled) {
              later.counted_spooled = true;
              spooled += later.rows;
            }
          }
        }
        return fail(Clock::now());
      }
      spool_rows -= c.rows;
      spool.pop_front();
      publishDepth();
      backoff = options.backoff_min;
    }
  }

  void fail(Clock::time_point now) {
    next_attempt = now + backoff;
    backoff = std::min(backoff * 2, options.backoff_max);
  }

  /// One attempt at the front INSERT: true once it is stored (now or by an earlier attempt).
  bool sendChunk(Chunk& c) {
    try {
      if (c.uncertain) {
        // The previous attempt went out and its answer was lost: did it land?
        const std::string query =
            "SELECT count() FROM " + options.database + "." + options.table +
            " WHERE start >= toDateTime(" + std::to_string(c.min_s) +
            ", 'UTC') AND start <= " + "toDateTime(" + std::to_string(c.max_s) +
            ", 'UTC') AND batch_id = " + std::to_string(c.id) + " FORMAT TabSeparated";
        const detail::HttpAnswer a = poster->post("/?query=" + detail::urlEncode(query), "");
        if (a.status != 200) return rejected("batch lookup", a);
        const std::uint64_t found = std::strtoull(a.body.c_str(), nullptr, 10);
        if (found >= c.rows) {
          records += c.rows;  // the lost answer's INSERT did land: not sent again
          return true;
        }
        c.uncertain = false;  // one partition per INSERT: nothing of it landed
      }
      if (c.tried) retried += c.rows;
      c.tried = true;
      const detail::HttpAnswer a = poster->post(insert_target, c.body);
      if (a.status != 200) return rejected("INSERT", a);
      records += c.rows;
      bytes += c.body.size();
      return true;
    } catch (const detail::HttpFailure& e) {
      c.uncertain = c.uncertain || (c.tried && e.maybeDelivered());
      ++errors;
      logError(std::string("ClickHouse ") + options.url + ": " + e.what());
      return false;
    }
  }

  bool rejected(const char* what, const detail::HttpAnswer& a) {
    ++errors;
    std::string body = a.body.substr(0, 300);
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    logError(std::string("ClickHouse ") + what + " answered " + std::to_string(a.status) + ": " +
             body);
    return false;
  }

  bool ensureTable() {
    try {
      const detail::HttpAnswer a = poster->post(
          "/?query=" + detail::urlEncode(clickHouseCreateTable(options.database, options.table)),
          "");
      if (a.status != 200) return rejected("CREATE TABLE", a);
      table_ready = true;
      logger("export")->info("ClickHouse: table {}.{} is ready", options.database, options.table);
      return true;
    } catch (const detail::HttpFailure& e) {
      ++errors;
      logError(std::string("ClickHouse ") + options.url + ": " + e.what());
      return false;
    }
  }

  /// Drops the daily partitions older than retention_days (UTC days).
  void retention() {
    const std::int64_t today = utcDay(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
    const std::int64_t keep_from = today - static_cast<std::int64_t>(*options.retention_days);
    // YYYYMMDD of a day number (civil-from-days, proleptic Gregorian).
    const auto yyyymmdd = [](std::int64_t z) {
      z += 719468;
      const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
      const std::int64_t doe = z - era * 146097;
      const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
      const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
      const std::int64_t mp = (5 * doy + 2) / 153;
      const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
      const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
      const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
      return y * 10000 + m * 100 + d;
    };
    const std::int64_t cutoff = yyyymmdd(keep_from);
    try {
      const std::string list = "SELECT DISTINCT partition FROM system.parts WHERE database = '" +
                               options.database + "' AND table = '" + options.table +
                               "' AND active FORMAT TabSeparated";
      const detail::HttpAnswer a = poster->post("/?query=" + detail::urlEncode(list), "");
      if (a.status != 200) {
        rejected("retention (list partitions)", a);
        return;
      }
      std::size_t pos = 0;
      while (pos < a.body.size()) {
        std::size_t end = a.body.find('\n', pos);
        if (end == std::string::npos) end = a.body.size();
        const std::string partition = a.body.substr(pos, end - pos);
        pos = end + 1;
        if (partition.empty() || partition.find_first_not_of("0123456789") != std::string::npos ||
            std::stoll(partition) >= cutoff) {
          continue;
        }
        const detail::HttpAnswer d = poster->post(
            "/?query=" + detail::urlEncode("ALTER TABLE " + options.database + "." + options.table +
                                           " DROP PARTITION " + partition),
            "");
        if (d.status != 200) {
          rejected("retention (drop partition)", d);
        } else {
          logger("export")->info("ClickHouse retention: dropped partition {}", partition);
        }
      }
    } catch (const detail::HttpFailure& e) {
      ++errors;
      logError(std::string("ClickHouse retention: ") + e.what());
    }
  }

  /// The first error of a log interval is logged; the rest are counted (errors).
  void logError(const std::string& message) {
    if (errors_logged_in_interval++ == 0) logger("export")->warn("{}", message);
  }

  void reportDrops() {
    errors_logged_in_interval = 0;
    const std::uint64_t dropped = dropped_spool_full + queue.stats().records_dropped_full;
    if (dropped != dropped_reported) {
      logger("export")->warn("ClickHouse: {} records dropped so far (spool or queue full)",
                             dropped);
      dropped_reported = dropped;
    }
  }

  void publishDepth() { spool_depth.store(spool_rows + pending_rows, std::memory_order_relaxed); }

  ExportStats stats() const {
    ExportStats s;
    const auto get = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    s.sink = "clickhouse";
    s.records = get(records);
    s.bytes = get(bytes);
    s.errors = get(errors);
    s.retried = get(retried);
    s.spooled = get(spooled);
    s.spool_depth = get(spool_depth);
    const pipeline::BatchQueueStats q = queue.stats();
    s.queue_depth = q.depth;
    s.dropped_queue_full = q.records_dropped_full;
    s.dropped_spool_full = get(dropped_spool_full);
    s.dropped_stopped = get(dropped_stopped) + q.records_dropped_closed;
    return s;
  }

  void stop() {
    std::lock_guard<std::mutex> lock(stop_mu);
    queue.close();
    if (thread.joinable()) thread.join();
  }

  ClickHouseOptions options;
  pipeline::BatchQueue queue;
  std::unique_ptr<detail::HttpPoster> poster;
  std::string insert_target;
  std::thread thread;
  std::mutex stop_mu;

  // Sender thread only.
  std::deque<Chunk> spool;
  std::uint64_t spool_rows = 0;
  Chunk pending;
  std::uint64_t pending_rows = 0;
  std::int64_t pending_day = 0;
  Clock::time_point pending_since;
  std::uint64_t next_id = 0;
  bool table_ready = false;
  bool trim_pending = false;
  Clock::time_point next_attempt, next_retention, next_log;
  std::chrono::milliseconds backoff = options.backoff_min;
  std::unordered_map<std::uint32_t, std::string> interfaces;
  std::uint64_t errors_logged_in_interval = 0, dropped_reported = 0;

  // Read by stats() from any thread.
  std::atomic<std::uint64_t> records{0}, bytes{0}, errors{0}, retried{0}, spooled{0},
      spool_depth{0}, dropped_spool_full{0}, dropped_stopped{0};
};

ClickHouseSink::ClickHouseSink(ClickHouseOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

ClickHouseSink::~ClickHouseSink() { stop(); }

bool ClickHouseSink::consume(pipeline::BatchPtr batch, Deadline room_until) noexcept {
  // A checkpoint's sums are superseded by the window's final record: nothing to send.
  if (!batch || batch->empty() || batch->front().state == pipeline::RecordState::kProvisional) {
    return true;
  }
  return impl_->queue.push(std::move(batch), room_until);
}

void ClickHouseSink::flush() { impl_->queue.flush(); }

void ClickHouseSink::stop() { impl_->stop(); }

ExportStats ClickHouseSink::stats() const { return impl_->stats(); }

}  // namespace ayaflow::exporter
