// SPDX-License-Identifier: MIT OR Apache-2.0
// Store against real SQLite files (unit tier: no root, no network): batching, aggregation,
// hand-off accounting, queries, migration, retention and the start-up checks.
#include "store_harness.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "ayaflow/api/history_route.h"
#include "ayaflow/api/router.h"
#include "ayaflow/common/system_error.h"
#include "sqlite_util.h"
#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using flow::Direction;
using flow::HistoryQuery;
using test::eventually;
using test::Harness;
using test::HarnessOptions;
using test::makePacket;
using test::RawDb;
using test::TempDir;

constexpr auto kNever = std::chrono::hours(24);  // a timer that never fires in a test

HarnessOptions optionsFor(const std::string& path) {
  HarnessOptions o;
  o.db_path = path;
  o.batch_interval = kNever;
  o.retention_interval = kNever;
  return o;
}

HistoryQuery limit(std::size_t n) {
  HistoryQuery q;
  q.limit = n;
  return q;
}

// ---------------------------------------------------------------------------------------
// Batching

struct BatchCase {
  std::size_t submitted;
  std::uint64_t batches_after_sync;
  std::uint64_t rows_after_sync;
  std::uint64_t batches_after_flush;
};

class Batching : public ::testing::TestWithParam<BatchCase> {};

TEST_P(Batching, FullBatchesAreCommittedAtOnceAndTheRestOnFlush) {
  const BatchCase c = GetParam();
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  for (std::size_t i = 0; i < c.submitted; ++i) {
    store.submit(makePacket(static_cast<std::uint32_t>(i), 1000, 80));
  }
  store.syncForTest();
  Harness::Stats s = store.stats();
  EXPECT_EQ(s.sink.batches, c.batches_after_sync);
  EXPECT_EQ(s.sink.rows_stored, c.rows_after_sync);
  EXPECT_EQ(s.pipeline.queue_depth, 0u);
  EXPECT_EQ(store.query(limit(1000)).size(), std::min<std::size_t>(c.rows_after_sync, 1000));

  store.flush();
  s = store.stats();
  EXPECT_EQ(s.sink.batches, c.batches_after_flush);
  EXPECT_EQ(s.sink.rows_stored, c.submitted);
  EXPECT_EQ(s.sink.packets_stored, c.submitted);
  EXPECT_EQ(s.pipeline.packets_queued, c.submitted);
  EXPECT_EQ(s.pipeline.packets_dropped_queue_full, 0u);
  EXPECT_EQ(s.sink.rows_dropped_write_error, 0u);
  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.count("SELECT count(*) FROM packets"), static_cast<std::int64_t>(c.submitted));
}

INSTANTIATE_TEST_SUITE_P(Boundaries, Batching,
                         ::testing::Values(BatchCase{999, 0, 0, 1}, BatchCase{1000, 1, 1000, 1},
                                           BatchCase{1001, 1, 1000, 2}, BatchCase{2500, 2, 2000, 3},
                                           BatchCase{0, 0, 0, 0}),
                         [](const auto& info) {
                           return "rows" + std::to_string(info.param.submitted);
                         });

TEST(Store, TheBatchTimerWritesAPartialBatch) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.batch_interval = std::chrono::milliseconds(50);
  Harness store(o);
  for (int i = 0; i < 5; ++i) store.submit(makePacket(1, 1000, 80));
  // Written without flush() and without reaching batch_rows: the timer did it. (Usually in
  // one transaction; a tick may fall between two submits, so only an upper bound.)
  ASSERT_TRUE(eventually([&] { return store.stats().sink.rows_stored == 5; }));
  EXPECT_GE(store.stats().sink.batches, 1u);
  EXPECT_LE(store.stats().sink.batches, 5u);
}

TEST(Store, RawRowsCarryThePacketFields) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  const std::int64_t before = test::realtimeNowMs();
  flow::Packet p = makePacket(0x0102, 51000, 443, 6, Direction::kEgress, 1500);
  store.submit(p);
  flow::Packet v6;
  v6.src = *flow::IpAddress::parse("2001:db8::5");
  v6.dst = *flow::IpAddress::parse("2001:db8::53");
  v6.src_port = 5353;
  v6.dst_port = 53;
  v6.protocol = 17;
  v6.direction = Direction::kIngress;
  v6.addr_type = 6;
  v6.length = 72;
  v6.timestamp_ns = test::monotonicNowNs();
  store.submit(v6);
  store.flush();
  const std::int64_t after = test::realtimeNowMs();

  const auto rows = store.query(limit(10));
  ASSERT_EQ(rows.size(), 2u);
  const flow::HistoryRow& a = rows[1];  // older first submitted; rows are newest first
  const flow::HistoryRow& b = rows[0];
  EXPECT_EQ(a.src_ip, "10.0.1.2");
  EXPECT_EQ(a.dst_ip, "192.168.0.1");
  EXPECT_EQ(a.src_port, 51000);
  EXPECT_EQ(a.dst_port, 443);
  EXPECT_EQ(a.protocol, "TCP");
  EXPECT_EQ(a.length, 1500u);
  EXPECT_EQ(a.packet_count, 1u);
  EXPECT_EQ(a.direction, "egress");
  EXPECT_FALSE(a.domain.has_value());
  EXPECT_FALSE(a.src_hostname.has_value());
  // Monotonic -> Unix ms: within the test's own wall-clock window (+-1 ms of rounding).
  EXPECT_GE(a.timestamp_ms, before - 1);
  EXPECT_LE(a.timestamp_ms, after + 1);
  EXPECT_EQ(b.src_ip, "2001:db8::5");
  EXPECT_EQ(b.dst_ip, "2001:db8::53");
  EXPECT_EQ(b.protocol, "UDP");
  EXPECT_EQ(b.direction, "ingress");
  EXPECT_EQ(b.length, 72u);
  EXPECT_GT(b.id, a.id);

  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.one("SELECT src_ip, dst_ip, src_port, dst_port, protocol, length, packet_count, "
                   "direction, src_hostname, dst_hostname, domain FROM packets ORDER BY id "
                   "LIMIT 1"),
            "10.0.1.2|192.168.0.1|51000|443|TCP|1500|1|egress|NULL|NULL|NULL");
  EXPECT_EQ(db.one("PRAGMA journal_mode"), "wal");
}

