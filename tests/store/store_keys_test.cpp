// SPDX-License-Identifier: MIT OR Apache-2.0
// The address and port summary (packets_keys) behind /api/history's ip and port filters,
// the query time budget and runtime storage errors (unit tier: real SQLite files in $TMPDIR).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <spdlog/sinks/ostream_sink.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "sqlite_util.h"
#include "store_harness.h"
#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using flow::Direction;
using flow::HistoryQuery;
using test::Harness;
using test::HarnessOptions;
using test::makePacket;
using test::RawDb;
using test::TempDir;

constexpr auto kNever = std::chrono::hours(24);
constexpr std::int64_t kBase = 1700000000000;  // a minute boundary: 1700000000000 % 60000 == 0
static_assert(kBase % detail::kKeyBucketMs == 0);

HarnessOptions optionsFor(const std::string& path) {
  HarnessOptions o;
  o.db_path = path;
  o.batch_interval = kNever;
  o.retention_interval = kNever;
  return o;
}

std::string addressOf(int host) {
  return "10.0." + std::to_string(host / 256) + "." + std::to_string(host % 256);
}

/// Random packets over `minutes` minutes from kBase, through the real pipeline and writer:
/// sources from a pool of 40 hosts (a few rare), destinations 192.168.0.1 or a source,
/// ports from a pool with some rare ones.
void fillRandom(Harness& store, int packets, int minutes, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> host(0, 39);
  std::uniform_int_distribution<int> when(0, minutes * 60000 - 1);
  const std::uint16_t ports[] = {443, 80, 53, 8080, 30000, 30001, 5353, 22};
  for (int i = 0; i < packets; ++i) {
    int h = host(rng);
    if (h >= 36 && rng() % 8 != 0) h = 0;  // hosts 36..39 are rare
    flow::Packet p =
        makePacket(static_cast<std::uint32_t>(h), ports[rng() % 8], ports[rng() % 4],
                   rng() % 2 ? 6 : 17, rng() % 2 ? Direction::kEgress : Direction::kIngress, 100,
                   test::monotonicForUnixMs(kBase + when(rng)));
    if (rng() % 3 == 0)
      p.dst = flow::IpAddress::fromV4(0x0a000000u | static_cast<std::uint32_t>(host(rng)));
    store.submit(p);
  }
  store.flush();
}

/// The ids a full scan finds for `q` (no index, no summary).
std::vector<std::int64_t> bruteForce(RawDb& db, const HistoryQuery& q) {
  std::string sql = "SELECT id FROM packets NOT INDEXED WHERE 1";
  if (q.since_ms) sql += " AND timestamp >= " + std::to_string(*q.since_ms);
  if (q.until_ms) sql += " AND timestamp <= " + std::to_string(*q.until_ms);
  if (q.ip) {
    const std::string ip = q.ip->toString();
    sql += " AND (src_ip = '" + ip + "' OR dst_ip = '" + ip + "')";
  }
  if (q.port) {
    sql += " AND (src_port = " + std::to_string(*q.port) +
           " OR dst_port = " + std::to_string(*q.port) + ")";
  }
  if (q.protocol) sql += *q.protocol == 6 ? " AND protocol = 'TCP'" : " AND protocol = 'UDP'";
  sql += " ORDER BY timestamp DESC, id DESC LIMIT " + std::to_string(q.limit);
  std::vector<std::int64_t> out;
  for (const auto& r : db.rows(sql)) out.push_back(std::stoll(r));
  return out;
}

std::vector<std::int64_t> ids(const std::vector<flow::HistoryRow>& rows) {
  std::vector<std::int64_t> out;
  for (const auto& r : rows) out.push_back(r.id);
  return out;
}

