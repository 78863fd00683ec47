// SPDX-License-Identifier: MIT OR Apache-2.0
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ayaflow/flow/connection_map.h"

namespace ayaflow::flow {
namespace {

// Flow i: local 10.x.y.z:(i % 50000 + 1024) <-> remote 192.0.2.(i % 7):443 (TCP for even
// i, UDP for odd). Distinct for every i < 2^24.
Packet flowPacket(std::uint32_t i, Direction dir, std::uint32_t length, std::uint64_t ts) {
  const IpAddress local = IpAddress::fromV4(0x0a000000u | (i & 0xffffffu));
  const IpAddress remote = IpAddress::fromV4(0xc0000200u | (i % 7));
  const auto local_port = static_cast<std::uint16_t>(i % 50000 + 1024);
  const std::uint16_t remote_port = 443;
  Packet p;
  p.direction = dir;
  if (dir == Direction::kEgress) {
    p.src = local;
    p.dst = remote;
    p.src_port = local_port;
    p.dst_port = remote_port;
  } else {
    p.src = remote;
    p.dst = local;
    p.src_port = remote_port;
    p.dst_port = local_port;
  }
  p.protocol = (i % 2 == 0) ? 6 : 17;
  p.addr_type = 4;
  p.length = length;
  p.timestamp_ns = ts;
  p.ifindex = 2;
  return p;
}

FlowKey flowKey(std::uint32_t i) {
  return FlowKey::fromPacket(flowPacket(i, Direction::kEgress, 1, 1));
}

Packet v6Packet(const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport,
                Direction dir, std::uint32_t length, std::uint64_t ts, std::uint32_t ifindex) {
  Packet p;
  p.src = *IpAddress::parse(src);
  p.dst = *IpAddress::parse(dst);
  p.src_port = sport;
  p.dst_port = dport;
  p.direction = dir;
  p.protocol = 6;
  p.addr_type = 6;
  p.length = length;
  p.timestamp_ns = ts;
  p.ifindex = ifindex;
  return p;
}

TEST(ConnectionMap, BothEndsOnThisHostShareOneEntry) {
  // Two pods of one node: each direction is counted where it leaves its pod, as ingress on
  // that pod's interface (ifindex 7 and 8). The first packet makes the entry; the replies,
  // whose key is the reverse, count in it as the other direction.
  ConnectionMap map;
  map.record(v6Packet("fd00::a", 40000, "fd00::b", 53, Direction::kIngress, 70, 10, 7));
  map.record(v6Packet("fd00::b", 53, "fd00::a", 40000, Direction::kIngress, 200, 20, 8));
  map.record(v6Packet("fd00::a", 40000, "fd00::b", 53, Direction::kIngress, 71, 30, 7));
  EXPECT_EQ(map.size(), 1u);
  const FlowKey key =
      FlowKey::fromPacket(v6Packet("fd00::a", 40000, "fd00::b", 53, Direction::kIngress, 0, 0, 0));
  const auto s = map.find(key);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->packets_count, 3u);
  EXPECT_EQ(s->bytes_received, 141u);  // to the local end, fd00::b (the first packet's dst)
  EXPECT_EQ(s->bytes_sent, 200u);
  EXPECT_EQ(s->ifindex_received, 7u);
  EXPECT_EQ(s->ifindex_sent, 8u);
  EXPECT_EQ(s->first_seen_ns, 10u);
  EXPECT_EQ(s->last_seen_ns, 30u);
}

TEST(ConnectionMap, KnownSequenceGivesExactCounters) {
  ConnectionMap map;
  EXPECT_EQ(map.size(), 0u);
  EXPECT_EQ(map.shardCount(), 16u);
  // One IPv6 connection seen in both directions, out of timestamp order, on two interfaces.
  map.record(v6Packet("2001:db8::a", 40000, "2001:db8::b", 443, Direction::kEgress, 100, 10, 3));
  map.record(v6Packet("2001:db8::b", 443, "2001:db8::a", 40000, Direction::kIngress, 1500, 30, 3));
  map.record(v6Packet("2001:db8::a", 40000, "2001:db8::b", 443, Direction::kEgress, 60, 20, 4));
  map.record(v6Packet("2001:db8::b", 443, "2001:db8::a", 40000, Direction::kIngress, 1400, 5, 5));
  // A second, unrelated connection.
  map.record(flowPacket(1, Direction::kIngress, 77, 100));
  EXPECT_EQ(map.size(), 2u);

  const FlowKey key = FlowKey::fromPacket(
      v6Packet("2001:db8::a", 40000, "2001:db8::b", 443, Direction::kEgress, 0, 0, 0));
  const auto s = map.find(key);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->bytes_sent, 160u);
  EXPECT_EQ(s->bytes_received, 2900u);
  EXPECT_EQ(s->packets_count, 4u);
  EXPECT_EQ(s->first_seen_ns, 5u);
  EXPECT_EQ(s->last_seen_ns, 30u);
  EXPECT_EQ(s->ifindex_sent, 4u);      // the latest packet's from the local end
  EXPECT_EQ(s->ifindex_received, 5u);  // and to it
  EXPECT_EQ(formatConnection(key), "[2001:db8::a]:40000 -> [2001:db8::b]:443");

  const auto other = map.find(flowKey(1));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->bytes_sent, 0u);
  EXPECT_EQ(other->bytes_received, 77u);
  EXPECT_EQ(other->packets_count, 1u);
  EXPECT_EQ(other->first_seen_ns, 100u);
  EXPECT_EQ(other->last_seen_ns, 100u);

  EXPECT_FALSE(map.find(flowKey(2)));
  const auto top = map.top(10);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[0].key, key);
  EXPECT_EQ(top[1].key, flowKey(1));
  EXPECT_TRUE(map.checkInvariantsForTest());
}