TEST(Store, APacketWithoutTimestampIsStampedByTheWriter) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  const std::int64_t before = test::realtimeNowMs();
  flow::Packet p = makePacket(1, 2, 3);
  p.timestamp_ns = 0;
  store.submit(p);
  store.flush();
  const auto rows = store.query(limit(1));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_GE(rows[0].timestamp_ms, before);
  EXPECT_LE(rows[0].timestamp_ms, test::realtimeNowMs());
}

// ---------------------------------------------------------------------------------------
// Hand-off accounting

TEST(Store, AFullQueueCountsDropsAndNeverBlocks) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.batch_rows = 1;
  o.queue_capacity = 10;
  // The enrichment hook runs on the pipeline thread: hold it there so the queue fills.
  std::mutex m;
  std::condition_variable cv;
  bool entered = false, release = false;
  o.enrich = [&](const flow::FlowKey&, enrich::ConnectionNames&) {
    std::unique_lock<std::mutex> lock(m);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  };
  Harness store(o);
  store.submit(makePacket(1, 1, 1));
  {
    std::unique_lock<std::mutex> lock(m);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return entered; }));
  }
  for (int i = 0; i < 15; ++i) store.submit(makePacket(2, 2, 2));
  Harness::Stats s = store.stats();
  EXPECT_EQ(s.pipeline.queue_depth, 10u);
  EXPECT_EQ(s.pipeline.packets_dropped_queue_full, 5u);
  EXPECT_EQ(s.pipeline.packets_queued, 11u);
  {
    std::lock_guard<std::mutex> lock(m);
    release = true;
  }
  cv.notify_all();
  store.flush();
  s = store.stats();
  EXPECT_EQ(s.sink.rows_stored, 11u);
  EXPECT_EQ(s.pipeline.packets_dropped_queue_full, 5u);
  EXPECT_EQ(s.pipeline.queue_depth, 0u);
}

TEST(Store, StopDrainsEverythingAlreadySubmitted) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  Harness store(o);
  constexpr std::size_t kBurst = 50000;
  std::uint64_t bytes = 0;
  for (std::size_t i = 0; i < kBurst; ++i) {
    const auto len = static_cast<std::uint32_t>(40 + i % 1000);
    store.submit(makePacket(static_cast<std::uint32_t>(i % 500), static_cast<std::uint16_t>(i), 80,
                            6, Direction::kEgress, len));
    bytes += len;
  }
  store.stop();
  const Harness::Stats s = store.stats();
  EXPECT_EQ(s.pipeline.packets_dropped_queue_full, 0u);
  EXPECT_EQ(s.sink.rows_stored, kBurst);
  store.stop();   // idempotent
  store.flush();  // no-op after stop
  store.submit(makePacket(1, 1, 1));
  EXPECT_EQ(store.stats().pipeline.packets_dropped_stopped, 1u);
  // Reads still work after stop().
  EXPECT_EQ(store.query(limit(1000)).size(), 1000u);
  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.count("SELECT count(*) FROM packets"), static_cast<std::int64_t>(kBurst));
  EXPECT_EQ(db.count("SELECT sum(length) FROM packets"), static_cast<std::int64_t>(bytes));
}

TEST(Store, ConcurrentSubmittersLoseNothingThatWasAccepted) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.batch_interval = std::chrono::milliseconds(20);
  Harness store(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&store, t] {
      for (int i = 0; i < 20000; ++i) {
        store.submit(makePacket(static_cast<std::uint32_t>(t), static_cast<std::uint16_t>(i), 80));
      }
    });
  }
  for (auto& t : threads) t.join();
  store.flush();
  const Harness::Stats s = store.stats();
  EXPECT_EQ(s.pipeline.packets_queued + s.pipeline.packets_dropped_queue_full, 80000u);
  EXPECT_EQ(s.sink.rows_stored, s.pipeline.packets_queued);
}

// ---------------------------------------------------------------------------------------
// Aggregated mode

