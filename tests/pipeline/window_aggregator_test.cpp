// SPDX-License-Identifier: MIT OR Apache-2.0
// WindowAggregator: pure arithmetic, no I/O (unit tier).
#include "ayaflow/pipeline/window_aggregator.h"

#include <gtest/gtest.h>

#include "flow_packets.h"

namespace ayaflow::pipeline {
namespace {

using flow::Direction;
using test::makePacket;

constexpr std::int64_t kW = 10000;             // 10 s windows
constexpr std::int64_t kBase = 1700000000000;  // a multiple of kW: a window starts here

TEST(WindowAggregator, SumsPerDirectionalFlowPerWindowExactly) {
  WindowAggregator agg(kW);
  // Flow A egress: 10 packets of 100..109 bytes, out of order in time.
  for (int i = 0; i < 10; ++i) {
    agg.add(makePacket(1, 40000, 443, 6, Direction::kEgress, 100 + i), kBase + 500 - i * 10,
            kBase + 500 - i * 10);
  }
  // Same addresses and ports, ingress: a separate row.
  agg.add(makePacket(1, 40000, 443, 6, Direction::kIngress, 1500), kBase + 7, kBase + 7);
  agg.add(makePacket(1, 40000, 443, 6, Direction::kIngress, 1500), kBase + 8, kBase + 8);
  // Same 5-tuple but UDP: another row.
  agg.add(makePacket(1, 40000, 443, 17, Direction::kEgress, 60), kBase + 9, kBase + 9);
  EXPECT_EQ(agg.openFlows(), 3u);

  std::vector<FlowRecord> rows;
  EXPECT_EQ(agg.takeAll(rows), 3u);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(agg.openFlows(), 0u);
  // Ordered by first timestamp.
  EXPECT_EQ(rows[0].first_ms, kBase + 7);
  EXPECT_EQ(rows[0].direction, Direction::kIngress);
  EXPECT_EQ(rows[0].packets, 2u);
  EXPECT_EQ(rows[0].bytes, 3000u);
  EXPECT_EQ(rows[1].first_ms, kBase + 9);
  EXPECT_EQ(rows[1].protocol, 17);
  EXPECT_EQ(rows[1].packets, 1u);
  EXPECT_EQ(rows[1].bytes, 60u);
  EXPECT_EQ(rows[2].first_ms, kBase + 500 - 90);  // the earliest packet's
  EXPECT_EQ(rows[2].direction, Direction::kEgress);
  EXPECT_EQ(rows[2].packets, 10u);
  EXPECT_EQ(rows[2].bytes, 1045u);  // 100 + ... + 109
  EXPECT_EQ(rows[2].src_port, 40000);
  EXPECT_EQ(rows[2].dst_port, 443);
}

TEST(WindowAggregator, WindowsAreAlignedAndCloseAtTheirEnd) {
  WindowAggregator agg(kW);
  const auto p = makePacket(2, 1234, 53, 17, Direction::kEgress, 80);
  agg.add(p, kBase, kBase);                    // first ms of window k
  agg.add(p, kBase + kW - 1, kBase + kW - 1);  // last ms of window k
  agg.add(p, kBase + kW, kBase + kW);          // first ms of window k+1
  EXPECT_EQ(agg.openFlows(), 2u);
  EXPECT_EQ(agg.nextWindowEnd(), kBase + kW);

  std::vector<FlowRecord> rows;
  EXPECT_EQ(agg.takeClosed(kBase + kW - 1, rows), 0u);  // window k still open
  EXPECT_EQ(agg.takeClosed(kBase + kW, rows), 1u);      // ended exactly now
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].first_ms, kBase);
  EXPECT_EQ(rows[0].packets, 2u);
  EXPECT_EQ(rows[0].bytes, 160u);
  EXPECT_EQ(agg.nextWindowEnd(), kBase + 2 * kW);

  EXPECT_EQ(agg.takeClosed(kBase + 2 * kW - 1, rows), 0u);
  EXPECT_EQ(agg.takeClosed(kBase + 5 * kW, rows), 1u);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].first_ms, kBase + kW);
  EXPECT_EQ(rows[1].packets, 1u);
  EXPECT_EQ(agg.openFlows(), 0u);
  EXPECT_FALSE(agg.nextWindowEnd().has_value());
}

TEST(WindowAggregator, LatePacketForAClosedWindowStartsANewSumNotALostOne) {
  WindowAggregator agg(kW);
  const auto p = makePacket(3, 1, 2, 6, Direction::kIngress, 10);
  agg.add(p, kBase + 1, kBase + 1);
  std::vector<FlowRecord> rows;
  EXPECT_EQ(agg.takeClosed(kBase + kW, rows), 1u);
  agg.add(p, kBase + 2, kBase + 2);  // arrives after its window was written
  EXPECT_EQ(agg.takeClosed(kBase + kW, rows), 1u);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].packets + rows[1].packets, 2u);
  EXPECT_EQ(rows[0].bytes + rows[1].bytes, 20u);
}