TEST(ConnectionMap, ShardAndCapacityAreRoundedToPowersOfTwo) {
  EXPECT_EQ(ConnectionMap(0, 0).shardCount(), 1u);
  EXPECT_EQ(ConnectionMap(1, 1).capacityForTest(), 8u);
  EXPECT_EQ(ConnectionMap(5, 100).shardCount(), 8u);
  EXPECT_EQ(ConnectionMap(5, 100).capacityForTest(), 8u * 128u);
}

TEST(ConnectionMap, HundredThousandFlowsAcrossShardsGrowAndStayExact) {
  ConnectionMap map(16, 8);  // tiny tables: every shard grows many times
  const std::size_t initial_capacity = map.capacityForTest();
  constexpr std::uint32_t kFlows = 100000;
  // Flow i gets (i % 3) + 1 egress packets of length i % 1000 + 1 and one ingress of 40.
  for (std::uint32_t round = 0; round < 3; ++round) {
    for (std::uint32_t i = 0; i < kFlows; ++i) {
      if (round <= i % 3) map.record(flowPacket(i, Direction::kEgress, i % 1000 + 1, 1000 + i));
    }
  }
  for (std::uint32_t i = 0; i < kFlows; ++i) map.record(flowPacket(i, Direction::kIngress, 40, 5));

  EXPECT_EQ(map.size(), kFlows);
  EXPECT_GT(map.capacityForTest(), initial_capacity);
  EXPECT_GE(map.capacityForTest() * 7 / 10, std::size_t{kFlows});
  EXPECT_TRUE(map.checkInvariantsForTest());

  const auto all = map.snapshot();
  ASSERT_EQ(all.size(), kFlows);
  std::unordered_map<FlowKey, ConnectionStats, FlowKeyHash> by_key;
  for (const auto& e : all) by_key.emplace(e.key, e.stats);
  ASSERT_EQ(by_key.size(), kFlows);  // no duplicates
  for (std::uint32_t i = 0; i < kFlows; ++i) {
    const auto it = by_key.find(flowKey(i));
    ASSERT_NE(it, by_key.end()) << i;
    const ConnectionStats& s = it->second;
    const std::uint64_t n = i % 3 + 1;
    ASSERT_EQ(s.packets_count, n + 1) << i;
    ASSERT_EQ(s.bytes_sent, n * (i % 1000 + 1)) << i;
    ASSERT_EQ(s.bytes_received, 40u) << i;
    ASSERT_EQ(s.first_seen_ns, 5u) << i;
    ASSERT_EQ(s.last_seen_ns, 1000u + i) << i;
    const auto found = map.find(flowKey(i));
    ASSERT_TRUE(found) << i;
    ASSERT_EQ(found->packets_count, n + 1) << i;
  }
  EXPECT_FALSE(map.find(flowKey(kFlows)));
}

TEST(ConnectionMap, ExpireRemovesExactlyTheIdleOnes) {
  ConnectionMap map(4, 8);
  constexpr std::uint64_t kTimeout = 50;
  map.record(flowPacket(0, Direction::kEgress, 10, 100));  // 100 + 50 == 150: stays
  map.record(flowPacket(1, Direction::kEgress, 10, 99));   // 99 + 50 < 150: removed
  map.record(flowPacket(2, Direction::kEgress, 10, 0));    // removed
  map.record(flowPacket(3, Direction::kEgress, 10, 149));  // stays
  map.record(flowPacket(4, Direction::kEgress, 10, 200));  // newer than now: stays
  map.record(flowPacket(5, Direction::kEgress, 10, 10));   // old, but refreshed below
  map.record(flowPacket(5, Direction::kIngress, 10, 120));

  EXPECT_EQ(map.expire(150, kTimeout), 2u);
  EXPECT_EQ(map.size(), 4u);
  EXPECT_TRUE(map.find(flowKey(0)));
  EXPECT_FALSE(map.find(flowKey(1)));
  EXPECT_FALSE(map.find(flowKey(2)));
  EXPECT_TRUE(map.find(flowKey(3)));
  EXPECT_TRUE(map.find(flowKey(4)));
  EXPECT_TRUE(map.find(flowKey(5)));
  EXPECT_EQ(map.expire(150, kTimeout), 0u);  // idempotent

  // One past the boundary.
  EXPECT_EQ(map.expire(151, kTimeout), 1u);
  EXPECT_FALSE(map.find(flowKey(0)));
  // A huge timeout never overflows into removing everything.
  EXPECT_EQ(map.expire(std::numeric_limits<std::uint64_t>::max(),
                       std::numeric_limits<std::uint64_t>::max()),
            0u);
  EXPECT_EQ(map.expire(std::numeric_limits<std::uint64_t>::max(), 0), 3u);
  EXPECT_EQ(map.size(), 0u);
  EXPECT_TRUE(map.snapshot().empty());
  EXPECT_TRUE(map.checkInvariantsForTest());

  // Re-inserting an expired connection starts from zero.
  map.record(flowPacket(1, Direction::kIngress, 33, 500));
  const auto s = map.find(flowKey(1));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->packets_count, 1u);
  EXPECT_EQ(s->bytes_received, 33u);
  EXPECT_EQ(s->bytes_sent, 0u);
  EXPECT_EQ(s->first_seen_ns, 500u);
}