// A Unix time in the middle of the next window of `window_s`: that window cannot end
// while the test runs.
std::uint64_t midNextWindowNs(std::uint32_t window_s) {
  const std::int64_t w = static_cast<std::int64_t>(window_s) * 1000;
  const std::int64_t unix_ms = (test::realtimeNowMs() / w + 1) * w + w / 2;
  return test::monotonicForUnixMs(unix_ms);
}

TEST(Store, AggregatedRowsHoldExactTotalsPerDirectionalFlow) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.aggregation_window_s = 3600;
  Harness store(o);
  const std::uint64_t t = midNextWindowNs(3600);
  std::uint64_t a_bytes = 0;
  for (int i = 0; i < 1000; ++i) {
    const auto len = static_cast<std::uint32_t>(60 + i);
    store.submit(makePacket(7, 40000, 443, 6, Direction::kEgress, len, t + i * 1000000ull));
    a_bytes += len;
  }
  for (int i = 0; i < 300; ++i) {
    store.submit(makePacket(7, 40000, 443, 6, Direction::kIngress, 1500, t + 5000000ull + i));
  }
  store.submit(makePacket(8, 5353, 53, 17, Direction::kEgress, 80, t + 2000000ull));
  store.syncForTest();
  EXPECT_EQ(store.stats().sink.rows_stored, 0u);  // the window is still open
  EXPECT_EQ(store.stats().pipeline.open_flows, 3u);
  store.flush();

  const Harness::Stats s = store.stats();
  EXPECT_EQ(s.sink.rows_stored, 3u);
  EXPECT_EQ(s.sink.packets_stored, 1301u);
  EXPECT_EQ(s.pipeline.open_flows, 0u);
  RawDb db(dir.file("traffic.db"));
  const auto rows = db.rows(
      "SELECT src_ip, src_port, dst_port, protocol, direction, packet_count, length FROM "
      "packets ORDER BY packet_count DESC");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], "10.0.0.7|40000|443|TCP|egress|1000|" + std::to_string(a_bytes));
  EXPECT_EQ(rows[1], "10.0.0.7|40000|443|TCP|ingress|300|450000");
  EXPECT_EQ(rows[2], "10.0.0.8|5353|53|UDP|egress|1|80");
  // Each row is stamped with its first packet.
  const auto first = store.query(limit(3));
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[2].packet_count, 1000u);  // the oldest first packet: flow A egress
}

// TCP health (issue 16): raw rows carry their packet's figures, aggregated rows the window's
// flags OR-ed, retransmissions and drops summed, and the latest state and RTT; UDP rows
// without drops leave the columns NULL.
TEST(Store, HealthColumnsPerRowAndPerWindow) {
  for (const std::uint32_t window_s : {0u, 3600u}) {
    SCOPED_TRACE(window_s);
    TempDir dir;
    HarnessOptions o = optionsFor(dir.file("traffic.db"));
    o.aggregation_window_s = window_s;
    Harness store(o);
    const std::uint64_t t = midNextWindowNs(3600);
    flow::Packet syn = makePacket(9, 40000, 443, 6, Direction::kEgress, 60, t);
    syn.tcp_flags = flow::tcp_flags::kSyn;
    syn.tcp_state = flow::TcpState::kOpening;
    flow::Packet data = makePacket(9, 40000, 443, 6, Direction::kEgress, 1500, t + 30000000);
    data.tcp_flags = flow::tcp_flags::kAck | flow::tcp_flags::kPsh;
    data.tcp_state = flow::TcpState::kEstablished;
    data.rtt_us = 20000;
    data.rtt_kind = flow::RttKind::kHandshake;
    flow::Packet health = makePacket(9, 40000, 443, 6, Direction::kEgress, 0, t + 40000000);
    health.packets = 0;
    health.retransmits = 4;
    health.drops = 2;
    health.srtt_us = 21000;
    health.rtt_us = 21000;
    health.rtt_kind = flow::RttKind::kSmoothed;
    health.tcp_state = flow::TcpState::kEstablished;
    store.submit(syn);
    store.submit(data);
    store.submit(health);
    store.submit(makePacket(8, 5353, 53, 17, Direction::kEgress, 80, t + 2000000ull));
    store.flush();

    RawDb db(dir.file("traffic.db"));
    const auto rows = db.rows(
        "SELECT protocol, packet_count, tcp_flags, tcp_state, rtt_us, rtt_kind, retransmits, "
        "drops FROM packets ORDER BY id");
    if (window_s == 0) {
      ASSERT_EQ(rows.size(), 4u);
      EXPECT_EQ(rows[0], "TCP|1|2|opening|NULL|NULL|0|0");
      EXPECT_EQ(rows[1], "TCP|1|24|established|20000|handshake|0|0");
      EXPECT_EQ(rows[2], "TCP|0|0|established|21000|smoothed|4|2");
      EXPECT_EQ(rows[3], "UDP|1|NULL|NULL|NULL|NULL|NULL|NULL");
    } else {
      ASSERT_EQ(rows.size(), 2u);
      EXPECT_EQ(rows[0], "TCP|2|26|established|21000|smoothed|4|2");
      EXPECT_EQ(rows[1], "UDP|1|NULL|NULL|NULL|NULL|NULL|NULL");
    }
    flow::HistoryQuery q = limit(10);
    q.tcp_state = "established";
    const auto found = store.query(q);
    ASSERT_FALSE(found.empty());
    EXPECT_EQ(found[0].tcp_state, "established");
    EXPECT_EQ(found[0].retransmits, 4u);
    EXPECT_EQ(found[0].drops, 2u);
    EXPECT_EQ(found[0].rtt_kind, "smoothed");
    q.tcp_state = "refused";
    EXPECT_TRUE(store.query(q).empty());
  }
}