TEST(WindowAggregator, ManyFlowsKeepExactTotals) {
  WindowAggregator agg(1000);
  std::uint64_t packets = 0, bytes = 0;
  for (int i = 0; i < 20000; ++i) {
    const auto len = static_cast<std::uint32_t>(40 + i % 1400);
    agg.add(makePacket(static_cast<std::uint32_t>(i % 97), static_cast<std::uint16_t>(i % 13), 80,
                       i % 2 ? 6 : 17, i % 3 ? Direction::kEgress : Direction::kIngress, len),
            kBase + i % 3500, kBase + i % 3500);
    ++packets;
    bytes += len;
  }
  std::vector<FlowRecord> rows;
  agg.takeAll(rows);
  std::uint64_t got_packets = 0, got_bytes = 0;
  for (const auto& r : rows) {
    got_packets += r.packets;
    got_bytes += r.bytes;
  }
  EXPECT_EQ(got_packets, packets);
  EXPECT_EQ(got_bytes, bytes);
  // 97 hosts x 13 ports x 2 protocols x 3 directions-pattern... at most 4 windows each.
  EXPECT_LE(rows.size(), 97u * 13u * 2u * 2u * 4u);
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_LE(rows[i - 1].first_ms, rows[i].first_ms);
  }
}

// 100 000 flows in each of two windows, several packets each: closing the first window
// takes exactly its sums and keeps the second's, whose later packets still add up; memory
// follows the open sums (112 B each plus at most 23 B of index, entry array doubling).
TEST(WindowAggregator, HundredThousandFlowsAcrossTwoWindowsStayExact) {
  constexpr std::uint32_t kFlows = 100000;
  WindowAggregator agg(kW);
  auto packet = [](std::uint32_t i, std::uint32_t len) {
    return makePacket(i / 50000, static_cast<std::uint16_t>(i % 50000 + 1), 53, 17,
                      Direction::kEgress, len, 1);
  };
  for (int round = 0; round < 3; ++round) {
    for (std::uint32_t i = 0; i < kFlows; ++i)
      agg.add(packet(i, 100 + i % 7), kBase + round, kBase + round);
  }
  for (std::uint32_t i = 0; i < kFlows; ++i) agg.add(packet(i, 60), kBase + kW + 1, kBase + kW + 1);
  EXPECT_EQ(agg.openFlows(), 2 * kFlows);
  EXPECT_LE(agg.memoryBytes(), 2 * kFlows * (2 * WindowAggregator::entryBytes() + 23));

  std::vector<FlowRecord> rows;
  ASSERT_EQ(agg.takeClosed(kBase + kW, rows), kFlows);
  EXPECT_EQ(agg.openFlows(), kFlows);
  std::vector<bool> seen(kFlows);
  for (const FlowRecord& r : rows) {
    const std::uint32_t i = (r.src.bytes[15] == 1 ? 50000u : 0u) + r.src_port - 1u;
    ASSERT_LT(i, kFlows);
    EXPECT_FALSE(seen[i]);
    seen[i] = true;
    EXPECT_EQ(r.packets, 3u);
    EXPECT_EQ(r.bytes, 3u * (100 + i % 7));
    EXPECT_EQ(r.first_ms, kBase);
    EXPECT_EQ(r.last_ms, kBase + 2);
    EXPECT_EQ(r.window_end_ms, kBase + kW);
  }
  // The second window's sums survived the compaction and still take packets.
  for (std::uint32_t i = 0; i < kFlows; ++i) agg.add(packet(i, 40), kBase + kW + 2, kBase + kW + 2);
  EXPECT_EQ(agg.openFlows(), kFlows);
  rows.clear();
  ASSERT_EQ(agg.takeAll(rows), kFlows);
  for (const FlowRecord& r : rows) {
    EXPECT_EQ(r.packets, 2u);
    EXPECT_EQ(r.bytes, 100u);
    EXPECT_EQ(r.window_end_ms, kBase + 2 * kW);
  }
  EXPECT_EQ(agg.openFlows(), 0u);
  EXPECT_EQ(agg.memoryBytes(), 0u);
}

TEST(WindowAggregator, RejectsANonPositiveWindow) {
  EXPECT_THROW(WindowAggregator(0), std::invalid_argument);
  EXPECT_THROW(WindowAggregator(-5), std::invalid_argument);
}

TEST(WindowAggregator, KeepsTheEarliestFirstAndTheLatestLastTime) {
  WindowAggregator agg(kW);
  flow::Packet entry = test::makePacket(4, 7, 8, 17, Direction::kEgress, 300);
  entry.packets = 3;  // a kernel flow-table entry standing for three packets
  agg.add(entry, kBase + 50, kBase + 90);
  agg.add(test::makePacket(4, 7, 8, 17, Direction::kEgress, 100), kBase + 20, kBase + 20);
  agg.add(test::makePacket(4, 7, 8, 17, Direction::kEgress, 100), kBase + 95, kBase + 95);
  std::vector<FlowRecord> rows;
  ASSERT_EQ(agg.takeAll(rows), 1u);
  EXPECT_EQ(rows[0].first_ms, kBase + 20);
  EXPECT_EQ(rows[0].last_ms, kBase + 95);
  EXPECT_EQ(rows[0].packets, 5u);
  EXPECT_EQ(rows[0].bytes, 500u);
  EXPECT_EQ(rows[0].ifindex, 1u);
  EXPECT_FALSE(rows[0].names);
}

