// SPDX-License-Identifier: MIT OR Apache-2.0
// The address and port summary (packets_keys, docs/storage.md), both sides, in one run:
//   1. write cost: the writer's statements (a prepared 12-column INSERT, transactions of 1000
//      rows, WAL, synchronous=NORMAL, the writer's 512 KiB cache) on a fresh database, with
//      nothing else (the schema before the summary), with the summary as the writer maintains
//      it (INSERT OR IGNORE of new keys, the same bounded de-duplication and per-bucket key
//      budget), and with plain
//      indexes on the four columns instead; for a typical stream and a hostile one (every row
//      a new address and port);
//   2. query latency of HistoryReader::query (what GET /api/history runs) for present,
//      rare and absent addresses and ports on a database of --rows rows, built with
//      SQLite's own bulk insert (a recursive CTE), with the summary and without it (the same
//      file with keys_from_ms moved past the newest row: every query walks the timestamp
//      index, as before the summary).
//
//   bench_store_query [--rows N] [--write-rows M] [--dir DIR] [--keep]
// --rows defaults to 20000000 (about 1.8 GB in DIR), --write-rows to 1000000 per variant.
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "ayaflow/flow/names.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/store/history_reader.h"
#include "ayaflow/store/sqlite_sink.h"

namespace {

using ayaflow::flow::HistoryQuery;
using ayaflow::flow::IpAddress;
using Clock = std::chrono::steady_clock;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double cpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void check(int rc, sqlite3* db, const char* what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    throw std::runtime_error(std::string(what) + ": " + sqlite3_errmsg(db));
  }
}

void exec(sqlite3* db, const std::string& sql) {
  check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, sql.c_str());
}

void removeDb(const std::string& path) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
}

std::uint64_t fileBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

// ---- 1. write cost ------------------------------------------------------------------

struct Row {
  std::int64_t ts;
  IpAddress src, dst;
  std::uint16_t src_port, dst_port;
  std::uint8_t protocol;
};

/// `n` rows at `rate` rows/s. Typical: connections of 20 packets between 20 000 local hosts
/// and 50 remote ones, ephemeral source ports, web-ish destination ports. Hostile: every row
/// a new random address and port pair.
std::vector<Row> makeRows(std::size_t n, bool hostile, double rate) {
  std::mt19937_64 rng(hostile ? 7 : 42);
  static constexpr std::uint16_t kPorts[] = {443, 443, 443, 80, 53, 8080, 22, 5432};
  std::vector<Row> out(n);
  std::uint64_t conn = 0;
  for (std::size_t i = 0; i < n; ++i) {
    Row& r = out[i];
    r.ts = 1700000000000 + static_cast<std::int64_t>(static_cast<double>(i) * 1000.0 / rate);
    if (i % 20 == 0) conn = rng();
    const std::uint64_t c = hostile ? rng() : conn;
    r.src = IpAddress::fromV4(hostile ? static_cast<std::uint32_t>(c)
                                      : 0x0a000000u | static_cast<std::uint32_t>(c % 20000));
    r.dst = IpAddress::fromV4(0xc0a80001u + static_cast<std::uint32_t>((c >> 20) % 50));
    r.src_port = static_cast<std::uint16_t>(hostile ? (c >> 32) : 32768 + (c >> 32) % 28000);
    r.dst_port = hostile ? static_cast<std::uint16_t>(c >> 48) : kPorts[(c >> 40) % 8];
    r.protocol = r.dst_port == 53 ? 17 : 6;
  }
  return out;
}

enum class Variant { kRowsOnly, kSummary, kIndexes };

struct WriteResult {
  double rows_per_s;
  double cpu_us_per_row;
  double mb;
};