TEST(Store, AnEndedWindowIsWrittenWithoutFlush) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.aggregation_window_s = 1;
  Harness store(o);
  for (int i = 0; i < 50; ++i) store.submit(makePacket(1, 1, 1, 6, Direction::kEgress, 10));
  store.syncForTest();
  // The window ends within a second; its row(s) then appear on their own.
  ASSERT_TRUE(eventually([&] { return store.stats().sink.packets_stored == 50; }));
  const Harness::Stats s = store.stats();
  EXPECT_GE(s.sink.rows_stored, 1u);
  EXPECT_LE(s.sink.rows_stored, 2u);  // the packets may straddle a window boundary
  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.count("SELECT sum(length) FROM packets"), 500);
}

TEST(Store, TooManyOpenFlowsAreWrittenEarlyWithExactTotals) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.aggregation_window_s = 3600;
  o.max_open_flows = 10;
  Harness store(o);
  const std::uint64_t t = midNextWindowNs(3600);
  for (int i = 0; i < 25; ++i) {
    store.submit(makePacket(static_cast<std::uint32_t>(i), 1, 1, 6, Direction::kEgress, 100, t));
  }
  store.syncForTest();
  EXPECT_LE(store.stats().pipeline.open_flows, 10u);
  EXPECT_GE(store.stats().sink.rows_stored, 15u);
  store.stop();
  EXPECT_EQ(store.stats().sink.rows_stored, 25u);
  EXPECT_EQ(store.stats().sink.packets_stored, 25u);
}

TEST(Store, StopWritesOpenWindows) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.aggregation_window_s = 3600;
  {
    Harness store(o);
    const std::uint64_t t = midNextWindowNs(3600);
    for (int i = 0; i < 10; ++i) store.submit(makePacket(1, 2, 3, 17, Direction::kIngress, 7, t));
  }  // destructor = stop()
  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.one("SELECT count(*), sum(packet_count), sum(length) FROM packets"), "1|10|70");
}

// ---------------------------------------------------------------------------------------
// Enrichment and :memory:

TEST(Store, EnrichmentFillsOptionalColumnsAndAThrowingHookLosesNoRow) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  // Egress packets: the destination is the connection's remote end.
  o.enrich = [](const flow::FlowKey& key, enrich::ConnectionNames& names) {
    if (key.remote_port == 443) {
      names.domain = "example.com";
      names.remote.hostname = "edge.example.com";
    }
    if (key.remote_port == 666) throw std::runtime_error("boom");
  };
  Harness store(o);
  store.submit(makePacket(1, 1000, 443));
  store.submit(makePacket(1, 1000, 80));
  store.submit(makePacket(1, 1000, 666));
  store.flush();
  const auto rows = store.query(limit(10));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2].domain, "example.com");
  EXPECT_EQ(rows[2].dst_hostname, "edge.example.com");
  EXPECT_FALSE(rows[2].src_hostname.has_value());
  EXPECT_FALSE(rows[1].domain.has_value());
  EXPECT_EQ(rows[0].dst_port, 666);
  EXPECT_FALSE(rows[0].domain.has_value());
  EXPECT_EQ(store.stats().pipeline.enrich_failures, 1u);
}

TEST(Store, InMemoryDatabaseWorks) {
  HarnessOptions o = optionsFor(":memory:");
  Harness store(o);
  for (int i = 0; i < 1500; ++i) store.submit(makePacket(1, static_cast<std::uint16_t>(i), 80));
  store.flush();
  EXPECT_EQ(store.stats().sink.rows_stored, 1500u);
  EXPECT_EQ(store.query(limit(1000)).size(), 1000u);
  store.stop();
  EXPECT_EQ(store.query(limit(5)).size(), 5u);
}

// ---------------------------------------------------------------------------------------
// Queries

class StoreQuery : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<Harness>(optionsFor(dir_.file("traffic.db")));
    // Rows inserted by hand with known timestamps and ids.
    RawDb db(dir_.file("traffic.db"));
    db.exec("BEGIN");
    for (int i = 1; i <= 200; ++i) {
      const char* proto = i % 2 ? "TCP" : "UDP";
      const char* dirn = i % 4 < 2 ? "egress" : "ingress";
      const std::string src = i % 10 == 0 ? "2001:db8::10" : "10.0.0." + std::to_string(i % 7);
      // Two rows share each timestamp: ties are broken by id, newest first.
      db.exec(
          "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, "
          "length, packet_count, direction) VALUES (" +
          std::to_string(1000 + (i + 1) / 2) + ", '" + src + "', '192.168.0.1', " +
          std::to_string(30000 + i) + ", " + (i % 3 == 0 ? "53" : "443") + ", '" + proto + "', " +
          std::to_string(i) + ", 1, '" + dirn + "')");
    }
    db.exec("COMMIT");
    db.exec(detail::kRebuildKeysSql);  // rows inserted by hand: their summary by hand too
  }

  std::vector<std::int64_t> ids(const HistoryQuery& q) {
    std::vector<std::int64_t> out;
    for (const auto& r : store_->query(q)) out.push_back(r.id);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Harness> store_;
};

