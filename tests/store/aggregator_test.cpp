// SPDX-License-Identifier: MIT OR Apache-2.0
// WindowAggregator and row conversion: pure arithmetic, no SQLite (unit tier).
#include "ayaflow/store/aggregator.h"

#include <gtest/gtest.h>

#include "store_test_util.h"

namespace ayaflow::store {
namespace {

using flow::Direction;
using test::makePacket;

constexpr std::int64_t kW = 10000;             // 10 s windows
constexpr std::int64_t kBase = 1700000000000;  // a multiple of kW: a window starts here

TEST(WindowAggregator, SumsPerDirectionalFlowPerWindowExactly) {
  WindowAggregator agg(kW);
  // Flow A egress: 10 packets of 100..109 bytes, out of order in time.
  for (int i = 0; i < 10; ++i) {
    agg.add(makePacket(1, 40000, 443, 6, Direction::kEgress, 100 + i), kBase + 500 - i * 10);
  }
  // Same addresses and ports, ingress: a separate row.
  agg.add(makePacket(1, 40000, 443, 6, Direction::kIngress, 1500), kBase + 7);
  agg.add(makePacket(1, 40000, 443, 6, Direction::kIngress, 1500), kBase + 8);
  // Same 5-tuple but UDP: another row.
  agg.add(makePacket(1, 40000, 443, 17, Direction::kEgress, 60), kBase + 9);
  EXPECT_EQ(agg.openFlows(), 3u);

  std::vector<PendingRow> rows;
  EXPECT_EQ(agg.takeAll(rows), 3u);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(agg.openFlows(), 0u);
  // Ordered by first timestamp.
  EXPECT_EQ(rows[0].timestamp_ms, kBase + 7);
  EXPECT_EQ(rows[0].direction, Direction::kIngress);
  EXPECT_EQ(rows[0].packet_count, 2u);
  EXPECT_EQ(rows[0].length, 3000u);
  EXPECT_EQ(rows[1].timestamp_ms, kBase + 9);
  EXPECT_EQ(rows[1].protocol, 17);
  EXPECT_EQ(rows[1].packet_count, 1u);
  EXPECT_EQ(rows[1].length, 60u);
  EXPECT_EQ(rows[2].timestamp_ms, kBase + 500 - 90);  // the earliest packet's
  EXPECT_EQ(rows[2].direction, Direction::kEgress);
  EXPECT_EQ(rows[2].packet_count, 10u);
  EXPECT_EQ(rows[2].length, 1045u);  // 100 + ... + 109
  EXPECT_EQ(rows[2].src_port, 40000);
  EXPECT_EQ(rows[2].dst_port, 443);
}

TEST(WindowAggregator, WindowsAreAlignedAndCloseAtTheirEnd) {
  WindowAggregator agg(kW);
  const auto p = makePacket(2, 1234, 53, 17, Direction::kEgress, 80);
  agg.add(p, kBase);           // first ms of window k
  agg.add(p, kBase + kW - 1);  // last ms of window k
  agg.add(p, kBase + kW);      // first ms of window k+1
  EXPECT_EQ(agg.openFlows(), 2u);
  EXPECT_EQ(agg.nextWindowEnd(), kBase + kW);

  std::vector<PendingRow> rows;
  EXPECT_EQ(agg.takeClosed(kBase + kW - 1, rows), 0u);  // window k still open
  EXPECT_EQ(agg.takeClosed(kBase + kW, rows), 1u);      // ended exactly now
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].timestamp_ms, kBase);
  EXPECT_EQ(rows[0].packet_count, 2u);
  EXPECT_EQ(rows[0].length, 160u);
  EXPECT_EQ(agg.nextWindowEnd(), kBase + 2 * kW);

  EXPECT_EQ(agg.takeClosed(kBase + 2 * kW - 1, rows), 0u);
  EXPECT_EQ(agg.takeClosed(kBase + 5 * kW, rows), 1u);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].timestamp_ms, kBase + kW);
  EXPECT_EQ(rows[1].packet_count, 1u);
  EXPECT_EQ(agg.openFlows(), 0u);
  EXPECT_FALSE(agg.nextWindowEnd().has_value());
}

