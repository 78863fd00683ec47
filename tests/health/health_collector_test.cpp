// SPDX-License-Identifier: MIT OR Apache-2.0
// HealthCollector on maps the test controls: deltas sum to the cumulative values, RTT only
// when a new sample came, drops merged per flow with the most counted reason, keys that
// vanish are forgotten, values that restart count from zero, idle keys are deleted.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <vector>

#include "ayaflow/health/health_collector.h"

namespace ayaflow::health {
namespace {

constexpr std::uint64_t kSecond = 1000000000ULL;

ayaflow_tuple tuple(std::uint8_t last_octet, std::uint16_t sport, std::uint16_t dport) {
  ayaflow_tuple t{};
  t.src_addr[10] = t.src_addr[11] = 0xff;
  t.dst_addr[10] = t.dst_addr[11] = 0xff;
  t.src_addr[12] = 10;
  t.src_addr[15] = last_octet;
  t.dst_addr[12] = 10;
  t.dst_addr[15] = 200;
  t.src_port = sport;
  t.dst_port = dport;
  t.protocol = 6;
  t.addr_type = 4;
  return t;
}

bool operator==(const ayaflow_tuple& a, const ayaflow_tuple& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

class FakeMaps final : public HealthMaps {
 public:
  std::vector<std::pair<ayaflow_tuple, ayaflow_sock_health>> sockets;
  std::vector<std::pair<ayaflow_drop_key, ayaflow_drop_value>> drops;
  std::vector<ayaflow_tuple> removed_sockets;
  std::vector<ayaflow_drop_key> removed_drops;

  void forEachSocket(const SocketVisitor& visit) const override {
    for (const auto& [k, v] : sockets) visit(k, v);
  }
  void forEachDrop(const DropVisitor& visit) const override {
    for (const auto& [k, v] : drops) visit(k, v);
  }
  void removeSockets(const std::vector<ayaflow_tuple>& keys) override {
    removed_sockets.insert(removed_sockets.end(), keys.begin(), keys.end());
  }
  void removeDrops(const std::vector<ayaflow_drop_key>& keys) override {
    removed_drops.insert(removed_drops.end(), keys.begin(), keys.end());
  }
};

std::vector<HealthUpdate> run(HealthCollector& c, std::uint64_t now_ns) {
  std::vector<HealthUpdate> out;
  c.collect([&](const HealthUpdate& u) { out.push_back(u); }, now_ns);
  return out;
}

TEST(HealthCollector, RetransmitDeltasSumToTheCumulativeValue) {
  FakeMaps maps;
  HealthCollector c(maps);
  const ayaflow_tuple t = tuple(1, 40000, 443);
  maps.sockets = {{t, ayaflow_sock_health{5, 0, 0, 0}}};
  auto u = run(c, 1 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_TRUE(u[0].is_socket);
  EXPECT_TRUE(u[0].tuple == t);
  EXPECT_EQ(u[0].retransmits, 5u);
  EXPECT_EQ(u[0].srtt_us, 0u);
  maps.sockets[0].second.retrans_segs = 8;
  u = run(c, 2 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].retransmits, 3u);
  EXPECT_TRUE(run(c, 3 * kSecond).empty());  // nothing new: no update
}

TEST(HealthCollector, RttOnlyForANewSample) {
  FakeMaps maps;
  HealthCollector c(maps);
  const ayaflow_tuple t = tuple(2, 40001, 80);
  maps.sockets = {{t, ayaflow_sock_health{0, 100, 20500, 0}}};
  auto u = run(c, 1 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].srtt_us, 20500u);
  EXPECT_EQ(u[0].timestamp_ns, 100u);
  EXPECT_TRUE(run(c, 2 * kSecond).empty());
  maps.sockets[0].second = ayaflow_sock_health{1, 200, 21000, 0};
  u = run(c, 3 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].srtt_us, 21000u);
  EXPECT_EQ(u[0].retransmits, 1u);
}

TEST(HealthCollector, DropsMergedPerFlowWithTheMostCountedReason) {
  FakeMaps maps;
  HealthCollector c(maps);
  const ayaflow_tuple t = tuple(3, 5000, 53);
  maps.drops = {{ayaflow_drop_key{t, 7, 0}, ayaflow_drop_value{3, 300, 10}},
                {ayaflow_drop_key{t, 9, 0}, ayaflow_drop_value{5, 500, 20}}};
  auto u = run(c, 1 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_FALSE(u[0].is_socket);
  EXPECT_EQ(u[0].drops, 8u);
  EXPECT_EQ(u[0].drop_bytes, 800u);
  EXPECT_EQ(u[0].drop_reason, 9u);
  EXPECT_EQ(u[0].timestamp_ns, 20u);
  // Only reason 7 moves now: it is this delta's reason.
  maps.drops[0].second = ayaflow_drop_value{6, 600, 30};
  u = run(c, 2 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].drops, 3u);
  EXPECT_EQ(u[0].drop_bytes, 300u);
  EXPECT_EQ(u[0].drop_reason, 7u);
}

TEST(HealthCollector, VanishedKeysAreForgottenAndRestartFromZero) {
  FakeMaps maps;
  HealthCollector c(maps);
  const ayaflow_tuple t = tuple(4, 40002, 22);
  maps.sockets = {{t, ayaflow_sock_health{10, 0, 0, 0}}};
  run(c, 1 * kSecond);
  EXPECT_EQ(c.trackedSockets(), 1u);
  maps.sockets.clear();  // evicted from the LRU map
  EXPECT_TRUE(run(c, 2 * kSecond).empty());
  EXPECT_EQ(c.trackedSockets(), 0u);
  maps.sockets = {{t, ayaflow_sock_health{2, 0, 0, 0}}};  // back, counting from zero
  auto u = run(c, 3 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].retransmits, 2u);
  // Evicted and back between two passes with less than before: all of it is new.
  maps.sockets[0].second.retrans_segs = 1;
  u = run(c, 4 * kSecond);
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].retransmits, 1u);
}

TEST(HealthCollector, IdleKeysAreDeletedFromTheMaps) {
  FakeMaps maps;
  CollectorOptions options;
  options.idle_timeout = std::chrono::seconds(10);
  HealthCollector c(maps, options);
  const ayaflow_tuple t = tuple(5, 40003, 8080);
  const ayaflow_drop_key dk{tuple(6, 1, 2), 7, 0};
  maps.sockets = {{t, ayaflow_sock_health{1, 0, 0, 0}}};
  maps.drops = {{dk, ayaflow_drop_value{1, 100, 1}}};
  run(c, 1 * kSecond);
  run(c, 5 * kSecond);
  EXPECT_TRUE(maps.removed_sockets.empty());
  run(c, 11 * kSecond);
  ASSERT_EQ(maps.removed_sockets.size(), 1u);
  EXPECT_TRUE(maps.removed_sockets[0] == t);
  ASSERT_EQ(maps.removed_drops.size(), 1u);
  EXPECT_EQ(maps.removed_drops[0].reason, 7u);
  EXPECT_EQ(c.trackedSockets(), 0u);
  EXPECT_EQ(c.trackedDrops(), 0u);
}

}  // namespace
}  // namespace ayaflow::health