TEST_F(StoreQuery, NewestFirstWithIdBreakingTimestampTies) {
  const auto got = ids(limit(5));
  EXPECT_EQ(got, (std::vector<std::int64_t>{200, 199, 198, 197, 196}));
  const auto rows = store_->query(limit(2));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].timestamp_ms, rows[1].timestamp_ms);
}

TEST_F(StoreQuery, LimitIsClampedTo1And1000) {
  EXPECT_EQ(store_->query(limit(0)).size(), 1u);
  EXPECT_EQ(store_->query(limit(100000)).size(), 200u);
  EXPECT_EQ(store_->query(HistoryQuery{}).size(), 100u);  // default limit
}

TEST_F(StoreQuery, EveryFilter) {
  HistoryQuery q = limit(1000);
  q.since_ms = 1095;  // ids 189.. (timestamp 1000 + (i+1)/2)
  q.until_ms = 1096;
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{192, 191, 190, 189}));

  q = limit(3);
  q.ip = flow::IpAddress::parse("2001:db8::10");
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{200, 190, 180}));
  q.ip = flow::IpAddress::parse("::ffff:192.168.0.1");  // matches dst_ip "192.168.0.1"
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{200, 199, 198}));
  q.ip = flow::IpAddress::parse("10.9.9.9");
  EXPECT_TRUE(ids(q).empty());

  q = limit(3);
  q.port = 53;  // dst_port 53 when i % 3 == 0
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{198, 195, 192}));
  q.port = 30007;  // a source port
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{7}));

  q = limit(3);
  q.protocol = 17;
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{200, 198, 196}));
  q.protocol = 6;
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{199, 197, 195}));

  q = limit(4);
  q.direction = Direction::kIngress;  // i % 4 in {2, 3}
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{199, 198, 195, 194}));

  q = limit(1000);  // combined
  q.protocol = 6;
  q.direction = Direction::kEgress;
  q.port = 53;
  q.since_ms = 1050;
  // i odd, i%4 in {0,1} -> i%4==1, i%3==0, timestamp >= 1050 -> i >= 99
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{189, 177, 165, 153, 141, 129, 117, 105}));
}

TEST_F(StoreQuery, EveryPlanWalksTheTimestampIndexWithoutSorting) {
  std::vector<HistoryQuery> queries(7, limit(1000));
  queries[1].since_ms = 1;
  queries[2].until_ms = 1;
  queries[3].ip = flow::IpAddress::parse("10.0.0.1");
  queries[4].port = 80;
  queries[5].protocol = 6;
  queries[6].direction = Direction::kEgress;
  queries[6].since_ms = 5;
  queries[6].until_ms = 6;
  for (const auto& q : queries) {
    const std::string plan = store_->queryPlanForTest(q);
    EXPECT_NE(plan.find("idx_timestamp"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
  }
}

TEST_F(StoreQuery, ServedThroughTheHistoryRoute) {
  api::Router router;
  api::addHistoryRoute(router, [this](const HistoryQuery& q) { return store_->query(q); });
  const auto request = api::parseTarget("GET", "/api/history?limit=2&protocol=udp", "");
  ASSERT_TRUE(request.has_value());
  const api::Response r = router.route(*request);
  EXPECT_EQ(r.status, 200u);
  const auto body = nlohmann::json::parse(r.body);
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0]["id"], 200);
  EXPECT_EQ(body[0]["src_ip"], "2001:db8::10");
  EXPECT_EQ(body[0]["protocol"], "UDP");
  EXPECT_EQ(body[0]["packet_count"], 1);
  EXPECT_FALSE(body[0].contains("domain"));
  EXPECT_EQ(body[1]["id"], 198);
}

TEST(Store, AQueryThatCannotReadThrowsSystemErrorNamingTheFile) {
  TempDir dir;
  Harness store(optionsFor(dir.file("traffic.db")));
  store.stop();
  // No query has run yet, so no read connection is pooled: replace the file by a directory.
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(dir.file(std::string("traffic.db") + suffix));
  }
  std::filesystem::create_directory(dir.file("traffic.db"));
  try {
    store.query(limit(1));
    FAIL() << "query succeeded";
  } catch (const SystemError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.file("traffic.db")), std::string::npos) << e.what();
  }
}