/// Random queries with ip and/or port (and sometimes a time range, a protocol), each
/// compared with the full scan.
void compareRandomQueries(Harness& store, RawDb& db, int minutes, std::uint32_t seed) {
  std::mt19937 rng(seed);
  const std::uint16_t ports[] = {443, 80, 53, 8080, 30000, 30001, 5353, 22, 9};
  for (int i = 0; i < 300; ++i) {
    HistoryQuery q;
    q.limit = std::vector<std::size_t>{1, 7, 100, 1000}[rng() % 4];
    if (rng() % 3 != 0) q.ip = flow::IpAddress::parse(addressOf(static_cast<int>(rng() % 45)));
    if (!q.ip || rng() % 3 == 0) q.port = ports[rng() % 9];
    if (rng() % 2 == 0) q.since_ms = kBase + static_cast<std::int64_t>(rng() % (minutes * 60000));
    if (rng() % 2 == 0) {
      q.until_ms =
          q.since_ms.value_or(kBase) + static_cast<std::int64_t>(rng() % (minutes * 60000));
    }
    if (rng() % 4 == 0) q.protocol = rng() % 2 ? 6 : 17;
    const auto want = bruteForce(db, q);
    ASSERT_EQ(ids(store.query(q)), want)
        << "ip=" << (q.ip ? q.ip->toString() : "-") << " port=" << (q.port ? *q.port : 0)
        << " since=" << q.since_ms.value_or(-1) << " until=" << q.until_ms.value_or(-1)
        << " limit=" << q.limit;
  }
}

TEST(KeysSummary, TheWriterRecordsEveryRowsAddressesAndPorts) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  fillRandom(store, 20000, 30, 1);
  store.syncForTest();
  RawDb db(dir.file("traffic.db"));
  // What a rebuild from every row would hold, and nothing else (retention is off).
  db.exec(
      "CREATE TEMP TABLE want (epoch INTEGER NOT NULL, k NOT NULL, bucket INTEGER NOT NULL, "
      "PRIMARY KEY (epoch, k, bucket)) WITHOUT ROWID");
  std::string rebuild = detail::kRebuildKeysSql;
  rebuild.replace(rebuild.find("packets_keys"), 12, "temp.want");
  db.exec(rebuild);
  EXPECT_EQ(db.count("SELECT count(*) FROM (SELECT * FROM temp.want EXCEPT SELECT * FROM "
                     "packets_keys)"),
            0);
  EXPECT_EQ(db.count("SELECT count(*) FROM (SELECT * FROM packets_keys EXCEPT SELECT * FROM "
                     "temp.want)"),
            0);
  EXPECT_GT(db.count("SELECT count(*) FROM packets_keys"), 6 * 30 * 40);
}

TEST(KeysSummary, IpAndPortQueriesMatchAFullScan) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  fillRandom(store, 20000, 30, 2);
  store.syncForTest();
  RawDb db(dir.file("traffic.db"));
  compareRandomQueries(store, db, 30, 3);
}

TEST(KeysSummary, RowsOlderThanTheSummaryAreFoundByTheTimestampWalk) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  fillRandom(store, 20000, 30, 4);
  store.syncForTest();
  RawDb db(dir.file("traffic.db"));
  // As if the summary had been added in the middle of minute 12: the keys of older buckets
  // are missing (the bucket of `from` keeps its keys, like the writer's after a migration).
  const std::int64_t from = kBase + 12 * 60000 + 35000;
  db.exec("UPDATE ayaflow_meta SET value = " + std::to_string(from) +
          " WHERE key = 'keys_from_ms'");
  db.exec("DELETE FROM packets_keys WHERE bucket < " + std::to_string(detail::keyBucket(from)));
  ASSERT_GT(db.count("SELECT count(*) FROM packets_keys"), 0);
  compareRandomQueries(store, db, 30, 5);
  // Without a usable summary (keys_from_ms past every row) every query walks the index.
  db.exec("UPDATE ayaflow_meta SET value = 9223372036854775807 WHERE key = 'keys_from_ms'");
  compareRandomQueries(store, db, 30, 10);
}

TEST(KeysSummary, ABucketPastItsKeyBudgetIsMarkedSaturatedAndScannedWhole) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.keys_per_bucket = 20;  // 40 hosts and 8 ports: every bucket saturates
  Harness store(o);
  fillRandom(store, 20000, 30, 8);
  store.syncForTest();
  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.count("SELECT count(*) FROM packets_keys WHERE k = x''"), 180);  // 30 min / 10 s
  EXPECT_EQ(db.count("SELECT max(n) FROM (SELECT count(*) AS n FROM packets_keys WHERE k <> x'' "
                     "GROUP BY bucket)"),
            20);
  compareRandomQueries(store, db, 30, 9);
}

