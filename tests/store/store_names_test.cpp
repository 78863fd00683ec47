// SPDX-License-Identifier: MIT OR Apache-2.0
// Kubernetes names in the history (unit tier, real SQLite files): each end's namespace, pod,
// workload, workload kind or node written from the pipeline's names on insert and on the
// in-place update of checkpointed rows, read back by the history reader, NULL when unknown,
// and the namespace/pod/workload filters of the history query and GET /api/history.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ayaflow/api/history_route.h"
#include "ayaflow/api/router.h"
#include "sqlite_util.h"
#include "store_harness.h"
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
// Windows this long (about 115 days, aligned on Unix time) never end during a test.
constexpr std::uint32_t kLongWindowS = 10000000;

// The names every test gives: makePacket(1, ...) comes from a Deployment's pod,
// makePacket(2, ...) from a bare pod with no kind known, makePacket(3, ...) from an address
// nobody names; every packet goes to 192.168.0.1, the node itself.
const auto kWeb = std::make_shared<const enrich::PodName>(
    enrich::PodName{"shop", "web-7d9f8-x2x4q", "web", "Deployment"});
const auto kBare =
    std::make_shared<const enrich::PodName>(enrich::PodName{"tools", "debug", "", ""});
const auto kNode = std::make_shared<const std::string>("node-a");

flow::IpAddress addr(const char* text) { return *flow::IpAddress::parse(text); }

void nameEnd(const flow::IpAddress& a, enrich::EndpointNames& e) {
  if (a == addr("10.0.0.1")) e.pod = kWeb;
  if (a == addr("10.0.0.2")) e.pod = kBare;
  if (a == addr("192.168.0.1")) e.node = kNode;
}

void nameBoth(const flow::FlowKey& key, enrich::ConnectionNames& names) {
  nameEnd(key.local, names.local);
  nameEnd(key.remote, names.remote);
}

HarnessOptions named(const std::string& path) {
  HarnessOptions o;
  o.db_path = path;
  o.batch_interval = kNever;
  o.retention_interval = kNever;
  o.enrich = nameBoth;
  return o;
}

HistoryQuery limit(std::size_t n) {
  HistoryQuery q;
  q.limit = n;
  return q;
}

constexpr const char* kNameColumns =
    "src_namespace, src_pod, src_workload, src_workload_kind, src_node, dst_namespace, "
    "dst_pod, dst_workload, dst_workload_kind, dst_node";

constexpr const char* kWebToNode =
    "shop|web-7d9f8-x2x4q|web|Deployment|NULL|NULL|NULL|NULL|NULL|node-a";

TEST(StoreNames, RawRowsCarryEachEndsNamesWhateverTheDirection) {
  TempDir dir;
  Harness store(named(dir.file("traffic.db")));
  // Egress: the source is the local end; ingress: the source is the remote end. Either way
  // the src_ columns name the source address.
  store.submit(makePacket(1, 40000, 443, 6, Direction::kEgress));
  store.submit(makePacket(1, 40000, 443, 6, Direction::kIngress));
  store.submit(makePacket(2, 40001, 443, 6, Direction::kEgress));
  store.submit(makePacket(3, 40002, 443, 6, Direction::kEgress));
  store.flush();

  RawDb db(dir.file("traffic.db"));
  const auto rows =
      db.rows(std::string("SELECT direction, ") + kNameColumns + " FROM packets ORDER BY id");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], std::string("egress|") + kWebToNode);
  EXPECT_EQ(rows[1], std::string("ingress|") + kWebToNode);
  // Unknown workload and kind are NULL, never ''.
  EXPECT_EQ(rows[2], "egress|tools|debug|NULL|NULL|NULL|NULL|NULL|NULL|NULL|node-a");
  EXPECT_EQ(rows[3], "egress|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|node-a");
  EXPECT_EQ(db.count("SELECT count(*) FROM packets WHERE src_workload = '' OR "
                     "src_workload_kind = ''"),
            0);

  // Read back: newest first.
  const auto got = store.query(limit(10));
  ASSERT_EQ(got.size(), 4u);
  const flow::HistoryRow& web = got[3];
  EXPECT_EQ(web.src_namespace, "shop");
  EXPECT_EQ(web.src_pod, "web-7d9f8-x2x4q");
  EXPECT_EQ(web.src_workload, "web");
  EXPECT_EQ(web.src_workload_kind, "Deployment");
  EXPECT_FALSE(web.src_node.has_value());
  EXPECT_FALSE(web.dst_namespace || web.dst_pod || web.dst_workload || web.dst_workload_kind);
  EXPECT_EQ(web.dst_node, "node-a");
  EXPECT_EQ(got[2].src_pod, "web-7d9f8-x2x4q");  // the ingress row
  EXPECT_EQ(got[1].src_pod, "debug");
  EXPECT_FALSE(got[1].src_workload.has_value());
  EXPECT_FALSE(got[1].src_workload_kind.has_value());
  const flow::HistoryRow& unknown = got[0];
  EXPECT_FALSE(unknown.src_namespace || unknown.src_pod || unknown.src_workload ||
               unknown.src_workload_kind || unknown.src_node);
  EXPECT_EQ(unknown.dst_node, "node-a");
}