TEST(ConnectionMap, TopOrdersByPacketsThenKeyBytes) {
  ConnectionMap map(8, 8);
  EXPECT_TRUE(map.top(5).empty());
  // Packets per flow: 0 -> 5, 1..3 -> 3, 4 -> 1, 5 -> 3.
  const int packets[] = {5, 3, 3, 3, 1, 3};
  for (std::uint32_t i = 0; i < 6; ++i) {
    for (int n = 0; n < packets[i]; ++n) map.record(flowPacket(i, Direction::kEgress, 1, 1));
  }
  std::vector<FlowKey> threes = {flowKey(1), flowKey(2), flowKey(3), flowKey(5)};
  std::sort(threes.begin(), threes.end(),
            [](const FlowKey& a, const FlowKey& b) { return std::memcmp(&a, &b, sizeof a) < 0; });

  EXPECT_TRUE(map.top(0).empty());
  const auto t1 = map.top(1);
  ASSERT_EQ(t1.size(), 1u);
  EXPECT_EQ(t1[0].key, flowKey(0));
  EXPECT_EQ(t1[0].stats.packets_count, 5u);

  const auto t3 = map.top(3);
  ASSERT_EQ(t3.size(), 3u);
  EXPECT_EQ(t3[0].key, flowKey(0));
  EXPECT_EQ(t3[1].key, threes[0]);
  EXPECT_EQ(t3[2].key, threes[1]);

  const auto all = map.top(100);
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0].key, flowKey(0));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(all[1 + i].key, threes[i]);
    EXPECT_EQ(all[1 + i].stats.packets_count, 3u);
  }
  EXPECT_EQ(all[5].key, flowKey(4));
  EXPECT_EQ(all[5].stats.packets_count, 1u);
}

TEST(ConnectionMap, TopMatchesFullSortOnManyFlows) {
  ConnectionMap map(16, 8);
  constexpr std::uint32_t kFlows = 20000;
  for (std::uint32_t i = 0; i < kFlows; ++i) {
    // Packet counts 1..37 with many ties.
    const std::uint32_t n = (i * 2654435761u) % 37 + 1;
    for (std::uint32_t k = 0; k < n; ++k) map.record(flowPacket(i, Direction::kIngress, 1, k));
  }
  auto expected = map.snapshot();
  ASSERT_EQ(expected.size(), kFlows);
  std::sort(expected.begin(), expected.end(),
            [](const ConnectionEntry& a, const ConnectionEntry& b) {
              if (a.stats.packets_count != b.stats.packets_count)
                return a.stats.packets_count > b.stats.packets_count;
              return std::memcmp(&a.key, &b.key, sizeof a.key) < 0;
            });
  for (std::size_t n : {1u, 7u, 50u, 1000u}) {
    const auto top = map.top(n);
    ASSERT_EQ(top.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(top[i].key, expected[i].key) << "n=" << n << " i=" << i;
      ASSERT_EQ(top[i].stats.packets_count, expected[i].stats.packets_count);
    }
  }
}

std::vector<ConnectionEntry> fullSortTop(const ConnectionMap& map, std::size_t n) {
  auto all = map.snapshot();
  std::sort(all.begin(), all.end(), [](const ConnectionEntry& a, const ConnectionEntry& b) {
    if (a.stats.packets_count != b.stats.packets_count)
      return a.stats.packets_count > b.stats.packets_count;
    return std::memcmp(&a.key, &b.key, sizeof a.key) < 0;
  });
  if (all.size() > n) all.resize(n);
  return all;
}

void expectSameTop(const ConnectionMap& map, std::size_t n, const std::string& where) {
  const auto got = map.top(n);
  const auto want = fullSortTop(map, n);
  ASSERT_EQ(got.size(), want.size()) << where << " n=" << n;
  for (std::size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].key, want[i].key) << where << " n=" << n << " i=" << i;
    ASSERT_EQ(got[i].stats.packets_count, want[i].stats.packets_count) << where;
    ASSERT_EQ(got[i].stats.bytes_received, want[i].stats.bytes_received) << where;
  }
}

// The candidate set behind top(n <= kTopTracked) against a full sort, through every way the
// ranking changes: round-robin floods where all counts tie (the worst case: every packet
// moves its connection past the threshold), a few heavy connections, evictions at the cap,
// and expiry of the leaders (the set runs short and is rebuilt).
TEST(ConnectionMap, TopFromCandidatesMatchesFullSort) {
  ConnectionMap map(16, 8, 30000);
  std::uint64_t t = 1;
  auto check = [&](const std::string& where) {
    for (std::size_t n : {std::size_t{1}, std::size_t{50}, ConnectionMap::kTopTracked})
      expectSameTop(map, n, where);
  };
  check("empty");
  for (std::uint32_t i = 0; i < 10; ++i) map.record(flowPacket(i, Direction::kIngress, 1, t++));
  check("ten");
  // Round-robin over 20 000 connections, three rounds: counts tie, then differ by one.
  for (int round = 0; round < 3; ++round) {
    for (std::uint32_t i = 0; i < 20000; ++i) {
      map.record(flowPacket(i, Direction::kIngress, 1, t++));
      if (i % 4999 == 0) check("round robin " + std::to_string(round) + " " + std::to_string(i));
    }
  }
  const std::uint64_t scans = map.topScansForTest();
  // A few heavy ones, interleaved with new connections.
  for (std::uint32_t k = 0; k < 3000; ++k) {
    map.record(flowPacket(100 + k % 7, Direction::kEgress, 1, t++));
    map.record(flowPacket(50000 + k, Direction::kEgress, 1, t++));
    if (k % 500 == 0) check("heavy " + std::to_string(k));
  }
  // While no entry goes away, the candidate set answers everything.
  EXPECT_EQ(map.topScansForTest(), scans);
  // Beyond the cap: evictions (the heavy ones are busy and survive the sampling; tied
  // round-robin candidates may go, and then one scan answers while the set is rebuilt).
  for (std::uint32_t k = 0; k < 20000; ++k) {
    map.record(flowPacket(200000 + k, Direction::kEgress, 1, t++));
    if (k % 2000 == 0) check("evicting " + std::to_string(k));
  }
  EXPECT_GT(map.evicted(), 0u);
  check("after evictions");
  // The leaders expire: the set is short, one scan answers, the writer rebuilds it.
  const std::uint64_t now = t;
  for (std::uint32_t k = 0; k < 100; ++k)
    map.record(flowPacket(300000 + k, Direction::kEgress, 1, now + 1000000));
  map.expire(now + 1000000, 500000);
  EXPECT_EQ(map.size(), 100u);
  check("after expiry");
  map.record(flowPacket(300000, Direction::kEgress, 1, now + 1000001));  // the writer rebuilds
  const std::uint64_t after_rebuild = map.topScansForTest();
  check("rebuilt");
  EXPECT_EQ(map.topScansForTest(), after_rebuild);
  EXPECT_TRUE(map.checkInvariantsForTest());
}