TEST(Store, AQueryOverItsTimeBudgetFailsWithEtimedout) {
  TempDir dir;
  HarnessOptions o = optionsFor(dir.file("traffic.db"));
  o.query_timeout = std::chrono::milliseconds(0);
  Harness store(o);
  {
    RawDb db(dir.file("traffic.db"));
    db.exec("BEGIN");
    for (int i = 0; i < 5000; ++i) {
      db.exec("INSERT INTO packets (timestamp, src_ip, dst_ip) VALUES (" + std::to_string(i) +
              ", '10.0.0.1', '10.0.0.2')");
    }
    db.exec("COMMIT");
  }
  HistoryQuery q = limit(10);
  q.protocol = 17;  // matches nothing: visits every row
  try {
    store.query(q);
    FAIL() << "the query finished within a zero budget";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code().value(), ETIMEDOUT) << e.what();
    EXPECT_NE(std::string(e.what()).find("since/until"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------
// Migration from the original's schemas

// The original v0.1.0 schema (no hostname, direction, domain or packet_count columns), the
// v0.1.1 one (hostnames added), and ayaflow's own before the Kubernetes names (with its
// address and port summary).
const char* const kOriginalSchemas[] = {
    "CREATE TABLE packets (id INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, src_ip TEXT NOT "
    "NULL, dst_ip TEXT NOT NULL, src_port INTEGER, dst_port INTEGER, protocol TEXT, length "
    "INTEGER); CREATE INDEX IF NOT EXISTS idx_timestamp ON packets(timestamp);",
    "CREATE TABLE packets (id INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, src_ip TEXT NOT "
    "NULL, dst_ip TEXT NOT NULL, src_port INTEGER, dst_port INTEGER, protocol TEXT, length "
    "INTEGER, src_hostname TEXT, dst_hostname TEXT); CREATE INDEX IF NOT EXISTS idx_timestamp "
    "ON packets(timestamp);",
    "CREATE TABLE packets (id INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, src_ip TEXT NOT "
    "NULL, dst_ip TEXT NOT NULL, src_port INTEGER, dst_port INTEGER, protocol TEXT, length "
    "INTEGER, direction TEXT, src_hostname TEXT, dst_hostname TEXT, domain TEXT, packet_count "
    "INTEGER NOT NULL DEFAULT 1, interface TEXT); CREATE INDEX IF NOT EXISTS idx_timestamp ON "
    "packets(timestamp); CREATE TABLE packets_keys (epoch INTEGER NOT NULL, k NOT NULL, bucket "
    "INTEGER NOT NULL, PRIMARY KEY (epoch, k, bucket)) WITHOUT ROWID; CREATE TABLE "
    "ayaflow_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID; INSERT INTO ayaflow_meta VALUES "
    "('keys_from_ms', -9223372036854775808);",
};

class Migration : public ::testing::TestWithParam<int> {};

TEST_P(Migration, AddsTheMissingColumnsAndKeepsEveryRow) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  {
    RawDb db(path);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec(kOriginalSchemas[GetParam()]);
    db.exec(
        "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, "
        "length) VALUES (1700000000000, '10.0.0.1', '10.0.0.2', 1234, 80, 'TCP', 60), "
        "(1700000000001, '10.0.0.2', '10.0.0.1', 80, 1234, 'TCP', 1500), "
        "(1700000000002, '10.0.0.3', '8.8.8.8', 5353, 53, 'UDP', 70)");
  }
  {
    HarnessOptions o = optionsFor(path);
    // Ingress: the source 10.0.0.1 is the remote end.
    const auto pod = std::make_shared<const enrich::PodName>(
        enrich::PodName{"shop", "web-0", "web", "StatefulSet"});
    o.enrich = [pod](const flow::FlowKey&, enrich::ConnectionNames& names) {
      names.remote.pod = pod;
    };
    Harness store(o);
    store.submit(makePacket(1, 2, 3, 6, Direction::kIngress, 99));
    store.flush();
    const auto rows = store.query(limit(10));
    ASSERT_EQ(rows.size(), 4u);
    EXPECT_EQ(rows[0].length, 99u);
    EXPECT_EQ(rows[0].direction, "ingress");
    EXPECT_EQ(rows[0].src_pod, "web-0");  // the new columns are written
    EXPECT_EQ(rows[0].src_workload_kind, "StatefulSet");
    EXPECT_FALSE(rows[0].dst_pod.has_value());
    HistoryQuery by_pod = limit(10);
    by_pod.pod = "web-0";
    EXPECT_EQ(store.query(by_pod).size(), 1u);
    const flow::HistoryRow& old = rows[1];
    EXPECT_EQ(old.timestamp_ms, 1700000000002);
    EXPECT_EQ(old.src_ip, "10.0.0.3");
    EXPECT_EQ(old.protocol, "UDP");
    EXPECT_EQ(old.packet_count, 1u);
    EXPECT_EQ(old.direction, "");  // unknown in the original's rows
    EXPECT_FALSE(old.domain.has_value());
    EXPECT_FALSE(old.src_namespace || old.src_pod || old.src_workload || old.src_workload_kind ||
                 old.src_node || old.dst_namespace || old.dst_pod || old.dst_workload ||
                 old.dst_workload_kind || old.dst_node);
  }
  RawDb db(path);
  std::vector<std::string> columns;
  for (const auto& row : db.rows("SELECT name FROM pragma_table_info('packets') ORDER BY cid")) {
    columns.push_back(row);
  }
  for (const char* want : {"id",
                           "timestamp",
                           "src_ip",
                           "dst_ip",
                           "src_port",
                           "dst_port",
                           "protocol",
                           "length",
                           "direction",
                           "src_hostname",
                           "dst_hostname",
                           "domain",
                           "packet_count",
                           "interface",
                           "src_namespace",
                           "src_pod",
                           "src_workload",
                           "src_workload_kind",
                           "src_node",
                           "dst_namespace",
                           "dst_pod",
                           "dst_workload",
                           "dst_workload_kind",
                           "dst_node",
                           "tcp_flags",
                           "tcp_state",
                           "rtt_us",
                           "rtt_kind",
                           "retransmits",
                           "drops"}) {
    EXPECT_NE(std::find(columns.begin(), columns.end(), want), columns.end()) << want;
  }
  EXPECT_EQ(columns.size(), 30u);
  EXPECT_EQ(db.count("SELECT count(*) FROM packets WHERE id <= 3 AND coalesce(src_namespace, "
                     "src_pod, src_workload, src_workload_kind, src_node, dst_namespace, "
                     "dst_pod, dst_workload, dst_workload_kind, dst_node, tcp_flags, tcp_state, "
                     "rtt_us, rtt_kind, retransmits, drops) IS NOT NULL"),
            0);
  EXPECT_EQ(db.one("SELECT count(*), sum(packet_count), sum(length) FROM packets WHERE id <= 3"),
            "3|3|1630");
  EXPECT_EQ(db.count("SELECT count(*) FROM sqlite_master WHERE type = 'index'"), 1);
  EXPECT_EQ(db.one("PRAGMA integrity_check"), "ok");
  // A second start finds nothing to migrate.
  { Harness again(optionsFor(path)); }
  EXPECT_EQ(db.count("SELECT count(*) FROM pragma_table_info('packets')"), 30);
}

std::string schemaName(const ::testing::TestParamInfo<int>& info) {
  static const char* const kNames[] = {"v0_1_0", "v0_1_1", "ayaflow_before_k8s_names"};
  return kNames[info.param];
}

INSTANTIATE_TEST_SUITE_P(OriginalSchemas, Migration, ::testing::Values(0, 1, 2), schemaName);

TEST(Store, AForeignPacketsTableIsRefusedAndLeftUntouched) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  {
    RawDb db(path);
    db.exec("CREATE TABLE packets (name TEXT, size INTEGER); INSERT INTO packets VALUES ('x', 1)");
  }
  const std::string before = test::readFile(path);
  try {
    Harness store(optionsFor(path));
    FAIL() << "accepted a foreign packets table";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'id'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(test::readFile(path), before);
}

// ---------------------------------------------------------------------------------------
// Retention

struct RetentionCase {
  int old_rows;
  std::size_t chunk;
  std::uint64_t chunks;
};

class Retention : public ::testing::TestWithParam<RetentionCase> {};

TEST_P(Retention, DeletesOldRowsInBoundedChunksAndKeepsTheRest) {
  const RetentionCase c = GetParam();
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  { Harness create(optionsFor(path)); }
  const std::int64_t now = test::realtimeNowMs();
  {
    RawDb db(path);
    db.exec("BEGIN");
    for (int i = 0; i < c.old_rows; ++i) {
      // Older than 1 h, interleaved by id with recent rows.
      db.exec("INSERT INTO packets (timestamp, src_ip, dst_ip) VALUES (" +
              std::to_string(now - 3600 * 1000 - 1000 - i) + ", 'old', 'x')");
      if (i % 100 == 0) {
        db.exec("INSERT INTO packets (timestamp, src_ip, dst_ip) VALUES (" +
                std::to_string(now - 1000) + ", 'new', 'x')");
      }
    }
    db.exec("COMMIT");
  }
  const int new_rows = (c.old_rows + 99) / 100;

  HarnessOptions o = optionsFor(path);
  o.retention_s = 3600;
  o.retention_chunk = c.chunk;
  Harness store(o);
  store.syncForTest();  // waits for the start-up retention pass
  const Harness::Stats s = store.stats();
  EXPECT_EQ(s.sink.rows_deleted, static_cast<std::uint64_t>(c.old_rows));
  EXPECT_EQ(s.sink.retention_chunks, c.chunks);
  RawDb db(path);
  EXPECT_EQ(db.count("SELECT count(*) FROM packets WHERE src_ip = 'old'"), 0);
  EXPECT_EQ(db.count("SELECT count(*) FROM packets WHERE src_ip = 'new'"), new_rows);
}

INSTANTIATE_TEST_SUITE_P(Chunks, Retention,
                         ::testing::Values(RetentionCase{12345, 1000, 13},  // 12 full + 345
                                           RetentionCase{3000, 1000, 4},    // 3 full + empty
                                           RetentionCase{999, 1000, 1}, RetentionCase{0, 1000, 1}),
                         [](const auto& info) {
                           return "old" + std::to_string(info.param.old_rows);
                         });

TEST(Store, RetentionRunsAgainEveryInterval) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  HarnessOptions o = optionsFor(path);
  o.retention_s = 3600;
  o.retention_interval = std::chrono::milliseconds(50);
  Harness store(o);
  store.syncForTest();
  {
    RawDb db(path);
    db.exec(
        "INSERT INTO packets (timestamp, src_ip, dst_ip) VALUES (1, 'old', 'x'), (2, 'old', "
        "'x')");
  }
  ASSERT_TRUE(eventually([&] { return store.stats().sink.rows_deleted == 2; }));
  // New rows are never deleted.
  store.submit(makePacket(1, 1, 1));
  store.flush();
  EXPECT_EQ(store.query(limit(10)).size(), 1u);
}

// ---------------------------------------------------------------------------------------
// Start-up checks: one line naming the file, the file byte-identical afterwards.

void expectRefused(const std::string& path, const std::string& needle) {
  const bool existed = std::filesystem::is_regular_file(path);
  const std::string before = existed ? test::readFile(path) : std::string();
  try {
    Harness store(optionsFor(path));
    FAIL() << "opened " << path;
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_EQ(what.rfind(path, 0), 0u) << what;  // starts with the file name
    EXPECT_NE(what.find(needle), std::string::npos) << what;
  }
  if (existed) {
    EXPECT_EQ(test::readFile(path), before);
  }
  EXPECT_FALSE(std::filesystem::exists(path + "-journal"));
}

TEST(StartupChecks, ATextFileIsNotADatabase) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  test::writeFile(path, "this is my shopping list\nmilk\neggs\n");
  expectRefused(path, "not a SQLite database");
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
  EXPECT_FALSE(std::filesystem::exists(path + "-shm"));
}