TEST(StoreNames, WithoutANameSourceEveryNameIsNull) {
  TempDir dir;
  HarnessOptions o = named(dir.file("traffic.db"));
  o.enrich = nullptr;
  Harness store(o);
  store.submit(makePacket(1, 40000, 443));
  store.flush();
  RawDb db(dir.file("traffic.db"));
  EXPECT_EQ(db.one(std::string("SELECT ") + kNameColumns + " FROM packets"),
            "NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL");
  const auto got = store.query(limit(1));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].src_pod || got[0].dst_node);
}

TEST(StoreNames, AggregatedRowsCarryTheirFlowsNames) {
  TempDir dir;
  HarnessOptions o = named(dir.file("traffic.db"));
  o.aggregation_window_s = 3600;
  Harness store(o);
  for (int i = 0; i < 10; ++i) {
    store.submit(makePacket(1, 40000, 443, 6, Direction::kEgress, 100));
    store.submit(makePacket(3, 40002, 443, 6, Direction::kEgress, 100));
  }
  store.flush();
  RawDb db(dir.file("traffic.db"));
  const auto rows = db.rows(std::string("SELECT src_ip, packet_count, ") + kNameColumns +
                            " FROM packets ORDER BY src_ip");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], std::string("10.0.0.1|10|") + kWebToNode);
  EXPECT_EQ(rows[1], "10.0.0.3|10|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|node-a");
}

/// One row's packet count and names, on a connection of its own.
std::string rowOf(const std::string& path) {
  RawDb db(path, SQLITE_OPEN_READONLY);
  const auto rows = db.rows(std::string("SELECT packet_count, ") + kNameColumns + " FROM packets");
  return rows.size() == 1 ? rows[0] : std::to_string(rows.size()) + " rows";
}

TEST(StoreNames, TheInPlaceUpdateWritesNamesLearnedLaterAndKeepsNamesKnownBefore) {
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  // The name source answers nothing at first (it has not learned the pod yet), then the
  // names, then nothing again (it has forgotten the pod).
  std::atomic<int> phase{0};
  HarnessOptions o;
  o.db_path = path;
  o.aggregation_window_s = kLongWindowS;
  o.checkpoint_interval = std::chrono::milliseconds(20);
  o.enrich = [&phase](const flow::FlowKey& key, enrich::ConnectionNames& names) {
    if (phase.load() == 1) nameBoth(key, names);
  };
  Harness store(o);
  const auto send = [&](int n) {
    for (int i = 0; i < n; ++i) store.submit(makePacket(1, 40000, 443));
  };
  send(5);
  ASSERT_TRUE(eventually([&] {
    return rowOf(path) == "5|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL";
  })) << rowOf(path);

  phase = 1;
  send(5);
  ASSERT_TRUE(eventually([&] { return rowOf(path) == std::string("10|") + kWebToNode; }))
      << rowOf(path);
  EXPECT_EQ(store.stats().sink.rows_stored, 1u);  // the names came with an update
  EXPECT_GE(store.stats().sink.rows_updated, 1u);

  phase = 2;
  send(5);
  ASSERT_TRUE(eventually([&] { return rowOf(path) == std::string("15|") + kWebToNode; }))
      << rowOf(path);
  send(5);
  store.stop();  // the final record, without names: the row keeps them
  EXPECT_EQ(rowOf(path), std::string("20|") + kWebToNode);
  EXPECT_EQ(store.stats().sink.rows_stored, 1u);
  EXPECT_GE(store.stats().sink.rows_updated, 3u);
  const auto got = store.query(limit(5));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].src_workload, "web");
  EXPECT_EQ(got[0].dst_node, "node-a");
}