// Deleting every third key (via expire) must leave every other key reachable: checks
// backward-shift deletion, including clusters that wrap around the end of the table.
TEST(ConnectionMap, BackwardShiftDeletionKeepsOtherKeysFindable) {
  struct Case {
    std::size_t shards, capacity;
    std::uint32_t flows;
  };
  // Single shard at exactly max load (44 of 64 slots, long clusters, wrap-around likely),
  // a few small shards, and a large growing table.
  for (const Case c :
       {Case{1, 64, 44}, Case{1, 8, 5}, Case{4, 32, 88}, Case{1, 8, 20000}, Case{16, 8, 30000}}) {
    for (std::uint32_t offset : {0u, 1000000u, 2000000u}) {
      SCOPED_TRACE(testing::Message() << "shards=" << c.shards << " cap=" << c.capacity
                                      << " flows=" << c.flows << " offset=" << offset);
      ConnectionMap map(c.shards, c.capacity);
      for (std::uint32_t i = 0; i < c.flows; ++i) {
        // Every third flow was last seen at 1, the others at 1000.
        const std::uint64_t ts = (i % 3 == 0) ? 1 : 1000;
        map.record(flowPacket(offset + i, Direction::kEgress, i + 1, ts));
      }
      ASSERT_EQ(map.size(), c.flows);
      const std::size_t removed = map.expire(500, 100);
      ASSERT_EQ(removed, (c.flows + 2) / 3);
      ASSERT_EQ(map.size(), c.flows - removed);
      ASSERT_TRUE(map.checkInvariantsForTest());
      for (std::uint32_t i = 0; i < c.flows; ++i) {
        const auto s = map.find(flowKey(offset + i));
        if (i % 3 == 0) {
          ASSERT_FALSE(s) << i;
        } else {
          ASSERT_TRUE(s) << i;
          ASSERT_EQ(s->bytes_sent, i + 1u) << i;
          ASSERT_EQ(s->packets_count, 1u) << i;
        }
      }
      // Put the deleted ones back; everything is findable again.
      for (std::uint32_t i = 0; i < c.flows; i += 3) {
        map.record(flowPacket(offset + i, Direction::kIngress, 7, 2000));
      }
      ASSERT_EQ(map.size(), c.flows);
      ASSERT_TRUE(map.checkInvariantsForTest());
      for (std::uint32_t i = 0; i < c.flows; ++i) {
        const auto s = map.find(flowKey(offset + i));
        ASSERT_TRUE(s) << i;
        ASSERT_EQ(s->packets_count, 1u) << i;
        ASSERT_EQ(i % 3 == 0 ? s->bytes_received : s->bytes_sent, i % 3 == 0 ? 7u : i + 1u);
      }
    }
  }
}

// A burst of 100k connections grows every shard; once all but a few expire, expire()
// gives the memory back: capacity returns to the initial one and the survivors are intact.
TEST(ConnectionMap, ShrinksAfterBurstAndKeepsSurvivorsExact) {
  for (const std::size_t initial : {std::size_t{256}, std::size_t{8}}) {
    SCOPED_TRACE(testing::Message() << "initial capacity per shard " << initial);
    ConnectionMap map(16, initial);
    const std::size_t initial_capacity = map.capacityForTest();
    ASSERT_EQ(initial_capacity, 16 * initial);
    constexpr std::uint32_t kFlows = 100000;
    constexpr std::uint32_t kKeep = 10;
    // Flow i: one egress packet of i % 1000 + 1 bytes at time i + 1; even flows also
    // one ingress packet of 40 bytes at time 0.
    for (std::uint32_t i = 0; i < kFlows; ++i) {
      map.record(flowPacket(i, Direction::kEgress, i % 1000 + 1, i + 1));
      if (i % 2 == 0) map.record(flowPacket(i, Direction::kIngress, 40, 0));
    }
    ASSERT_EQ(map.size(), kFlows);
    ASSERT_GE(map.capacityForTest() * 7 / 10, std::size_t{kFlows});

    // Removes every flow with i + 1 < kFlows - kKeep + 1: all but the last kKeep.
    EXPECT_EQ(map.expire(kFlows - kKeep + 1, 0), kFlows - kKeep);
    EXPECT_EQ(map.size(), kKeep);
    EXPECT_TRUE(map.checkInvariantsForTest());  // includes: no shard left under 1/8 full
    if (initial == 256) {
      // At most 10 entries per shard, under 1/8 of 256: every shard is back to 256.
      EXPECT_EQ(map.capacityForTest(), initial_capacity);
    } else {
      // A shard above its initial 8 slots keeps at most 8 slots per entry.
      EXPECT_LE(map.capacityForTest(), 16 * 8 + 8 * std::size_t{kKeep});
    }

    const auto all = map.snapshot();
    ASSERT_EQ(all.size(), kKeep);
    for (std::uint32_t i = 0; i < kFlows; ++i) {
      const auto s = map.find(flowKey(i));
      if (i < kFlows - kKeep) {
        ASSERT_FALSE(s) << i;
        continue;
      }
      ASSERT_TRUE(s) << i;
      EXPECT_EQ(s->packets_count, i % 2 == 0 ? 2u : 1u) << i;
      EXPECT_EQ(s->bytes_sent, i % 1000 + 1u) << i;
      EXPECT_EQ(s->bytes_received, i % 2 == 0 ? 40u : 0u) << i;
      EXPECT_EQ(s->first_seen_ns, i % 2 == 0 ? 0u : i + 1u) << i;
      EXPECT_EQ(s->last_seen_ns, i + 1u) << i;
      EXPECT_EQ(s->ifindex_sent, 2u) << i;
    }

    // The shrunk map works as before: a second burst grows it again, exactly.
    for (std::uint32_t i = 0; i < kFlows; ++i) {
      map.record(flowPacket(i, Direction::kIngress, 7, 2 * kFlows));
    }
    EXPECT_EQ(map.size(), kFlows);
    EXPECT_TRUE(map.checkInvariantsForTest());
    const auto again = map.find(flowKey(kFlows - 1));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->packets_count, 2u);
    EXPECT_EQ(again->bytes_received, 7u);
    const auto fresh = map.find(flowKey(0));
    ASSERT_TRUE(fresh);
    EXPECT_EQ(fresh->packets_count, 1u);
    EXPECT_EQ(fresh->bytes_received, 7u);

    // Everything expires: back to the initial capacity, never below it.
    EXPECT_EQ(map.expire(std::numeric_limits<std::uint64_t>::max(), 0), kFlows);
    EXPECT_EQ(map.capacityForTest(), initial_capacity);
    EXPECT_EQ(map.expire(std::numeric_limits<std::uint64_t>::max(), 0), 0u);
    EXPECT_EQ(map.capacityForTest(), initial_capacity);
    EXPECT_TRUE(map.checkInvariantsForTest());
  }
}