TEST(WindowAggregator, LatePacketForAClosedWindowStartsANewSumNotALostOne) {
  WindowAggregator agg(kW);
  const auto p = makePacket(3, 1, 2, 6, Direction::kIngress, 10);
  agg.add(p, kBase + 1);
  std::vector<PendingRow> rows;
  EXPECT_EQ(agg.takeClosed(kBase + kW, rows), 1u);
  agg.add(p, kBase + 2);  // arrives after its window was written
  EXPECT_EQ(agg.takeClosed(kBase + kW, rows), 1u);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].packet_count + rows[1].packet_count, 2u);
  EXPECT_EQ(rows[0].length + rows[1].length, 20u);
}

TEST(WindowAggregator, ManyFlowsKeepExactTotals) {
  WindowAggregator agg(1000);
  std::uint64_t packets = 0, bytes = 0;
  for (int i = 0; i < 20000; ++i) {
    const auto len = static_cast<std::uint32_t>(40 + i % 1400);
    agg.add(makePacket(static_cast<std::uint32_t>(i % 97), static_cast<std::uint16_t>(i % 13), 80,
                       i % 2 ? 6 : 17, i % 3 ? Direction::kEgress : Direction::kIngress, len),
            kBase + i % 3500);
    ++packets;
    bytes += len;
  }
  std::vector<PendingRow> rows;
  agg.takeAll(rows);
  std::uint64_t got_packets = 0, got_bytes = 0;
  for (const auto& r : rows) {
    got_packets += r.packet_count;
    got_bytes += r.length;
  }
  EXPECT_EQ(got_packets, packets);
  EXPECT_EQ(got_bytes, bytes);
  // 97 hosts x 13 ports x 2 protocols x 3 directions-pattern... at most 4 windows each.
  EXPECT_LE(rows.size(), 97u * 13u * 2u * 2u * 4u);
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_LE(rows[i - 1].timestamp_ms, rows[i].timestamp_ms);
  }
}

TEST(WindowAggregator, RejectsANonPositiveWindow) {
  EXPECT_THROW(WindowAggregator(0), std::invalid_argument);
  EXPECT_THROW(WindowAggregator(-5), std::invalid_argument);
}

TEST(RowText, ProtocolAndDirection) {
  EXPECT_EQ(protocolText(6), "TCP");
  EXPECT_EQ(protocolText(17), "UDP");
  EXPECT_EQ(protocolText(1), "IP(1)");
  EXPECT_EQ(protocolText(132), "IP(132)");
  EXPECT_STREQ(directionText(Direction::kIngress), "ingress");
  EXPECT_STREQ(directionText(Direction::kEgress), "egress");
}

TEST(RowText, ToRecordFormatsAddressesAndKeepsNumbers) {
  PendingRow row;
  row.src = *flow::IpAddress::parse("10.1.2.3");
  row.dst = *flow::IpAddress::parse("2001:db8::1");
  row.timestamp_ms = kBase + 42;
  row.length = 123456789012ull;
  row.packet_count = 77;
  row.src_port = 65535;
  row.dst_port = 1;
  row.protocol = 17;
  row.direction = Direction::kEgress;
  flow::FlowRecord rec;
  rec.domain = "stale";  // reused record: optional fields are reset
  toRecord(row, rec);
  EXPECT_EQ(rec.id, 0);
  EXPECT_EQ(rec.timestamp_ms, kBase + 42);
  EXPECT_EQ(rec.src_ip, "10.1.2.3");
  EXPECT_EQ(rec.dst_ip, "2001:db8::1");
  EXPECT_EQ(rec.src_port, 65535);
  EXPECT_EQ(rec.dst_port, 1);
  EXPECT_EQ(rec.protocol, "UDP");
  EXPECT_EQ(rec.length, 123456789012ull);
  EXPECT_EQ(rec.packet_count, 77u);
  EXPECT_EQ(rec.direction, "egress");
  EXPECT_FALSE(rec.domain.has_value());
  EXPECT_FALSE(rec.src_hostname.has_value());
}

TEST(RowText, FromPacketIsOneRawRow) {
  const auto p = makePacket(9, 5, 6, 6, Direction::kIngress, 1400, 12345);
  const PendingRow row = PendingRow::fromPacket(p, kBase);
  EXPECT_EQ(row.timestamp_ms, kBase);
  EXPECT_EQ(row.packet_count, 1u);
  EXPECT_EQ(row.length, 1400u);
  EXPECT_EQ(row.src, p.src);
  EXPECT_EQ(row.dst, p.dst);
  EXPECT_EQ(row.direction, Direction::kIngress);
}

}  // namespace
}  // namespace ayaflow::store