TEST(StoreNames, AnUpdateThatMovesTheRowEarlierWritesNamesToo) {
  // The UPDATE that also moves the timestamp (an earlier packet joined the window's sums)
  // is a statement of its own.
  TempDir dir;
  const std::string path = dir.file("traffic.db");
  std::atomic<int> phase{0};
  HarnessOptions o;
  o.db_path = path;
  o.aggregation_window_s = kLongWindowS;
  o.checkpoint_interval = std::chrono::milliseconds(20);
  o.enrich = [&phase](const flow::FlowKey& key, enrich::ConnectionNames& names) {
    if (phase.load() == 1) nameBoth(key, names);
  };
  Harness store(o);
  const std::uint64_t now = test::monotonicNowNs();
  store.submit(makePacket(1, 40000, 443, 6, Direction::kEgress, 100, now));
  ASSERT_TRUE(eventually([&] {
    return rowOf(path) == "1|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL";
  })) << rowOf(path);
  RawDb db(path, SQLITE_OPEN_READONLY);
  const std::int64_t first = db.count("SELECT timestamp FROM packets");
  phase = 1;
  store.submit(makePacket(1, 40000, 443, 6, Direction::kEgress, 100, now - 1000000000ull));
  ASSERT_TRUE(eventually([&] { return rowOf(path) == std::string("2|") + kWebToNode; }))
      << rowOf(path);
  EXPECT_EQ(db.count("SELECT timestamp FROM packets"), first - 1000);
  store.stop();
  EXPECT_EQ(rowOf(path), std::string("2|") + kWebToNode);
}

// ---------------------------------------------------------------------------------------
// Filters

class NameFilters : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<Harness>(named(dir_.file("traffic.db")));
    // Rows by hand, ids 1..60, one per second: every 3rd row's source is a pod of
    // namespace shop (workload web), every 5th row's destination a pod of namespace db
    // (workload pg, pod pg-0); the rest unnamed; row 30 has both.
    RawDb db(dir_.file("traffic.db"));
    db.exec("BEGIN");
    for (int i = 1; i <= 60; ++i) {
      const bool src = i % 3 == 0;
      const bool dst = i % 5 == 0;
      db.exec(
          "INSERT INTO packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, "
          "length, packet_count, direction, src_namespace, src_pod, src_workload, "
          "src_workload_kind, dst_namespace, dst_pod, dst_workload, dst_workload_kind, "
          "dst_node) VALUES (" +
          std::to_string(1000000 + i * 1000) + ", '10.0.0." + std::to_string(i % 4) +
          "', '10.1.0.1', 40000, 5432, 'TCP', 100, 1, 'egress', " +
          (src ? "'shop', 'web-" + std::to_string(i) + "', 'web', 'Deployment', "
               : std::string("NULL, NULL, NULL, NULL, ")) +
          (dst ? "'db', 'pg-0', 'pg', 'StatefulSet', NULL"
               : std::string("NULL, NULL, NULL, NULL, 'node-a'")) +
          ")");
    }
    db.exec("COMMIT");
    db.exec(detail::kRebuildKeysSql);
  }

  std::vector<std::int64_t> ids(const HistoryQuery& q) {
    std::vector<std::int64_t> out;
    for (const auto& r : store_->query(q)) out.push_back(r.id);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Harness> store_;
};

TEST_F(NameFilters, EachMatchesEitherEnd) {
  HistoryQuery q = limit(4);
  q.ns = "shop";  // sources
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{60, 57, 54, 51}));
  q.ns = "db";  // destinations
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{60, 55, 50, 45}));

  q = limit(4);
  q.workload = "pg";
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{60, 55, 50, 45}));
  q.workload = "web";
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{60, 57, 54, 51}));

  q = limit(4);
  q.pod = "pg-0";
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{60, 55, 50, 45}));
  q.pod = "web-9";
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{9}));
}