// One shard starting at 8 slots. Grows at 0.7 full, shrinks below 1/8 full: a count that
// moves back and forth near either boundary does not resize each time. expire(t, 0)
// removes exactly the flows last seen before t.
TEST(ConnectionMap, ShrinkAndGrowDoNotThrash) {
  ConnectionMap map(1, 8);
  // Flow i < 359 is last seen at i + 1.
  for (std::uint32_t i = 0; i < 358; ++i) map.record(flowPacket(i, Direction::kEgress, 1, i + 1));
  EXPECT_EQ(map.capacityForTest(), 512u);  // 358 == 0.7 * 512, rounded down: still fits
  map.record(flowPacket(358, Direction::kEgress, 1, 359));
  EXPECT_EQ(map.capacityForTest(), 1024u);  // the 359th grows it

  // Down to exactly 1/8 of 1024: no shrink, however often expire runs.
  EXPECT_EQ(map.expire(232, 0), 231u);
  EXPECT_EQ(map.size(), 128u);
  EXPECT_EQ(map.capacityForTest(), 1024u);
  EXPECT_EQ(map.expire(232, 0), 0u);
  EXPECT_EQ(map.capacityForTest(), 1024u);
  // One fewer: halves once (127 is not under 1/8 of 512). Survivors: times 233..359.
  EXPECT_EQ(map.expire(233, 0), 1u);
  EXPECT_EQ(map.size(), 127u);
  EXPECT_EQ(map.capacityForTest(), 512u);
  EXPECT_TRUE(map.checkInvariantsForTest());

  // Bursts that fill the table up to its growth point and expire again: no resize at all.
  std::uint32_t next = 100000;
  for (int round = 0; round < 5; ++round) {
    for (int k = 0; k < 358 - 127; ++k) map.record(flowPacket(next++, Direction::kEgress, 1, 1));
    ASSERT_EQ(map.size(), 358u);
    ASSERT_EQ(map.capacityForTest(), 512u) << round;
    ASSERT_EQ(map.expire(233, 0), 231u);
    ASSERT_EQ(map.capacityForTest(), 512u) << round;
    ASSERT_TRUE(map.checkInvariantsForTest());
  }

  // 232 long-lived flows at times 1000..1231 take it across the growth point; one flow
  // more and one fewer, repeatedly, keeps it there (359 is far above 1024 / 8).
  std::vector<std::uint32_t> long_lived;
  for (std::uint32_t k = 0; k < 232; ++k) {
    long_lived.push_back(next);
    map.record(flowPacket(next++, Direction::kEgress, 1, 1000 + k));
  }
  EXPECT_EQ(map.size(), 359u);
  EXPECT_EQ(map.capacityForTest(), 1024u);
  for (int round = 0; round < 5; ++round) {
    map.record(flowPacket(next++, Direction::kEgress, 1, 1));
    ASSERT_EQ(map.expire(233, 0), 1u);
    ASSERT_EQ(map.size(), 359u);
    ASSERT_EQ(map.capacityForTest(), 1024u) << round;
  }

  // Down to 63 in one pass (times 1169..1231 stay): halved twice, as 63 < 128 and
  // 63 < 64 but 63 >= 32.
  EXPECT_EQ(map.expire(1169, 0), 359u - 63u);
  EXPECT_EQ(map.size(), 63u);
  EXPECT_EQ(map.capacityForTest(), 256u);
  EXPECT_TRUE(map.checkInvariantsForTest());
  for (std::uint32_t i = 0; i < 359; ++i) ASSERT_FALSE(map.find(flowKey(i))) << i;
  for (std::uint32_t k = 0; k < 232; ++k) {
    const auto s = map.find(flowKey(long_lived[k]));
    if (k < 169) {
      ASSERT_FALSE(s) << k;
    } else {
      ASSERT_TRUE(s) << k;
      ASSERT_EQ(s->packets_count, 1u);
      ASSERT_EQ(s->last_seen_ns, 1000u + k);
    }
  }

  // Nothing left: back to the initial 8 slots.
  EXPECT_EQ(map.expire(std::numeric_limits<std::uint64_t>::max(), 0), 63u);
  EXPECT_EQ(map.capacityForTest(), 8u);
  EXPECT_TRUE(map.checkInvariantsForTest());
}