/// The writer's work for `rows` as SqliteSink does it, in one variant.
WriteResult writeRows(const std::string& path, const std::vector<Row>& rows, Variant v) {
  removeDb(path);
  // The real schema (the sink creates and migrates it), then the variant's extras.
  {
    ayaflow::store::StoreOptions o;
    o.db_path = path;
    ayaflow::store::SqliteSink sink(o);
  }
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  exec(db, "PRAGMA journal_mode=WAL");
  exec(db, "PRAGMA synchronous=NORMAL");
  exec(db, "PRAGMA cache_size=-512");
  if (v == Variant::kIndexes) {
    exec(db, "CREATE INDEX i1 ON packets(src_ip)");
    exec(db, "CREATE INDEX i2 ON packets(dst_ip)");
    exec(db, "CREATE INDEX i3 ON packets(src_port)");
    exec(db, "CREATE INDEX i4 ON packets(dst_port)");
  }
  sqlite3_stmt* insert = nullptr;
  check(sqlite3_prepare_v2(
            db,
            "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, "
            "length, packet_count, direction, src_hostname, dst_hostname, domain) VALUES (?1, "
            "?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            -1, &insert, nullptr),
        db, "prepare");
  sqlite3_stmt* key = nullptr;
  check(sqlite3_prepare_v2(
            db, "INSERT OR IGNORE INTO packets_keys (epoch, k, bucket) VALUES (?1 / 6, ?2, ?1)", -1,
            &key, nullptr),
        db, "prepare");
  // SqliteSink's de-duplication: (bucket, key) pairs added recently, at most 16 384.
  struct Seen {
    std::int64_t bucket;
    std::array<std::uint8_t, 16> v;
    bool port;
    bool operator==(const Seen& o) const {
      return bucket == o.bucket && v == o.v && port == o.port;
    }
  };
  struct SeenHash {
    std::size_t operator()(const Seen& s) const {
      std::uint64_t h = 1469598103934665603ull ^ static_cast<std::uint64_t>(s.bucket);
      for (auto b : s.v) h = (h ^ b) * 1099511628211ull;
      return h ^ (s.port ? 0x9e3779b97f4a7c15ull : 0);
    }
  };
  std::unordered_set<Seen, SeenHash> seen;
  seen.reserve(16384);
  // ... and its key budget per bucket (StoreOptions::keys_per_bucket's default).
  std::unordered_map<std::int64_t, std::size_t> per_bucket;
  const auto addKey = [&](const Seen& s, const char* text) {
    const auto it = per_bucket.find(s.bucket);
    if (it != per_bucket.end() && it->second >= 32768) return;
    if (seen.size() >= 16384 && seen.count(s) == 0) seen.clear();
    if (!seen.insert(s).second) return;
    sqlite3_bind_int64(key, 1, s.bucket);
    if (text != nullptr) {
      sqlite3_bind_text(key, 2, text, -1, SQLITE_STATIC);
    } else {
      sqlite3_bind_int(key, 2, (s.v[0] << 8) | s.v[1]);
    }
    check(sqlite3_step(key), db, "key");
    sqlite3_reset(key);
    if (sqlite3_changes(db) == 0) return;
    if (per_bucket.size() >= 1024 && per_bucket.count(s.bucket) == 0) per_bucket.clear();
    if (++per_bucket[s.bucket] < 32768) return;
    sqlite3_bind_int64(key, 1, s.bucket);
    sqlite3_bind_zeroblob(key, 2, 0);
    check(sqlite3_step(key), db, "key");
    sqlite3_reset(key);
  };
  const double cpu0 = cpuSeconds();
  const auto t0 = Clock::now();
  char src[ayaflow::flow::kMaxAddressText];
  char dst[ayaflow::flow::kMaxAddressText];
  for (std::size_t done = 0; done < rows.size(); done += 1000) {
    exec(db, "BEGIN");
    for (std::size_t i = done; i < std::min(rows.size(), done + 1000); ++i) {
      const Row& r = rows[i];
      sqlite3_bind_int64(insert, 1, r.ts);
      sqlite3_bind_text(insert, 2, src, static_cast<int>(ayaflow::flow::formatAddress(r.src, src)),
                        SQLITE_STATIC);
      sqlite3_bind_text(insert, 3, dst, static_cast<int>(ayaflow::flow::formatAddress(r.dst, dst)),
                        SQLITE_STATIC);
      sqlite3_bind_int(insert, 4, r.src_port);
      sqlite3_bind_int(insert, 5, r.dst_port);
      sqlite3_bind_text(insert, 6, r.protocol == 6 ? "TCP" : "UDP", 3, SQLITE_STATIC);
      sqlite3_bind_int64(insert, 7, 1500);
      sqlite3_bind_int64(insert, 8, 1);
      sqlite3_bind_text(insert, 9, "egress", 6, SQLITE_STATIC);
      for (int c = 10; c <= 12; ++c) sqlite3_bind_null(insert, c);
      check(sqlite3_step(insert), db, "insert");
      sqlite3_reset(insert);
      if (v == Variant::kSummary) {
        const std::int64_t bucket = r.ts / 10000;
        addKey(Seen{bucket, r.src.bytes, false}, src);
        addKey(Seen{bucket, r.dst.bytes, false}, dst);
        Seen p{bucket, {}, true};
        p.v[0] = static_cast<std::uint8_t>(r.src_port >> 8);
        p.v[1] = static_cast<std::uint8_t>(r.src_port);
        addKey(p, nullptr);
        p.v[0] = static_cast<std::uint8_t>(r.dst_port >> 8);
        p.v[1] = static_cast<std::uint8_t>(r.dst_port);
        addKey(p, nullptr);
      }
    }
    exec(db, "COMMIT");
  }
  const double wall = seconds(Clock::now() - t0);
  const double cpu = cpuSeconds() - cpu0;
  sqlite3_finalize(insert);
  sqlite3_finalize(key);
  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
  const double n = static_cast<double>(rows.size());
  return WriteResult{n / wall, cpu * 1e6 / n, static_cast<double>(fileBytes(path)) / 1e6};
}

// ---- 2. queries -----------------------------------------------------------------------

/// Builds `rows` rows at 1000 rows/s (a busy node in raw mode) by SQLite's bulk insert:
/// connections of 20 packets, 20 000 local hosts, 50 remote ones, ephemeral source ports,
/// web-ish destination ports; 10.99.0.1 and port 9999 in one row of 100 000. Then the
/// summary, by kRebuildKeysSql's statement.
void buildLarge(const std::string& path, std::size_t rows) {
  removeDb(path);
  {
    ayaflow::store::StoreOptions o;
    o.db_path = path;
    ayaflow::store::SqliteSink sink(o);
  }
  sqlite3* db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  exec(db, "PRAGMA journal_mode=WAL");
  exec(db, "PRAGMA synchronous=OFF");
  exec(db, "PRAGMA cache_size=-65536");
  const std::string n = std::to_string(rows);
  exec(db,
       "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, length, "
       "packet_count, direction) "
       "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < " +
           n +
           " - 1), "
           "c(i, h) AS (SELECT i, ((i / 20) * 2654435761) % 4294967296 FROM g) "
           "SELECT 1700000000000 + i, "
           "CASE WHEN i % 100000 = 77 THEN '10.99.0.1' ELSE "
           "'10.0.' || (h % 20000 / 256) || '.' || (h % 256) END, "
           "'192.168.0.' || (1 + h / 65536 % 50), "
           "CASE WHEN i % 100000 = 33 THEN 9999 ELSE 32768 + h / 7 % 28000 END, "
           "CASE h / 131072 % 8 WHEN 3 THEN 80 WHEN 4 THEN 53 WHEN 5 THEN 8080 WHEN 6 THEN 22 "
           "WHEN 7 THEN 5432 ELSE 443 END, "
           "CASE WHEN h / 131072 % 8 = 4 THEN 'UDP' ELSE 'TCP' END, 40 + i % 1461, 1, "
           "CASE WHEN i % 2 = 0 THEN 'egress' ELSE 'ingress' END FROM c");
  exec(db,
       "INSERT OR IGNORE INTO packets_keys (epoch, k, bucket) "
       "SELECT timestamp / 60000, src_ip, timestamp / 10000 FROM packets UNION ALL "
       "SELECT timestamp / 60000, dst_ip, timestamp / 10000 FROM packets UNION ALL "
       "SELECT timestamp / 60000, src_port, timestamp / 10000 FROM packets UNION ALL "
       "SELECT timestamp / 60000, dst_port, timestamp / 10000 FROM packets");
  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct QueryCase {
  const char* name;
  HistoryQuery q;
};

}  // namespace

int main(int argc, char** argv) {
  std::size_t rows = 20000000;
  std::size_t write_rows = 1000000;
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rows" && i + 1 < argc) {
      rows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--write-rows" && i + 1 < argc) {
      write_rows = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a == "--keep") {
      keep = true;
    } else {
      std::fprintf(stderr, "usage: %s [--rows N] [--write-rows M] [--dir DIR] [--keep]\n", argv[0]);
      return 2;
    }
  }
  if (rows < 200000) rows = 200000;
  if (write_rows < 1000) write_rows = 1000;
  ayaflow::configureLogging(/*quiet=*/true, /*verbose=*/false);
  std::printf(
      "ayaflow store query benchmark: %zu rows, %zu rows per write variant, in %s "
      "(SQLite %s, %u CPUs)\n\n",
      rows, write_rows, dir.c_str(), sqlite3_libversion(), std::thread::hardware_concurrency());

  // 1. Write cost.
  const std::string wpath = dir + "/bench_store_query_w.db";
  std::printf("| writer, %zu rows | rows/s | CPU per row | file |\n|---|---|---|---|\n",
              write_rows);
  for (const bool hostile : {false, true}) {
    const auto stream = makeRows(write_rows, hostile, hostile ? 20000.0 : 5000.0);
    const char* label = hostile ? "hostile (every row new)" : "typical";
    for (const auto& [v, name] : {std::pair{Variant::kRowsOnly, "rows only (before)"},
                                  std::pair{Variant::kSummary, "rows + packets_keys"},
                                  std::pair{Variant::kIndexes, "rows + 4 column indexes"}}) {
      const WriteResult r = writeRows(wpath, stream, v);
      std::printf("| %s, %s | %.0f | %.2f us | %.1f MB |\n", label, name, r.rows_per_s,
                  r.cpu_us_per_row, r.mb);
      std::fflush(stdout);
    }
  }
  removeDb(wpath);

  // 2. Queries.
  const std::string path = dir + "/bench_store_query.db";
  const auto t0 = Clock::now();
  buildLarge(path, rows);
  std::printf("\nbuilt %zu rows + summary in %.0f s: %.0f MB\n", rows, seconds(Clock::now() - t0),
              static_cast<double>(fileBytes(path)) / 1e6);
  {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM packets_keys", -1, &s, nullptr);
    sqlite3_step(s);
    std::printf("packets_keys: %lld entries\n\n",
                static_cast<long long>(sqlite3_column_int64(s, 0)));
    sqlite3_finalize(s);
    sqlite3_close(db);
  }
  ayaflow::store::StoreOptions o;
  o.db_path = path;
  o.query_timeout = std::chrono::seconds(120);
  ayaflow::store::SqliteSink sink(o);
  ayaflow::store::HistoryReader reader(sink);
  const std::int64_t newest = 1700000000000 + static_cast<std::int64_t>(rows) - 1;
  std::vector<QueryCase> cases;
  const auto add = [&](const char* name, auto&& fill) {
    QueryCase c{name, {}};
    c.q.limit = 1000;
    fill(c.q);
    cases.push_back(c);
  };
  add("ip=<absent>", [](HistoryQuery& q) { q.ip = IpAddress::parse("172.16.9.9"); });
  add("ip=<rare: 1 row in 100 000>", [](HistoryQuery& q) {
    q.ip = IpAddress::parse("10.99.0.1");
    q.limit = 100;
  });
  add("ip=<a local host, ~1 row in 20 000>", [](HistoryQuery& q) {
    q.ip = IpAddress::parse("10.0.1.1");
    q.limit = 100;
  });
  add("ip=<a remote host, 1 row in 50>",
      [](HistoryQuery& q) { q.ip = IpAddress::parse("192.168.0.7"); });
  add("port=<absent>", [](HistoryQuery& q) { q.port = 1; });
  add("port=<rare: 1 row in 100 000>", [](HistoryQuery& q) {
    q.port = 9999;
    q.limit = 100;
  });
  add("port=443", [](HistoryQuery& q) { q.port = 443; });
  add("ip=<absent>&since=<last hour>", [&](HistoryQuery& q) {
    q.ip = IpAddress::parse("172.16.9.9");
    q.since_ms = newest - 3600000;
  });
  add("ip=<remote>&port=53", [](HistoryQuery& q) {
    q.ip = IpAddress::parse("192.168.0.7");
    q.port = 53;
  });
  add("no filter", [](HistoryQuery&) {});

  const auto setKeysFrom = [&](std::int64_t v) {
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_busy_timeout(db, 5000);
    exec(db,
         "UPDATE ayaflow_meta SET value = " + std::to_string(v) + " WHERE key = 'keys_from_ms'");
    sqlite3_close(db);
  };
  std::printf(
      "| query (limit 1000 unless noted) | rows | with packets_keys | without (timestamp walk) |\n"
      "|---|---|---|---|\n");
  for (const auto& c : cases) {
    std::vector<double> with, without;
    std::size_t n = 0;
    setKeysFrom(INT64_MIN);
    for (int i = 0; i < 5; ++i) {
      const auto s = Clock::now();
      n = reader.query(c.q).size();
      with.push_back(seconds(Clock::now() - s) * 1e3);
    }
    setKeysFrom(INT64_MAX);
    const int slow_runs = (c.q.ip || c.q.port) ? 1 : 5;
    std::size_t n2 = 0;
    for (int i = 0; i < slow_runs; ++i) {
      const auto s = Clock::now();
      n2 = reader.query(c.q).size();
      without.push_back(seconds(Clock::now() - s) * 1e3);
    }
    std::printf("| `%s` | %zu%s | %.2f ms | %.0f ms |\n", c.name, n, n == n2 ? "" : " (MISMATCH)",
                median(with), median(without));
    std::fflush(stdout);
  }
  setKeysFrom(INT64_MIN);
  reader.closeIdle();
  sink.stop();
  if (!keep) removeDb(path);
  return 0;
}
