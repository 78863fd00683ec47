// SPDX-License-Identifier: MIT OR Apache-2.0
// Storage benchmark (plain main, prints a table; run a Release build):
//   1. capture-side cost of Pipeline::onPacket() per packet, with the pipeline draining
//   2. sustained raw rows/s into SQLite, measured while building a database of --rows rows
//   3. history query latency (HistoryReader::query, what GET /api/history runs) on it
//   4. start-up cost on it (the quick_check), and one retention DELETE chunk
//   5. database size per million raw rows and per million aggregated rows
//
//   bench_store [--rows N] [--dir DIR] [--keep] [--names]
// --rows defaults to 10000000; DIR (default $TMPDIR or /tmp) needs about 1 GB per 10M rows.
// --names: the rows of 2.-5. carry Kubernetes names as a node's pod name table gives them
// (each IPv4 host of 10/8 a pod, 192.168/16 the node itself), so their cost shows.
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <memory>

#include "ayaflow/common/logging.h"
#include "ayaflow/enrich/enricher.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/store/history_reader.h"
#include "ayaflow/store/sqlite_sink.h"
#include "bench_packets.h"

namespace {

using ayaflow::flow::Direction;
using ayaflow::flow::HistoryQuery;
using ayaflow::flow::IpAddress;
using ayaflow::flow::Packet;
using Clock = std::chrono::steady_clock;

/// The SQLite history as the agent wires it: pipeline -> SqliteSink, and a reader.
struct Options {
  std::string db_path;
  std::uint32_t aggregation_window_s = 0;
  std::size_t queue_capacity = 65536;
  std::size_t batch_rows = 1000;
  std::size_t max_open_flows = 65536;
  std::chrono::milliseconds query_timeout{5000};
  const ayaflow::enrich::Enricher* enricher = nullptr;
};

class History {
 public:
  explicit History(const Options& o) {
    ayaflow::store::StoreOptions so;
    so.db_path = o.db_path;
    so.batch_rows = o.batch_rows;
    so.query_timeout = o.query_timeout;
    so.queue_rows = o.aggregation_window_s > 0 ? o.max_open_flows : 16384;
    ayaflow::pipeline::PipelineOptions po;
    po.aggregation_window_s = o.aggregation_window_s;
    po.queue_capacity = o.queue_capacity;
    po.batch_records = o.batch_rows;
    po.max_open_flows = o.max_open_flows;
    sink_ = std::make_unique<ayaflow::store::SqliteSink>(so);
    reader_ = std::make_unique<ayaflow::store::HistoryReader>(*sink_);
    pipeline_ = std::make_unique<ayaflow::pipeline::Pipeline>(
        po, o.enricher, std::vector<ayaflow::pipeline::RecordSink*>{sink_.get()});
  }
  ~History() { stop(); }
  void submit(const Packet& p) noexcept { pipeline_->onPacket(p); }
  void flush() { pipeline_->flush(); }
  void stop() {
    pipeline_->stop();
    reader_->closeIdle();
    sink_->stop();
  }
  std::vector<ayaflow::flow::HistoryRow> query(const HistoryQuery& q) const {
    return reader_->query(q);
  }
  /// Packets and rows not written yet, in both queues.
  std::size_t backlog() const {
    return pipeline_->stats().queue_depth + sink_->stats().queue.depth;
  }
  ayaflow::pipeline::PipelineStats pipelineStats() const { return pipeline_->stats(); }
  ayaflow::store::SqliteSinkStats sinkStats() const { return sink_->stats(); }