// Readers run while the writer grows and shrinks the shards several times over.
TEST(ConnectionMap, ConcurrentReadersDuringShrink) {
  ConnectionMap map(4, 8);
  constexpr std::uint32_t kLen = 10;
  constexpr std::uint32_t kKeep = 50;  // flows 0..49 live throughout
  constexpr std::uint32_t kBurst = 20000;
  constexpr int kCycles = 4;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> bad{0};
  for (std::uint32_t i = 0; i < kKeep; ++i) {
    map.record(flowPacket(i, Direction::kEgress, kLen, 1000000));
  }

  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      std::uint32_t iter = 0;
      while (!done.load(std::memory_order_acquire) || iter < 5) {
        switch ((iter + static_cast<std::uint32_t>(r)) % 3) {
          case 0:
            for (const auto& e : map.top(20)) {
              if (e.stats.bytes_sent != e.stats.packets_count * kLen) bad.fetch_add(1);
            }
            break;
          case 1:
            for (const auto& e : map.snapshot()) {
              if (e.stats.bytes_sent != e.stats.packets_count * kLen) bad.fetch_add(1);
            }
            break;
          case 2: {
            // A kept flow is always present.
            const auto s = map.find(flowKey(iter % kKeep));
            if (!s || s->bytes_sent != s->packets_count * kLen) bad.fetch_add(1);
            break;
          }
        }
        ++iter;
      }
    });
  }

  std::thread writer([&] {
    const std::size_t small = map.capacityForTest();
    for (int c = 0; c < kCycles; ++c) {
      const std::uint32_t base = 1000 + static_cast<std::uint32_t>(c) * kBurst;
      for (std::uint32_t i = 0; i < kBurst; ++i) {
        map.record(flowPacket(base + i, Direction::kEgress, kLen, 1));
      }
      for (std::uint32_t i = 0; i < kKeep; ++i) {
        map.record(flowPacket(i, Direction::kEgress, kLen, 1000000));
      }
      if (map.capacityForTest() <= small) bad.fetch_add(1000);  // it did grow
      map.expire(2, 0);  // the burst goes, the kept flows stay
      if (map.size() != kKeep) bad.fetch_add(1000);
    }
    done.store(true, std::memory_order_release);
  });
  writer.join();
  for (auto& t : readers) t.join();

  EXPECT_EQ(bad.load(), 0u);
  EXPECT_TRUE(map.checkInvariantsForTest());
  EXPECT_LE(map.capacityForTest(), 8u * kKeep + 4u * 8u);  // <= 8 slots an entry, or the floor
  for (std::uint32_t i = 0; i < kKeep; ++i) {
    const auto s = map.find(flowKey(i));
    ASSERT_TRUE(s) << i;
    EXPECT_EQ(s->packets_count, kCycles + 1u);
    EXPECT_EQ(s->bytes_sent, (kCycles + 1u) * kLen);
  }
}