TEST(KeysSummary, AFloodOfNewAddressesAndPortsStopsAtTheDefaultBudget) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  std::mt19937 rng(11);
  const std::uint64_t ts = test::monotonicForUnixMs(kBase + 5000);  // one bucket
  for (int i = 0; i < 60000; ++i) {
    store.submit(makePacket(rng() & 0xffff, static_cast<std::uint16_t>(rng()), 80, 6,
                            Direction::kIngress, 60, ts));
  }
  store.flush();
  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.count("SELECT count(*) FROM packets"), 60000);
  EXPECT_EQ(db.count("SELECT count(*) FROM packets_keys WHERE k = x''"), 1);
  EXPECT_EQ(db.count("SELECT count(*) FROM packets_keys"), 32768 + 1);
  HistoryQuery q;
  q.port = 80;
  EXPECT_EQ(store.query(q).size(), 100u);
}

TEST(KeysSummary, PlansUseTheSummaryAndTheTimestampIndexWithoutSorting) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  std::vector<HistoryQuery> queries(3);
  queries[0].ip = flow::IpAddress::parse("10.0.0.1");
  queries[1].port = 443;
  queries[2].ip = flow::IpAddress::parse("2001:db8::1");
  queries[2].port = 53;
  queries[2].since_ms = 5;
  for (const auto& q : queries) {
    const std::string plan = store.queryPlanForTest(q);
    EXPECT_NE(plan.find("a USING PRIMARY KEY (epoch=? AND k=? AND bucket>? AND bucket<?)"),
              std::string::npos)
        << plan;
    EXPECT_NE(plan.find("idx_timestamp"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN a"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN b"), std::string::npos) << plan;
  }
}

TEST(KeysSummary, RetentionDeletesTheKeysOfDeletedMinutes) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  const std::int64_t now = test::realtimeNowMs();
  o.retention_s = 3600;
  o.retention_interval = std::chrono::milliseconds(50);
  Harness store(o);
  store.submit(makePacket(1, 1111, 80, 6, Direction::kEgress, 60,
                          test::monotonicForUnixMs(now - 7200 * 1000)));  // to be deleted
  store.submit(makePacket(2, 2222, 80, 6, Direction::kEgress, 60, test::monotonicForUnixMs(now)));
  store.flush();
  RawDb db(dir.file("traffic.db"));
  ASSERT_TRUE(test::eventually([&] {
    return db.count("SELECT count(*) FROM packets_keys WHERE k = 1111") == 0 &&
           db.count("SELECT count(*) FROM packets") == 1;
  }));
  EXPECT_EQ(db.count("SELECT count(*) FROM packets_keys WHERE k = 2222"), 1);
  HistoryQuery q;
  q.port = 2222;
  EXPECT_EQ(store.query(q).size(), 1u);
}