TEST_F(NameFilters, MatchExactlyAndCombineWithEveryOtherFilter) {
  HistoryQuery q = limit(100);
  q.ns = "Shop";  // case matters
  EXPECT_TRUE(ids(q).empty());
  q.ns = "sho";  // no prefix match
  EXPECT_TRUE(ids(q).empty());
  q.ns = "node-a";  // a node name is no namespace
  EXPECT_TRUE(ids(q).empty());
  q.ns.reset();
  q.workload = "Deployment";  // nor a kind a workload
  EXPECT_TRUE(ids(q).empty());

  q = limit(100);
  q.ns = "shop";
  q.workload = "pg";  // both: rows 15, 30, 45, 60
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{60, 45, 30, 15}));
  q.since_ms = 1000000 + 20 * 1000;
  q.until_ms = 1000000 + 50 * 1000;
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{45, 30}));

  // With an address, the summary's bucket walk: src 10.0.0.(i % 4) = 10.0.0.2 for i % 4 == 2.
  q = limit(100);
  q.ip = addr("10.0.0.2");
  q.pod = "pg-0";  // i % 5 == 0 and i % 4 == 2: 10, 30, 50
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{50, 30, 10}));
  q.port = 5432;
  q.protocol = 6;
  q.direction = Direction::kEgress;
  q.ns = "db";
  q.workload = "pg";
  EXPECT_EQ(ids(q), (std::vector<std::int64_t>{50, 30, 10}));
  q.direction = Direction::kIngress;
  EXPECT_TRUE(ids(q).empty());
}

TEST_F(NameFilters, PlansStillWalkTheTimestampIndexWithoutSorting) {
  std::vector<HistoryQuery> queries(4, limit(100));
  queries[0].ns = "shop";
  queries[1].pod = "pg-0";
  queries[2].workload = "web";
  queries[2].since_ms = 1;
  queries[3].ns = "db";
  queries[3].ip = addr("10.0.0.2");
  for (const auto& q : queries) {
    const std::string plan = store_->queryPlanForTest(q);
    EXPECT_NE(plan.find("idx_timestamp"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
  }
}

TEST_F(NameFilters, ServedThroughTheHistoryRouteWithTheNames) {
  api::Router router;
  api::addHistoryRoute(router, [this](const HistoryQuery& q) { return store_->query(q); });
  const auto request =
      api::parseTarget("GET", "/api/history?namespace=db&workload=web&limit=2", "");
  ASSERT_TRUE(request.has_value());
  const api::Response r = router.route(*request);
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto body = nlohmann::json::parse(r.body);
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0]["id"], 60);
  EXPECT_EQ(body[0]["src_namespace"], "shop");
  EXPECT_EQ(body[0]["src_pod"], "web-60");
  EXPECT_EQ(body[0]["src_workload"], "web");
  EXPECT_EQ(body[0]["src_workload_kind"], "Deployment");
  EXPECT_EQ(body[0]["dst_namespace"], "db");
  EXPECT_EQ(body[0]["dst_pod"], "pg-0");
  EXPECT_EQ(body[0]["dst_workload"], "pg");
  EXPECT_EQ(body[0]["dst_workload_kind"], "StatefulSet");
  EXPECT_FALSE(body[0].contains("src_node"));
  EXPECT_FALSE(body[0].contains("dst_node"));
  EXPECT_EQ(body[1]["id"], 45);

  // An unnamed source and a node as destination: only dst_node.
  const auto plain = api::parseTarget("GET", "/api/history?limit=1&until=1001000", "");
  ASSERT_TRUE(plain.has_value());
  const auto row = nlohmann::json::parse(router.route(*plain).body).at(0);
  EXPECT_EQ(row["id"], 1);
  EXPECT_EQ(row["dst_node"], "node-a");
  for (const char* absent :
       {"src_namespace", "src_pod", "src_workload", "src_workload_kind", "src_node",
        "dst_namespace", "dst_pod", "dst_workload", "dst_workload_kind"}) {
    EXPECT_FALSE(row.contains(absent)) << absent;
  }
}

}  // namespace
}  // namespace ayaflow::store