TEST(StartupChecks, AShortFileIsNotADatabase) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  test::writeFile(path, "SQLite");
  expectRefused(path, "not a SQLite database");
}

TEST(StartupChecks, AValidHeaderOverGarbagePagesIsDamaged) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  {
    Harness store(optionsFor(path));
    for (int i = 0; i < 3000; ++i) store.submit(makePacket(1, static_cast<std::uint16_t>(i), 80));
  }
  std::string bytes = test::readFile(path);
  ASSERT_GT(bytes.size(), 4u * 4096u);
  ASSERT_FALSE(std::filesystem::exists(path + "-wal"));  // checkpointed on close
  // Keep page 1 (header + schema), overwrite every other page with garbage.
  for (std::size_t i = 4096; i < bytes.size(); ++i) {
    bytes[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  test::writeFile(path, bytes);
  expectRefused(path, "damaged database");
  EXPECT_FALSE(std::filesystem::exists(path + "-wal"));
}

TEST(StartupChecks, AnEmptyFileBecomesANewDatabase) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  test::writeFile(path, "");
  Harness store(optionsFor(path));
  store.submit(makePacket(1, 1, 1));
  store.flush();
  EXPECT_EQ(store.query(limit(5)).size(), 1u);
}

TEST(StartupChecks, ADirectoryOrAMissingDirectoryIsRefused) {
  TempDir dir;
  std::filesystem::create_directory(dir.file("traffic.db"));
  expectRefused(dir.file("traffic.db"), "is a directory");
  expectRefused(dir.file("missing/traffic.db"), "does not exist");
}