// One writer records a known set of packets (with growth and an expiry pass) while four
// readers call top()/size()/snapshot()/find(). Readers only see per-entry consistent
// copies; the final state must be exact.
TEST(ConnectionMap, ConcurrentReadersDuringWrites) {
  ConnectionMap map(16, 8);
  constexpr std::uint32_t kLen = 100;
  constexpr std::uint32_t kOldFlows = 3000;  // expired in the middle
  constexpr std::uint32_t kFlows = 5000;     // kept
  constexpr std::uint32_t kRounds = 20;
  constexpr std::uint32_t kOldBase = 10000000;

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> bad_entries{0};
  std::atomic<std::uint64_t> reads{0};
  std::atomic<std::uint64_t> entries_seen{0};

  auto checkEntry = [&](const ConnectionEntry& e) {
    const auto& s = e.stats;
    const bool ok = s.packets_count >= 1 && s.bytes_sent % kLen == 0 &&
                    s.bytes_received % kLen == 0 &&
                    s.bytes_sent + s.bytes_received == s.packets_count * kLen &&
                    s.first_seen_ns <= s.last_seen_ns && (s.ifindex_sent | s.ifindex_received) == 2;
    if (!ok) bad_entries.fetch_add(1, std::memory_order_relaxed);
  };

  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&, r] {
      std::uint32_t iter = 0;
      // At least a few passes even if the writer finishes first.
      while (!done.load(std::memory_order_acquire) || iter < 5) {
        switch ((iter + static_cast<std::uint32_t>(r)) % 4) {
          case 0:
            for (const auto& e : map.top(50)) checkEntry(e);
            break;
          case 1: {
            const auto snap = map.snapshot();
            entries_seen.fetch_add(snap.size(), std::memory_order_relaxed);
            for (const auto& e : snap) checkEntry(e);
            break;
          }
          case 2:
            if (map.size() > kOldFlows + kFlows) bad_entries.fetch_add(1);
            break;
          case 3:
            if (const auto s = map.find(flowKey(iter % kFlows))) {
              checkEntry(ConnectionEntry{flowKey(iter % kFlows), *s});
            }
            break;
        }
        ++iter;
        reads.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  std::thread writer([&] {
    for (std::uint32_t i = 0; i < kOldFlows; ++i) {
      map.record(flowPacket(kOldBase + i, Direction::kEgress, kLen, 1));
    }
    for (std::uint32_t round = 0; round < kRounds; ++round) {
      for (std::uint32_t i = 0; i < kFlows; ++i) {
        const Direction d = ((i + round) % 2 == 0) ? Direction::kEgress : Direction::kIngress;
        map.record(flowPacket(i, d, kLen, 1000 + round));
      }
      if (round == kRounds / 2) map.expire(1000, 500);  // drops exactly the old flows
    }
    done.store(true, std::memory_order_release);
  });

  writer.join();
  for (auto& t : readers) t.join();

  EXPECT_EQ(bad_entries.load(), 0u);
  EXPECT_GT(reads.load(), 0u);
  EXPECT_EQ(map.size(), kFlows);
  EXPECT_TRUE(map.checkInvariantsForTest());
  const auto snap = map.snapshot();
  ASSERT_EQ(snap.size(), kFlows);
  std::uint64_t total_packets = 0;
  for (const auto& e : snap) total_packets += e.stats.packets_count;
  EXPECT_EQ(total_packets, std::uint64_t{kFlows} * kRounds);
  for (std::uint32_t i = 0; i < kFlows; ++i) {
    const auto s = map.find(flowKey(i));
    ASSERT_TRUE(s) << i;
    EXPECT_EQ(s->packets_count, kRounds);
    EXPECT_EQ(s->bytes_sent, kRounds / 2 * kLen);
    EXPECT_EQ(s->bytes_received, kRounds / 2 * kLen);
    EXPECT_EQ(s->first_seen_ns, 1000u);
    EXPECT_EQ(s->last_seen_ns, 1000u + kRounds - 1);
  }
  for (std::uint32_t i = 0; i < kOldFlows; ++i) EXPECT_FALSE(map.find(flowKey(kOldBase + i)));
}

// --- The cap on live entries -----------------------------------------------------------

TEST(ConnectionMap, CapLowersShardCountAndBoundsTables) {
  const ConnectionMap tiny(16, 256, 5);
  EXPECT_EQ(tiny.maxEntries(), 5u);
  EXPECT_EQ(tiny.shardCount(), 4u);           // largest power of two not above 5
  EXPECT_EQ(tiny.capacityForTest(), 4u * 8);  // initial capacity clamped to the cap's table
  EXPECT_EQ(ConnectionMap(16, 256, 0).maxEntries(), 1u);
  EXPECT_EQ(ConnectionMap(16, 256, 0).shardCount(), 1u);
  EXPECT_EQ(ConnectionMap().maxEntries(), ConnectionMap::kDefaultMaxEntries);
  EXPECT_EQ(ConnectionMap(16, 256, std::numeric_limits<std::size_t>::max()).maxEntries(),
            std::size_t{1} << 30);

  // Few entries: never more than the cap, whatever arrives.
  ConnectionMap map(16, 256, 5);
  for (std::uint32_t i = 0; i < 1000; ++i) {
    map.record(flowPacket(i, Direction::kEgress, 1, i + 1));
    ASSERT_LE(map.size(), 5u) << i;
  }
  EXPECT_EQ(map.size(), 5u);
  EXPECT_EQ(map.evicted(), 995u);
  EXPECT_TRUE(map.checkInvariantsForTest());
}

// The default cap: 16 shards of at most 16384 slots (the memory the class comment states).
TEST(ConnectionMap, DefaultCapTableSize) {
  ConnectionMap map;
  constexpr std::uint32_t kFlows = ConnectionMap::kDefaultMaxEntries + 20000;
  for (std::uint32_t i = 0; i < kFlows; ++i) map.record(flowPacket(i, Direction::kEgress, 1, i));
  EXPECT_EQ(map.size(), ConnectionMap::kDefaultMaxEntries);
  EXPECT_EQ(map.evicted(), 20000u);
  EXPECT_EQ(map.capacityForTest(), 16u * 16384u);
  // At the cap each shard's entry array holds exactly its share (rounded up to a page) and
  // its index 16384 slots of 8 B: 180 000 x 128 B + 16 x 16384 x 8 B + a page and the
  // shard's own struct per shard, 25.2 MB.
  EXPECT_LE(map.memoryBytes(), ConnectionMap::kDefaultMaxEntries * sizeof(ConnectionEntry) +
                                   16u * 16384u * 8u + 16u * (4096u + 128u));
  EXPECT_TRUE(map.checkInvariantsForTest());
}

// Memory follows the live entries, not the index's capacity: 100 000 connections take
// their 128 B each, plus at most 23 B of index (load 0.35 to 0.7), plus at most as much
// again of entry array not yet written (doubling; those pages are not resident).
TEST(ConnectionMap, MemoryPerConnection) {
  ConnectionMap map;
  constexpr std::uint32_t kFlows = 100000;
  const std::size_t empty = map.memoryBytes();
  for (std::uint32_t i = 0; i < kFlows; ++i) map.record(flowPacket(i, Direction::kEgress, 1, i));
  ASSERT_EQ(map.size(), kFlows);
  const std::size_t used = map.memoryBytes() - empty;
  EXPECT_LE(used, kFlows * (2 * sizeof(ConnectionEntry) + 23));
  EXPECT_LE(map.capacityForTest() * 8u, kFlows * 23u);
  // Once they expire, the arrays go back to a page per shard and the index to its start.
  EXPECT_EQ(map.expire(kFlows + 10, 1), kFlows);
  EXPECT_LE(map.memoryBytes(), empty + 16u * 4096u);
  EXPECT_TRUE(map.checkInvariantsForTest());
}

// A shard holding at most kEvictionSample entries samples all of them: exact LRU.
TEST(ConnectionMap, EvictsTheIdlest) {
  constexpr std::uint32_t kCap = ConnectionMap::kEvictionSample;
  ConnectionMap map(1, 8, kCap);
  for (std::uint32_t i = 0; i < kCap; ++i)
    map.record(flowPacket(i, Direction::kEgress, 1, 100 + i));
  // Flows 0..7 are busy again; 8 is now the idlest, then 9, ...
  for (std::uint32_t i = 0; i < 8; ++i) map.record(flowPacket(i, Direction::kIngress, 5, 1000 + i));
  EXPECT_EQ(map.evicted(), 0u);

  map.record(flowPacket(100, Direction::kEgress, 1, 2000));
  EXPECT_EQ(map.size(), kCap);
  EXPECT_EQ(map.evicted(), 1u);
  EXPECT_FALSE(map.find(flowKey(8)));
  EXPECT_TRUE(map.find(flowKey(100)));
  map.record(flowPacket(101, Direction::kEgress, 1, 2001));
  EXPECT_FALSE(map.find(flowKey(9)));
  // Out-of-order timestamps: last_seen_ns decides, not insertion order.
  map.record(flowPacket(10, Direction::kIngress, 1, 5000));
  map.record(flowPacket(102, Direction::kEgress, 1, 2002));
  EXPECT_TRUE(map.find(flowKey(10)));
  EXPECT_FALSE(map.find(flowKey(11)));
  EXPECT_EQ(map.evicted(), 3u);
  // The survivors' counters are untouched.
  for (std::uint32_t i = 0; i < 8; ++i) {
    const auto s = map.find(flowKey(i));
    ASSERT_TRUE(s) << i;
    EXPECT_EQ(s->packets_count, 2u);
    EXPECT_EQ(s->bytes_sent, 1u);
    EXPECT_EQ(s->bytes_received, 5u);
    EXPECT_EQ(s->first_seen_ns, 100u + i);
    EXPECT_EQ(s->last_seen_ns, 1000u + i);
  }
  // An evicted connection's next packet starts a new entry from zero.
  map.record(flowPacket(8, Direction::kIngress, 9, 3000));
  const auto again = map.find(flowKey(8));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->packets_count, 1u);
  EXPECT_EQ(again->bytes_received, 9u);
  EXPECT_EQ(again->bytes_sent, 0u);
  EXPECT_EQ(map.size(), kCap);
  EXPECT_TRUE(map.checkInvariantsForTest());
}