TEST(WindowAggregator, CheckpointsCarryChangedOpenSumsUntilAcknowledged) {
  WindowAggregator agg(kW);
  const auto a = makePacket(1, 40000, 443, 6, Direction::kEgress, 100);
  const auto b = makePacket(2, 40001, 53, 17, Direction::kEgress, 60);
  agg.add(a, kBase + 1, kBase + 1);
  agg.add(b, kBase + 2, kBase + 2);
  std::vector<FlowRecord> cp;
  ASSERT_EQ(agg.checkpoint(cp), 2u);
  EXPECT_EQ(agg.openFlows(), 2u);  // a checkpoint copies, the sums stay open
  for (const auto& r : cp) {
    EXPECT_EQ(r.state, RecordState::kProvisional);
    EXPECT_NE(r.update_key, 0u);
    EXPECT_EQ(r.window_end_ms, kBase + kW);
  }
  EXPECT_NE(cp[0].update_key, cp[1].update_key);
  const std::uint64_t key_a = cp[0].update_key;
  agg.acknowledgeCheckpoint();

  // Nothing changed: an empty checkpoint. Then only the changed sum, with cumulative sums.
  cp.clear();
  EXPECT_EQ(agg.checkpoint(cp), 0u);
  agg.acknowledgeCheckpoint();
  agg.add(a, kBase + 3, kBase + 3);
  cp.clear();
  ASSERT_EQ(agg.checkpoint(cp), 1u);
  EXPECT_EQ(cp[0].update_key, key_a);
  EXPECT_EQ(cp[0].packets, 2u);
  EXPECT_EQ(cp[0].bytes, 200u);
  // Not acknowledged (a sink refused it): the next checkpoint carries it again, newer.
  agg.add(b, kBase + 4, kBase + 4);
  cp.clear();
  ASSERT_EQ(agg.checkpoint(cp), 2u);
  agg.acknowledgeCheckpoint();

  // A sink lost a checkpoint: the next one carries every open sum, changed or not.
  agg.checkpointEverything();
  cp.clear();
  ASSERT_EQ(agg.checkpoint(cp), 2u);
  agg.acknowledgeCheckpoint();
  cp.clear();
  EXPECT_EQ(agg.checkpoint(cp), 0u);
  agg.acknowledgeCheckpoint();

  // The final records keep the update keys and hold the exact totals.
  agg.add(a, kBase + 5, kBase + 5);
  std::vector<FlowRecord> out;
  ASSERT_EQ(agg.takeClosed(kBase + kW, out), 2u);
  EXPECT_EQ(out[0].state, RecordState::kFinal);
  EXPECT_EQ(out[0].update_key, key_a);
  EXPECT_EQ(out[0].packets, 3u);
  EXPECT_EQ(out[1].packets, 2u);
  cp.clear();
  EXPECT_EQ(agg.checkpoint(cp), 0u);

  // A later sum of the same flow (a new window) gets a new key.
  agg.add(a, kBase + kW, kBase + kW);
  cp.clear();
  ASSERT_EQ(agg.checkpoint(cp), 1u);
  EXPECT_NE(cp[0].update_key, key_a);
  EXPECT_EQ(cp[0].window_end_ms, kBase + 2 * kW);
}

TEST(FlowRecord, FromPacketIsOneRawRecordOrientedLikeTheLiveMap) {
  const auto p = test::makePacket(9, 5, 6, 6, Direction::kIngress, 1400, 12345);
  const FlowRecord r = FlowRecord::fromPacket(p, kBase, kBase);
  EXPECT_EQ(r.first_ms, kBase);
  EXPECT_EQ(r.last_ms, kBase);
  EXPECT_EQ(r.packets, 1u);
  EXPECT_EQ(r.bytes, 1400u);
  EXPECT_EQ(r.src, p.src);
  EXPECT_EQ(r.dst, p.dst);
  EXPECT_EQ(r.direction, Direction::kIngress);
  // Ingress: the destination is the local end.
  const flow::FlowKey k = r.connection();
  EXPECT_EQ(k, flow::FlowKey::fromPacket(p));
  EXPECT_EQ(k.local, p.dst);
  EXPECT_EQ(k.remote_port, 5);
  EXPECT_EQ(r.srcNames(), nullptr);
}

TEST(FlowRecord, NamesAreOrientedBySourceAndDestination) {
  FlowRecord r = FlowRecord::fromPacket(test::makePacket(1, 2, 3), kBase, kBase);  // egress
  auto names = std::make_shared<enrich::ConnectionNames>();
  names->local.hostname = "me";
  names->remote.hostname = "you";
  r.names = names;
  EXPECT_EQ(r.srcNames()->hostname, "me");
  EXPECT_EQ(r.dstNames()->hostname, "you");
  r.direction = Direction::kIngress;
  EXPECT_EQ(r.srcNames()->hostname, "you");
  EXPECT_EQ(r.dstNames()->hostname, "me");
}

}  // namespace
}  // namespace ayaflow::pipeline