 private:
  std::unique_ptr<ayaflow::store::SqliteSink> sink_;
  std::unique_ptr<ayaflow::store::HistoryReader> reader_;
  std::unique_ptr<ayaflow::pipeline::Pipeline> pipeline_;
};

/// Holds the pipeline thread in enrich() until released (the drop path's benchmark).
class Parking final : public ayaflow::enrich::Enricher {
 public:
  void enrich(const ayaflow::flow::FlowKey&, std::int64_t,
              ayaflow::enrich::ConnectionNames&) const override {
    parked = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  mutable std::atomic<bool> parked{false};
  std::atomic<bool> release{false};
};

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double cpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::uint64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

std::int64_t realtimeMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::uint64_t fileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

void removeDb(const std::string& path) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
}

/// Feeds `total` packets into `store` as fast as it takes them: submits while the queues
/// have room, yields otherwise (so nothing is dropped). Timestamps are "now".
void feed(History& store, const std::vector<Packet>& packets, std::size_t total) {
  constexpr std::size_t kBacklog = 16384;  // the SQLite queue's default
  std::size_t i = 0;
  while (i < total) {
    const std::size_t depth = store.backlog();
    std::size_t room = kBacklog > depth ? kBacklog - depth : 0;
    if (room < 4096) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      continue;
    }
    room = std::min(room - 1024, total - i);
    const std::uint64_t now = monotonicNs();
    for (std::size_t k = 0; k < room; ++k, ++i) {
      Packet p = packets[i % packets.size()];
      p.timestamp_ns = now;
      store.submit(p);
    }
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct QueryCase {
  const char* name;
  HistoryQuery q;
  int runs;
};

/// Names every end as the pod name table would: 10/8 hosts are one of 500 pods (20
/// namespaces, 125 workloads; shared immutable names, as the table hands them out),
/// 192.168/16 is the node itself, IPv6 is unknown.
class PodNames final : public ayaflow::enrich::Enricher {
 public:
  PodNames() {
    for (int i = 0; i < 500; ++i) {
      pods_.push_back(std::make_shared<const ayaflow::enrich::PodName>(ayaflow::enrich::PodName{
          "team-" + std::to_string(i % 20),
          "checkout-" + std::to_string(i / 4) + "-7d9f8c6b5-x2" + std::to_string(i),
          "checkout-" + std::to_string(i / 4), "Deployment"}));
    }
  }
  void enrich(const ayaflow::flow::FlowKey& key, std::int64_t,
              ayaflow::enrich::ConnectionNames& names) const override {
    nameEnd(key.local, names.local);
    nameEnd(key.remote, names.remote);
  }

 private:
  void nameEnd(const IpAddress& a, ayaflow::enrich::EndpointNames& e) const {
    if (!a.isV4Mapped()) return;
    const std::uint32_t v = (std::uint32_t{a.bytes[12]} << 24) |
                            (std::uint32_t{a.bytes[13]} << 16) | (std::uint32_t{a.bytes[14]} << 8) |
                            a.bytes[15];
    if ((v >> 24) == 10) e.pod = pods_[v % pods_.size()];
    if ((v >> 16) == 0xc0a8) e.node = node_;
  }

  std::vector<std::shared_ptr<const ayaflow::enrich::PodName>> pods_;
  std::shared_ptr<const std::string> node_ = std::make_shared<const std::string>("node-a");
};

}  // namespace

int main(int argc, char** argv) {
  std::size_t rows = 10000000;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  bool keep = false;
  bool names = false;
  const PodNames pod_names;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) {
      rows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--keep") {
      keep = true;
    } else if (a == "--names") {
      names = true;
    } else {
      std::fprintf(stderr, "usage: %s [--rows N] [--dir DIR] [--keep] [--names]\n", argv[0]);
      return 2;
    }
  }
  ayaflow::configureLogging(/*quiet=*/true, /*verbose=*/false);
  const std::string path = dir + "/bench_store.db";
  removeDb(path);
  const std::vector<Packet> packets = ayaflow::bench::storePackets(1 << 20, 2);
  std::printf("ayaflow store benchmark: %zu rows in %s (SQLite %s, %u CPUs)%s\n\n", rows,
              path.c_str(), sqlite3_libversion(), std::thread::hardware_concurrency(),
              names ? ", rows with Kubernetes names" : "");
  const ayaflow::enrich::Enricher* enricher = names ? &pod_names : nullptr;

  // 1. Capture-side cost: rounds of 32 768 submits into a queue the writer is draining.
  {
    Options o;
    o.db_path = path;
    History store(o);
    std::vector<double> ns;
    for (int round = 0; round < 60; ++round) {
      const auto t0 = Clock::now();
      for (std::size_t i = 0; i < 32768; ++i) store.submit(packets[i + 32768 * (round % 16)]);
      ns.push_back(seconds(Clock::now() - t0) * 1e9 / 32768);
      while (store.backlog() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // The drop path: a queue of one packet, held full while the pipeline is parked in the
    // enrichment hook.
    Parking parking;
    Options tiny;
    tiny.db_path = dir + "/bench_store_tiny.db";
    tiny.queue_capacity = 1;
    tiny.batch_rows = 1;
    tiny.enricher = &parking;
    std::vector<double> drop_ns;
    {
      History t(tiny);
      t.submit(packets[0]);
      while (!parking.parked) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      t.submit(packets[1]);  // fills the queue
      for (int round = 0; round < 20; ++round) {
        const auto t0 = Clock::now();
        for (std::size_t i = 0; i < 100000; ++i) t.submit(packets[i]);
        drop_ns.push_back(seconds(Clock::now() - t0) * 1e9 / 100000);
      }
      parking.release = true;
    }
    removeDb(tiny.db_path);
    const auto s = store.pipelineStats();
    std::printf("| capture side | value |\n|---|---|\n");
    std::printf("| onPacket() per packet, pipeline draining (median of 60 x 32768) | %.1f ns |\n",
                median(ns));
    std::printf("| onPacket() per packet, queue full (drop + count) | %.1f ns |\n",
                median(drop_ns));
    std::printf("| packets dropped during the timing (queue 65536) | %llu |\n\n",
                static_cast<unsigned long long>(s.packets_dropped_queue_full));
    store.stop();
    removeDb(path);
  }

  // 2. Sustained raw rows/s while building the database.
  const std::int64_t build_start_ms = realtimeMs();
  {
    Options o;
    o.db_path = path;
    o.enricher = enricher;
    History store(o);
    // A reader asking for the newest 1000 rows every 20 ms while the writer works: WAL
    // readers never wait for a write batch.
    std::atomic<bool> done{false};
    std::vector<double> read_ms;
    std::thread reader([&] {
      HistoryQuery q;
      q.limit = 1000;
      while (!done) {
        const auto r0 = Clock::now();
        (void)store.query(q);
        read_ms.push_back(seconds(Clock::now() - r0) * 1e3);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    const double cpu0 = cpuSeconds();
    const auto t0 = Clock::now();
    const std::size_t first = std::min<std::size_t>(rows, 1000000);
    feed(store, packets, first);
    store.flush();
    const double t_first = seconds(Clock::now() - t0);
    const double cpu_first = cpuSeconds() - cpu0;
    feed(store, packets, rows - first);
    store.flush();
    const double t_all = seconds(Clock::now() - t0);
    const double cpu_all = cpuSeconds() - cpu0;
    done = true;
    reader.join();
    std::sort(read_ms.begin(), read_ms.end());
    const auto ps = store.pipelineStats();
    const auto s = store.sinkStats();
    store.stop();
    std::printf("| raw writes (batches of 1000, WAL, synchronous=NORMAL) | value |\n|---|---|\n");
    std::printf("| first %zu rows | %.0f rows/s, %.2f us CPU/row (both threads) |\n", first,
                static_cast<double>(first) / t_first, cpu_first * 1e6 / static_cast<double>(first));
    std::printf("| all %zu rows | %.0f rows/s, %.2f us CPU/row, %.1f s |\n", rows,
                static_cast<double>(rows) / t_all, cpu_all * 1e6 / static_cast<double>(rows),
                t_all);
    std::printf(
        "| stored / dropped | %llu / %llu |\n", static_cast<unsigned long long>(s.rows_stored),
        static_cast<unsigned long long>(ps.packets_dropped_queue_full +
                                        s.queue.records_dropped_full + s.rows_dropped_write_error));
    if (!read_ms.empty()) {
      std::printf(
          "| limit=1000 query during the writes (%zu queries) | median %.2f ms, p99 %.2f ms "
          "|\n",
          read_ms.size(), read_ms[read_ms.size() / 2], read_ms[read_ms.size() * 99 / 100]);
    }
    const std::uint64_t bytes = fileBytes(path);
    std::printf("| database file | %.1f MB, %.1f MB per million raw rows |\n\n", bytes / 1e6,
                bytes / 1e6 / (static_cast<double>(rows) / 1e6));
  }

  // 3 + 4. Queries and start-up on the full database.
  {
    Options o;
    o.db_path = path;
    o.query_timeout = std::chrono::seconds(120);
    const auto t0 = Clock::now();
    History store(o);
    const double open_s = seconds(Clock::now() - t0);

    // The newest rows span the last seconds of the build; look up a host seen in them.
    HistoryQuery newest;
    newest.limit = 1;
    const auto last = store.query(newest);
    const std::int64_t last_ms = last.empty() ? realtimeMs() : last[0].timestamp_ms;
    const std::string common_ip = last.empty() ? "10.0.0.1" : last[0].src_ip;

    std::vector<QueryCase> cases;
    auto add = [&](const char* name, int runs, auto&& edit) {
      QueryCase c{name, HistoryQuery{}, runs};
      edit(c.q);
      cases.push_back(c);
    };
    add("limit=100 (default)", 50, [](HistoryQuery& q) { q.limit = 100; });
    add("limit=1000", 50, [](HistoryQuery& q) { q.limit = 1000; });
    add("limit=1000&since=<last 10 s of data>", 50, [&](HistoryQuery& q) {
      q.limit = 1000;
      q.since_ms = last_ms - 10000;
    });
    add("limit=1000&until=<middle of the data>", 20, [&](HistoryQuery& q) {
      q.limit = 1000;
      q.until_ms = build_start_ms + (last_ms - build_start_ms) / 2;
    });
    add("limit=1000&port=443 (3 in 8 rows)", 20, [](HistoryQuery& q) {
      q.limit = 1000;
      q.port = 443;
    });
    add("limit=1000&protocol=udp (1 in 8 rows)", 20, [](HistoryQuery& q) {
      q.limit = 1000;
      q.protocol = 17;
    });
    add("limit=100&ip=<a host, ~1 in 20000 rows>", 5, [&](HistoryQuery& q) {
      q.limit = 100;
      q.ip = IpAddress::parse(common_ip);
    });
    add("limit=1000&ip=<absent> (scans every row)", 3, [](HistoryQuery& q) {
      q.limit = 1000;
      q.ip = IpAddress::parse("203.0.113.9");
    });
    add("limit=1000&ip=<absent>&since=<last 1 s of data>", 5, [&](HistoryQuery& q) {
      q.limit = 1000;
      q.ip = IpAddress::parse("203.0.113.9");
      q.since_ms = last_ms - 1000;
    });
    if (names) {
      // Checked on the rows visited, like protocol: no index or summary behind them.
      add("limit=1000&namespace=team-3 (~1 in 23 rows)", 20, [](HistoryQuery& q) {
        q.limit = 1000;
        q.ns = "team-3";
      });
      add("limit=1000&pod=<absent> (scans every row)", 3, [](HistoryQuery& q) {
        q.limit = 1000;
        q.pod = "no-such-pod";
      });
      add("limit=1000&pod=<absent>&since=<last 1 s of data>", 5, [&](HistoryQuery& q) {
        q.limit = 1000;
        q.pod = "no-such-pod";
        q.since_ms = last_ms - 1000;
      });
    }
    std::printf(
        "| history query on %zu rows (HistoryReader::query, median) | rows | latency |\n"
        "|---|---|---|\n",
        rows);
    for (const QueryCase& c : cases) {
      std::vector<double> ms;
      std::size_t n = 0;
      for (int i = 0; i < c.runs; ++i) {
        const auto q0 = Clock::now();
        n = store.query(c.q).size();
        ms.push_back(seconds(Clock::now() - q0) * 1e3);
      }
      std::printf("| %s | %zu | %.2f ms |\n", c.name, n, median(ms));
    }
    std::printf("\n| start-up and retention on %zu rows | value |\n|---|---|\n", rows);
    std::printf(
        "| SqliteSink construction (checks incl. PRAGMA quick_check, migration) | %.2f s |\n",
        open_s);
    store.stop();

    // One retention chunk, as the writer runs it (5000 oldest rows).
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_exec(db, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
    sqlite3_stmt* del = nullptr;
    sqlite3_prepare_v2(db,
                       "DELETE FROM packets WHERE id IN (SELECT id FROM packets WHERE timestamp "
                       "< ?1 ORDER BY timestamp LIMIT 5000)",
                       -1, &del, nullptr);
    std::vector<double> chunk_ms;
    for (int i = 0; i < 20; ++i) {
      sqlite3_bind_int64(del, 1, last_ms);
      const auto d0 = Clock::now();
      sqlite3_step(del);
      sqlite3_reset(del);
      chunk_ms.push_back(seconds(Clock::now() - d0) * 1e3);
    }
    sqlite3_finalize(del);
    sqlite3_close(db);
    std::printf("| one retention chunk (DELETE of 5000 oldest rows, median of 20) | %.1f ms |\n\n",
                median(chunk_ms));
  }
  if (!keep) removeDb(path);

  // 5. Aggregated rows: 1M flows x 4 packets in one window, written at stop.
  {
    const std::string agg_path = dir + "/bench_store_agg.db";
    removeDb(agg_path);
    Options o;
    o.db_path = agg_path;
    o.enricher = enricher;
    o.aggregation_window_s = 3600;
    o.max_open_flows = 2000000;
    constexpr std::size_t kFlows = 1000000;
    const auto t0 = Clock::now();
    {
      History store(o);
      std::size_t i = 0;
      const std::uint64_t now = monotonicNs();
      while (i < 4 * kFlows) {
        if (store.pipelineStats().queue_depth > o.queue_capacity / 2) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          continue;
        }
        for (int k = 0; k < 8192 && i < 4 * kFlows; ++k, ++i) {
          Packet p = packets[0];
          const std::uint32_t flow = static_cast<std::uint32_t>(i % kFlows);
          p.src = IpAddress::fromV4(0x0a000000u | (flow >> 4));
          p.src_port = static_cast<std::uint16_t>(40000 + (flow & 15));
          p.length = static_cast<std::uint32_t>(40 + i % 1461);
          p.timestamp_ns = now;
          store.submit(p);
        }
      }
      store.stop();
      const auto s = store.sinkStats();
      const double t = seconds(Clock::now() - t0);
      const std::uint64_t bytes = fileBytes(agg_path);
      std::printf("| aggregated mode (1M flows x 4 packets, one window) | value |\n|---|---|\n");
      std::printf("| rows / packets stored | %llu / %llu |\n",
                  static_cast<unsigned long long>(s.rows_stored),
                  static_cast<unsigned long long>(s.packets_stored));
      std::printf("| packets/s aggregated and written | %.0f |\n", 4.0 * kFlows / t);
      std::printf("| database file | %.1f MB per million aggregated rows |\n",
                  bytes / 1e6 / (static_cast<double>(s.rows_stored) / 1e6));
    }
    removeDb(agg_path);
  }
  return 0;
}