TEST(KeysSummary, AnOldDatabaseGetsTheSummaryForNewRowsAndKeepsOldRowsFindable) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  {
    RawDb db(path);
    db.exec("PRAGMA journal_mode=WAL");
    // The original v0.1.1 schema and three rows.
    db.exec(
        "CREATE TABLE packets (id INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, src_ip TEXT "
        "NOT NULL, dst_ip TEXT NOT NULL, src_port INTEGER, dst_port INTEGER, protocol TEXT, "
        "length INTEGER, src_hostname TEXT, dst_hostname TEXT); CREATE INDEX IF NOT EXISTS "
        "idx_timestamp ON packets(timestamp)");
    db.exec(
        "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, length) "
        "VALUES (1700000000000, '10.0.0.1', '10.0.0.2', 1234, 80, 'TCP', 60), "
        "(1700000000001, '10.0.0.2', '10.0.0.1', 80, 1234, 'TCP', 1500), "
        "(1700000000002, '10.0.0.3', '8.8.8.8', 5353, 53, 'UDP', 70)");
  }
  Harness store(optionsFor(path));
  RawDb db(path);
  EXPECT_EQ(db.one("SELECT value FROM ayaflow_meta WHERE key = 'keys_from_ms'"), "1700000000003");
  EXPECT_EQ(db.count("SELECT count(*) FROM packets_keys"), 0);
  store.submit(makePacket(1, 1234, 80, 6, Direction::kEgress, 99));  // 10.0.0.1, now
  store.flush();
  HistoryQuery q;
  q.ip = flow::IpAddress::parse("10.0.0.1");
  const auto rows = store.query(q);
  ASSERT_EQ(rows.size(), 3u);  // the new row (summary), then the two old ones (timestamp walk)
  EXPECT_EQ(rows[0].length, 99u);
  EXPECT_EQ(rows[1].timestamp_ms, 1700000000001);
  EXPECT_EQ(rows[2].timestamp_ms, 1700000000000);
  q = HistoryQuery{};
  q.port = 53;
  EXPECT_EQ(store.query(q).size(), 1u);
  EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
  // The summary is created once: a new database has it from its first row.
  TempDir fresh;
  Harness empty(optionsFor(fresh.file("traffic.db")));
  RawDb fresh_db(fresh.file("traffic.db"));
  EXPECT_EQ(fresh_db.one("SELECT value FROM ayaflow_meta WHERE key = 'keys_from_ms'"),
            std::to_string(INT64_MIN));
}

// ---------------------------------------------------------------------------------------
// Time budget

TEST(QueryBudget, ASlowQueryStopsWithEtimedoutAndTheConnectionServesTheNextQuery) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.query_timeout = std::chrono::milliseconds(100);
  Harness store(o);
  {
    // 1M TCP rows, by SQLite's own bulk insert.
    RawDb db(dir.file("traffic.db"));
    db.exec(
        "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, length, "
        "direction) WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < "
        "999999) SELECT 1700000000000 + i, '10.0.0.1', '10.0.0.2', 1234, 80, 'TCP', 60, "
        "'egress' FROM g");
  }
  HistoryQuery udp;
  udp.protocol = 17;  // matches nothing: the walk visits every row
  for (int round = 0; round < 3; ++round) {
    const auto started = std::chrono::steady_clock::now();
    try {
      store.query(udp);
      FAIL() << "a walk over 1M rows finished within 100 ms";
    } catch (const SystemError& e) {
      EXPECT_EQ(e.code().value(), ETIMEDOUT) << e.what();
    }
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
    // The same (pooled) connection answers at once.
    HistoryQuery recent;
    recent.limit = 5;
    const auto rows = store.query(recent);
    ASSERT_EQ(rows.size(), 5u);
    EXPECT_EQ(rows[0].timestamp_ms, 1700000000000 + 999999);
  }
  const auto stats = store.stats().sink;
  EXPECT_EQ(stats.queries_timed_out, 3u);
  EXPECT_EQ(stats.read_errors, 0u);
}

TEST(QueryBudget, AbsentAddressesAndPortsOnALargeDatabaseAnswerWithinATightBudget) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.query_timeout = std::chrono::milliseconds(100);
  Harness store(o);
  RawDb db(dir.file("traffic.db"));
  // 1M rows over ~3 hours (100 rows/s), 10.99.0.1 and port 9999 in 10 of them, by
  // SQLite's own bulk insert; then their summary.
  db.exec(
      "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, length, "
      "direction) WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < "
      "999999) SELECT 1700000000000 + 10 * i, CASE WHEN i % 100000 = 7 THEN '10.99.0.1' ELSE "
      "'10.0.' || (i % 5000 / 256) || '.' || (i % 256) END, '192.168.0.1', 30000 + i % 20000, "
      "CASE WHEN i % 100000 = 9 THEN 9999 ELSE 443 END, 'TCP', 60, 'egress' FROM g");
  db.exec(detail::kRebuildKeysSql);
  HistoryQuery absent_ip;
  absent_ip.ip = flow::IpAddress::parse("172.16.0.1");
  HistoryQuery absent_port;
  absent_port.port = 7;
  HistoryQuery rare_ip;
  rare_ip.ip = flow::IpAddress::parse("10.99.0.1");
  HistoryQuery rare_port;
  rare_port.port = 9999;
  EXPECT_TRUE(store.query(absent_ip).empty());
  EXPECT_TRUE(store.query(absent_port).empty());
  EXPECT_EQ(store.query(rare_ip).size(), 10u);
  EXPECT_EQ(store.query(rare_port).size(), 10u);
  EXPECT_EQ(store.stats().sink.queries_timed_out, 0u);
  // The same file without its summary: the walk over 1M rows does not fit the budget.
  db.exec("UPDATE ayaflow_meta SET value = 9223372036854775807 WHERE key = 'keys_from_ms'");
  try {
    store.query(absent_ip);
    ADD_FAILURE() << "a walk over 1M rows finished within 100 ms";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code().value(), ETIMEDOUT) << e.what();
  }
}