// Runs `fn` in a child process as an unprivileged user (when the test runs as root, which
// ignores permission bits) and returns what it wrote to the pipe.
std::string runAsNobody(const std::function<std::string()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) _exit(3);
    std::string out;
    try {
      out = fn();
    } catch (const std::exception& e) {
      out = std::string("exception: ") + e.what();
    }
    const ssize_t n = ::write(fds[1], out.data(), out.size());
    _exit(n == static_cast<ssize_t>(out.size()) ? 0 : 4);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    out += " [child status " + std::to_string(status) + "]";
  }
  return out;
}

TEST(StartupChecks, AnUnwritableDirectoryIsRefusedAndTheFileLeftAlone) {
  TempDir dir;
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  const std::string ro = dir.file("ro");
  std::filesystem::create_directory(ro);
  const std::string path = ro + "/traffic.db";
  { Harness create(optionsFor(path)); }
  std::filesystem::permissions(path, std::filesystem::perms(0644));
  std::filesystem::permissions(ro, std::filesystem::perms(0555));
  const std::string before = test::readFile(path);

  const std::string with_file = runAsNobody([&]() -> std::string {
    try {
      Harness store(optionsFor(path));
      return "opened";
    } catch (const ConfigError& e) {
      return e.what();
    }
  });
  EXPECT_EQ(with_file.rfind(path, 0), 0u) << with_file;
  EXPECT_NE(with_file.find("not writable"), std::string::npos) << with_file;
  EXPECT_EQ(with_file.find('\n'), std::string::npos) << with_file;
  EXPECT_EQ(test::readFile(path), before);

  const std::string fresh = ro + "/new.db";
  const std::string without_file = runAsNobody([&]() -> std::string {
    try {
      Harness store(optionsFor(fresh));
      return "opened";
    } catch (const ConfigError& e) {
      return e.what();
    }
  });
  EXPECT_EQ(without_file.rfind(fresh, 0), 0u) << without_file;
  EXPECT_NE(without_file.find("not writable"), std::string::npos) << without_file;
  EXPECT_FALSE(std::filesystem::exists(fresh));
}

TEST(StartupChecks, AReopenedDatabaseKeepsItsRows) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  {
    Harness store(optionsFor(path));
    for (int i = 0; i < 10; ++i) store.submit(makePacket(1, 1, 1));
  }
  Harness store(optionsFor(path));
  EXPECT_EQ(store.query(limit(100)).size(), 10u);
}

}  // namespace
}  // namespace ayaflow::store