// Sampled eviction over large shards: busy connections survive a stream of new ones.
TEST(ConnectionMap, BusyConnectionsSurviveEviction) {
  constexpr std::uint32_t kCap = 16384;
  ConnectionMap map(16, 8, kCap);
  for (std::uint32_t i = 0; i < kCap; ++i) map.record(flowPacket(i, Direction::kEgress, 1, 1));
  // One in ten is busy.
  std::vector<std::uint32_t> busy_flows;
  for (std::uint32_t i = 0; i < kCap; i += 10) {
    if (!map.find(flowKey(i))) continue;  // evicted while the shards filled up
    map.record(flowPacket(i, Direction::kIngress, 1, 2));
    busy_flows.push_back(i);
  }
  const std::uint32_t busy = static_cast<std::uint32_t>(busy_flows.size());
  // A quarter of the cap in new connections, each busier than every old one.
  for (std::uint32_t i = 0; i < kCap / 4; ++i) {
    map.record(flowPacket(1000000 + i, Direction::kEgress, 1, 3));
  }
  // Each shard holds its share of the cap, and shards fill unevenly: the map is at the
  // cap once every shard is, and evictions account for every connection missing.
  EXPECT_EQ(map.size(), kCap);
  EXPECT_EQ(map.evicted() + map.size(), kCap + kCap / 4);
  std::uint32_t busy_alive = 0, new_alive = 0;
  for (std::uint32_t i : busy_flows) busy_alive += map.find(flowKey(i)) ? 1 : 0;
  for (std::uint32_t i = 0; i < kCap / 4; ++i) new_alive += map.find(flowKey(1000000 + i)) ? 1 : 0;
  // Idle ones are always in reach (about 2 in 3 entries at the end): a busy one goes only
  // if all 16 sampled entries are busy or new (p < 0.4^16 per eviction).
  EXPECT_GE(busy_alive, busy * 99 / 100);
  EXPECT_GE(new_alive, kCap / 4 * 99 / 100);
  EXPECT_TRUE(map.checkInvariantsForTest());
}

// Ten times the cap in distinct connections, each with a few packets in a row: the map
// stays at the cap, its tables never grow past the cap's, the survivors' counts are exact
// and evictions plus live entries account for every connection.
TEST(ConnectionMap, ChurnTenTimesTheCapStaysBoundedAndExact) {
  constexpr std::uint32_t kCap = 4096;
  constexpr std::uint32_t kFlows = 10 * kCap;
  ConnectionMap map(16, 8, kCap);
  std::size_t max_capacity = 0;
  std::uint64_t t = 0;
  for (std::uint32_t i = 0; i < kFlows; ++i) {
    const std::uint32_t n = i % 4 + 1;
    for (std::uint32_t k = 0; k < n; ++k) {
      map.record(flowPacket(i, k % 2 ? Direction::kIngress : Direction::kEgress, i % 100 + k, ++t));
    }
    ASSERT_LE(map.size(), kCap) << i;
    if (i % 512 == 0) max_capacity = std::max(max_capacity, map.capacityForTest());
  }
  max_capacity = std::max(max_capacity, map.capacityForTest());
  // 4096 / 16 = 256 per shard -> 512 slots (maxEntries(512) = 358 >= 256).
  EXPECT_LE(max_capacity, 16u * 512u);
  EXPECT_EQ(map.size(), kCap);
  EXPECT_EQ(map.evicted() + map.size(), kFlows);
  EXPECT_TRUE(map.checkInvariantsForTest());

  std::size_t recent_alive = 0;
  for (const ConnectionEntry& e : map.snapshot()) {
    // Recover i from the key: local address 10.x.y.z carries it.
    const std::uint32_t i = (std::uint32_t{e.key.local.bytes[13]} << 16) |
                            (std::uint32_t{e.key.local.bytes[14]} << 8) | e.key.local.bytes[15];
    ASSERT_EQ(e.key, flowKey(i));
    const std::uint32_t n = i % 4 + 1;
    std::uint64_t sent = 0, received = 0;
    for (std::uint32_t k = 0; k < n; ++k) (k % 2 ? received : sent) += i % 100 + k;
    ASSERT_EQ(e.stats.packets_count, n) << i;
    ASSERT_EQ(e.stats.bytes_sent, sent) << i;
    ASSERT_EQ(e.stats.bytes_received, received) << i;
    if (i >= kFlows - kCap / 2) ++recent_alive;
  }
  // Approximately LRU: the most recent half-cap of connections is nearly all there.
  EXPECT_GE(recent_alive, kCap / 2 * 95 / 100);

  // Expiry still works at the cap and shrinks the tables.
  EXPECT_EQ(map.expire(std::numeric_limits<std::uint64_t>::max(), 0), kCap);
  EXPECT_EQ(map.size(), 0u);
  EXPECT_EQ(map.capacityForTest(), 16u * 8u);
  EXPECT_TRUE(map.checkInvariantsForTest());
}

}  // namespace
}  // namespace ayaflow::flow