TEST(QueryBudget, ConcurrentQueriesShareTheBoundedPool) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  fillRandom(store, 2000, 5, 6);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        HistoryQuery q;
        q.port = 443;
        if (!store.query(q).empty()) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 400);
  EXPECT_EQ(store.stats().sink.queries_busy, 0u);
}

// ---------------------------------------------------------------------------------------
// Runtime errors

/// Captures what logger("store") writes while it lives.
class StoreLog {
 public:
  StoreLog() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    logger("store")->sinks().push_back(sink_);
  }
  ~StoreLog() {
    auto& sinks = logger("store")->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() {
    sink_->flush();
    return out_.str();
  }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

std::size_t countOf(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

/// How the file is damaged under the running agent: garbage over its pages, or cut short.
class RuntimeErrors : public ::testing::TestWithParam<bool> {};

TEST_P(RuntimeErrors, ADatabaseDamagedUnderTheAgentIsLoggedOnceAndCounted) {
  const bool truncate = GetParam();
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  StoreLog log;
  Harness store(optionsFor(path));
  fillRandom(store, 20000, 5, 7);
  store.syncForTest();
  {
    RawDb db(path);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  // Garbage over every page but the first (the header and schema stay readable), or the
  // file cut to its first two pages.
  if (truncate) {
    ASSERT_EQ(::truncate(path.c_str(), 8192), 0);
  } else {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const off_t size = ::lseek(fd, 0, SEEK_END);
    const std::string garbage(4096, '\x5a');
    for (off_t at = 4096; at < size; at += 4096) {
      ASSERT_EQ(::pwrite(fd, garbage.data(), garbage.size(), at), 4096);
    }
    ::close(fd);
  }
  for (int i = 0; i < 5; ++i) {
    HistoryQuery q;
    q.limit = 1000;
    if (i % 2 == 1) q.port = 443;
    try {
      store.query(q);
      ADD_FAILURE() << "a query over garbage pages succeeded";
    } catch (const SystemError& e) {
      EXPECT_EQ(e.code().value(), EIO) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  const auto stats = store.stats().sink;
  EXPECT_EQ(stats.read_errors, 5u);
  bool exported = false;
  for (const auto& family : store.sink().metrics()->Collect()) {
    if (family.name != "ayaflow_storage_errors_total") continue;
    for (const auto& m : family.metric) {
      if (m.label.size() == 1 && m.label[0].value == "read") {
        EXPECT_EQ(m.counter.value, 5.0);
        exported = true;
      }
    }
  }
  EXPECT_TRUE(exported);
  const std::string text = log.text();
  EXPECT_EQ(countOf(text, "reading failed"), 1u) << text;
  EXPECT_TRUE(text.find("malformed") != std::string::npos ||
              text.find("disk I/O error") != std::string::npos)
      << text;
  EXPECT_NE(text.find(path), std::string::npos) << text;
}

INSTANTIATE_TEST_SUITE_P(Damage, RuntimeErrors, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Truncated" : "Garbage"; });

}  // namespace
}  // namespace ayaflow::store
