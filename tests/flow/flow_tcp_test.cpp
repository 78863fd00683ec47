// SPDX-License-Identifier: MIT OR Apache-2.0
// Connection states and the handshake RTT, from the flags and times the hook reports, in the
// orders raw events and flow-table entries can arrive.
#include <gtest/gtest.h>

#include <cstdint>

#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/tcp.h"

namespace ayaflow::flow {
namespace {

using namespace tcp_flags;

constexpr std::uint64_t kMs = 1000000;

// One packet (raw event) as the decoder makes it: flags with synthetic bits, SYN count and times.
Packet tcpPacket(Direction dir, std::uint8_t header, std::uint64_t ts_ns) {
  Packet p;
  p.src = IpAddress::fromV4(dir == Direction::kEgress ? 0x0a000001 : 0x0a000002);
  p.dst = IpAddress::fromV4(dir == Direction::kEgress ? 0x0a000002 : 0x0a000001);
  p.src_port = dir == Direction::kEgress ? 40000 : 80;
  p.dst_port = dir == Direction::kEgress ? 80 : 40000;
  p.protocol = 6;
  p.direction = dir;
  p.length = 60;
  p.timestamp_ns = ts_ns;
  p.tcp_flags = fromHeader(header);
  if (header & kSyn) {
    p.syns = 1;
    p.syn_ns = ts_ns;
  } else if (header & kAck) {
    p.ack_ns = ts_ns;
  }
  return p;
}

constexpr std::uint8_t kSynOnly = 0x02, kSynAckHdr = 0x12, kAckHdr = 0x10, kFinAckHdr = 0x11,
                       kRstHdr = 0x04, kRstAckHdr = 0x14;

TEST(Tcp, FromHeaderAddsSyntheticBits) {
  EXPECT_EQ(fromHeader(kSynOnly), kSyn);
  EXPECT_EQ(fromHeader(kSynAckHdr), kSyn | kAck | kSynAck);
  EXPECT_EQ(fromHeader(kFinAckHdr), kFin | kAck | kFinAck);
  EXPECT_EQ(fromHeader(kRstAckHdr), kRst | kAck | kRstAck);
  EXPECT_EQ(fromHeader(kRstHdr), kRst);
}

TEST(Tcp, OutgoingHandshakeRttIsSynToSynAck) {
  ConnectionMap map;
  auto o = map.record(tcpPacket(Direction::kEgress, kSynOnly, 1000 * kMs));
  EXPECT_EQ(o.after, TcpState::kOpening);
  o = map.record(tcpPacket(Direction::kIngress, kSynAckHdr, 1020 * kMs));
  EXPECT_EQ(o.after, TcpState::kEstablished);
  EXPECT_EQ(o.new_handshake_rtt_us, 20000u);
  EXPECT_EQ(o.rtt_kind, RttKind::kHandshake);
  EXPECT_EQ(o.rtt_us, 20000u);
  o = map.record(tcpPacket(Direction::kEgress, kAckHdr, 1021 * kMs));
  EXPECT_EQ(o.new_handshake_rtt_us, 0u);  // measured once
  o = map.record(tcpPacket(Direction::kEgress, kFinAckHdr, 1500 * kMs));
  EXPECT_EQ(o.before, TcpState::kEstablished);
  EXPECT_EQ(o.after, TcpState::kClosed);
}

TEST(Tcp, IncomingHandshakeRttIsSynAckToAck) {
  ConnectionMap map;
  map.record(tcpPacket(Direction::kIngress, kSynOnly, 5000 * kMs));
  map.record(tcpPacket(Direction::kEgress, kSynAckHdr, 5001 * kMs));
  const auto o = map.record(tcpPacket(Direction::kIngress, kAckHdr, 5031 * kMs));
  EXPECT_EQ(o.new_handshake_rtt_us, 30000u);
  EXPECT_EQ(o.after, TcpState::kEstablished);
}

TEST(Tcp, RetriedSynMeasuresFromTheLatest) {
  ConnectionMap map;
  EXPECT_EQ(map.record(tcpPacket(Direction::kEgress, kSynOnly, 1000 * kMs)).after,
            TcpState::kOpening);
  EXPECT_EQ(map.record(tcpPacket(Direction::kEgress, kSynOnly, 2000 * kMs)).after,
            TcpState::kUnanswered);
  const auto o = map.record(tcpPacket(Direction::kIngress, kSynAckHdr, 2010 * kMs));
  EXPECT_EQ(o.after, TcpState::kEstablished);
  EXPECT_EQ(o.new_handshake_rtt_us, 10000u);
}

TEST(Tcp, RstAnsweringASynIsRefused) {
  ConnectionMap map;
  map.record(tcpPacket(Direction::kEgress, kSynOnly, 1 * kMs));
  const auto o = map.record(tcpPacket(Direction::kIngress, kRstAckHdr, 2 * kMs));
  EXPECT_EQ(o.after, TcpState::kRefused);
  EXPECT_EQ(o.rtt_kind, RttKind::kNone);
}

TEST(Tcp, RstAfterTheHandshakeIsReset) {
  ConnectionMap map;
  map.record(tcpPacket(Direction::kIngress, kSynOnly, 1 * kMs));
  map.record(tcpPacket(Direction::kEgress, kSynAckHdr, 2 * kMs));
  map.record(tcpPacket(Direction::kIngress, kAckHdr, 3 * kMs));
  EXPECT_EQ(map.record(tcpPacket(Direction::kEgress, kRstHdr, 4 * kMs)).after, TcpState::kReset);
}

TEST(Tcp, MidStreamIsEstablishedWithoutRtt) {
  ConnectionMap map;
  const auto o = map.record(tcpPacket(Direction::kIngress, kAckHdr, 1 * kMs));
  EXPECT_EQ(o.after, TcpState::kEstablished);
  EXPECT_EQ(o.new_handshake_rtt_us, 0u);
  EXPECT_EQ(o.tcp_flags & kSyn, 0);
}

// Aggregated mode: the two directions are separate flow-table entries collected in any order,
// each carrying its OR-ed flags, SYN count, latest SYN time and first ACK time.
TEST(Tcp, FlowEntriesInEitherOrderGiveTheSameRtt) {
  auto entry = [](Direction dir, std::uint16_t flags, std::uint64_t syn_ns, std::uint64_t ack_ns) {
    Packet p = tcpPacket(dir, 0, syn_ns);
    p.tcp_flags = flags;
    p.syns = syn_ns != 0 ? 1 : 0;
    p.syn_ns = syn_ns;
    p.ack_ns = ack_ns;
    p.packets = 3;
    return p;
  };
  // Outgoing: our SYN at 100 ms, their SYN-ACK at 125 ms.
  const Packet out = entry(Direction::kEgress, kSyn | kAck, 100 * kMs, 126 * kMs);
  const Packet in = entry(Direction::kIngress, kSyn | kAck | kSynAck, 125 * kMs, 0);
  for (const bool reversed : {false, true}) {
    ConnectionMap map;
    map.record(reversed ? in : out);
    const auto o = map.record(reversed ? out : in);
    EXPECT_EQ(o.new_handshake_rtt_us, 25000u) << reversed;
    EXPECT_EQ(o.after, TcpState::kEstablished);
  }
  // Incoming: their SYN and first ACK (at 250 ms) in one entry, our SYN-ACK at 200 ms.
  const Packet their = entry(Direction::kIngress, kSyn | kAck, 190 * kMs, 250 * kMs);
  const Packet ours = entry(Direction::kEgress, kSyn | kAck | kSynAck, 200 * kMs, 0);
  for (const bool reversed : {false, true}) {
    ConnectionMap map;
    map.record(reversed ? ours : their);
    EXPECT_EQ(map.record(reversed ? their : ours).new_handshake_rtt_us, 50000u) << reversed;
  }
}

// Results count once per connection, whichever direction's entry is collected first: an RST
// collected before the SYN it answers must not count as a reset.
TEST(Tcp, ResultsCountOnceWhicheverEntryComesFirst) {
  auto entry = [](Direction dir, std::uint16_t flags) {
    Packet p = tcpPacket(dir, 0, 10 * kMs);
    p.tcp_flags = flags;
    p.syns = (flags & kSyn) ? 1 : 0;
    p.syn_ns = p.syns ? 10 * kMs : 0;
    p.packets = 2;
    return p;
  };
  struct Case {
    const char* name;
    Packet out, in;
    std::uint8_t want;
  };
  const Case cases[] = {
      {"refused", entry(Direction::kEgress, kSyn),
       entry(Direction::kIngress, kRst | kAck | kRstAck), resultBit(TcpState::kRefused)},
      {"a whole short connection", entry(Direction::kEgress, kSyn | kAck | kFin | kFinAck),
       entry(Direction::kIngress, kSyn | kAck | kSynAck | kFin | kFinAck),
       static_cast<std::uint8_t>(resultBit(TcpState::kEstablished) | resultBit(TcpState::kClosed))},
      {"reset after the handshake", entry(Direction::kEgress, kSyn | kAck),
       entry(Direction::kIngress, kSyn | kAck | kSynAck | kRst),
       static_cast<std::uint8_t>(resultBit(TcpState::kEstablished) | resultBit(TcpState::kReset))},
  };
  for (const Case& c : cases) {
    for (const bool reversed : {false, true}) {
      ConnectionMap map;
      const auto first = map.record(reversed ? c.in : c.out);
      const auto second = map.record(reversed ? c.out : c.in);
      EXPECT_EQ(first.new_results | second.new_results, c.want) << c.name << " " << reversed;
      EXPECT_EQ(first.new_results & second.new_results, 0) << c.name << " " << reversed;
      // Later packets of the connection count nothing again.
      EXPECT_EQ(map.record(c.in).new_results, 0) << c.name;
    }
  }
}

TEST(Tcp, StampsWrapAroundModulo32Bits) {
  ConnectionMap map;
  const std::uint64_t near_wrap = (std::uint64_t{1} << 32) * 1000 - 5 * kMs;  // 5 ms before
  map.record(tcpPacket(Direction::kEgress, kSynOnly, near_wrap));
  EXPECT_EQ(map.record(tcpPacket(Direction::kIngress, kSynAckHdr, near_wrap + 20 * kMs))
                .new_handshake_rtt_us,
            20000u);
}

TEST(Tcp, HealthUpdatesChangeOnlyKnownConnections) {
  ConnectionMap map;
  Packet health = tcpPacket(Direction::kEgress, 0, 0);
  health.tcp_flags = 0;
  health.packets = 0;
  health.length = 0;
  health.retransmits = 3;
  health.srtt_us = 900;
  EXPECT_FALSE(map.record(health).recorded);
  EXPECT_EQ(map.size(), 0u);

  map.record(tcpPacket(Direction::kEgress, kAckHdr, 10 * kMs));
  const auto o = map.record(health);
  EXPECT_TRUE(o.recorded);
  EXPECT_EQ(o.rtt_kind, RttKind::kSmoothed);
  EXPECT_EQ(o.rtt_us, 900u);
  health.retransmits = 2;
  health.drops = 4;
  map.record(health);
  const auto stats = map.find(FlowKey::fromPacket(health));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->tcp.retransmits, 5u);
  EXPECT_EQ(stats->tcp.drops, 4u);
  EXPECT_EQ(stats->packets_count, 1u);  // health is not traffic
  EXPECT_EQ(stats->last_seen_ns, 10 * kMs);
}

TEST(Tcp, StateNamesRoundTrip) {
  for (int i = 1; i <= 6; ++i) {
    const auto s = static_cast<TcpState>(i);
    EXPECT_EQ(parseTcpState(toString(s)), s);
  }
  EXPECT_FALSE(parseTcpState("bogus"));
  EXPECT_FALSE(parseTcpState(""));
}

}  // namespace
}  // namespace ayaflow::flow
