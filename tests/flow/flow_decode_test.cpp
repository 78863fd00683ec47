// SPDX-License-Identifier: MIT OR Apache-2.0
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/flow/packet.h"

namespace ayaflow::flow {
namespace {

ayaflow_packet_event makeEvent() {
  ayaflow_packet_event ev;
  std::memset(&ev, 0, sizeof ev);
  ev.abi_version = AYAFLOW_ABI_VERSION;
  ev.kind = AYAFLOW_EVENT_PACKET;
  ev.direction = AYAFLOW_DIR_EGRESS;
  ev.tuple.protocol = 6;
  ev.tuple.addr_type = 4;
  ev.flags = AYAFLOW_F_FRAGMENT;
  ev.ifindex = 7;
  ev.pkt_len = 1500;
  ev.tuple.src_port = 43210;
  ev.tuple.dst_port = 443;
  ev.timestamp_ns = 0x0123456789abcdefull;
  const std::uint8_t src[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  const std::uint8_t dst[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 93, 184, 216, 34};
  std::memcpy(ev.tuple.src_addr, src, 16);
  std::memcpy(ev.tuple.dst_addr, dst, 16);
  return ev;
}

std::vector<unsigned char> bytesOf(const ayaflow_packet_event& ev) {
  std::vector<unsigned char> b(sizeof ev);
  std::memcpy(b.data(), &ev, sizeof ev);
  return b;
}

DecodeStatus decode(const ayaflow_packet_event& ev, Packet& out) {
  const auto b = bytesOf(ev);
  return decodePacketEvent(b.data(), b.size(), out);
}

TEST(FlowDecode, GsoEventIsItsSegmentsWithTheirBytes) {
  ayaflow_packet_event ev = makeEvent();
  ev.segs = 45;
  ev.pkt_len = 45 * 52 + 65000;  // the kernel's sum over the segments
  Packet p;
  ASSERT_EQ(decode(ev, p), DecodeStatus::kOk);
  EXPECT_EQ(p.packets, 45u);
  EXPECT_EQ(p.length, 45u * 52u + 65000u);
  ev.segs = 0;  // never written by the kernel, but one packet all the same
  ASSERT_EQ(decode(ev, p), DecodeStatus::kOk);
  EXPECT_EQ(p.packets, 1u);
  ev.segs = 1;
  ASSERT_EQ(decode(ev, p), DecodeStatus::kOk);
  EXPECT_EQ(p.packets, 1u);
}

TEST(FlowDecode, ValidIpv4EventDecodesFieldByField) {
  Packet p;
  ASSERT_EQ(decode(makeEvent(), p), DecodeStatus::kOk);
  EXPECT_EQ(p.src, IpAddress::fromV4(0x0a000001));
  EXPECT_EQ(p.dst, IpAddress::fromV4((93u << 24) | (184u << 16) | (216u << 8) | 34u));
  EXPECT_TRUE(p.src.isV4Mapped());
  EXPECT_EQ(p.src.toString(), "10.0.0.1");
  EXPECT_EQ(p.dst.toString(), "93.184.216.34");
  EXPECT_EQ(p.src_port, 43210);
  EXPECT_EQ(p.dst_port, 443);
  EXPECT_EQ(p.protocol, 6);
  EXPECT_EQ(p.direction, Direction::kEgress);
  EXPECT_EQ(p.flags, AYAFLOW_F_FRAGMENT);
  EXPECT_EQ(p.addr_type, 4);
  EXPECT_EQ(p.ifindex, 7u);
  EXPECT_EQ(p.length, 1500u);
  EXPECT_EQ(p.timestamp_ns, 0x0123456789abcdefull);
}

TEST(FlowDecode, ValidIpv6IngressUdpEvent) {
  ayaflow_packet_event ev = makeEvent();
  ev.direction = AYAFLOW_DIR_INGRESS;
  ev.tuple.protocol = 17;
  ev.tuple.addr_type = 6;
  ev.flags = 0;
  ev.tuple.src_port = 53;
  ev.tuple.dst_port = 5353;
  ev.pkt_len = 40 + 512;
  const auto src = IpAddress::parse("2001:db8::1");
  const auto dst = IpAddress::parse("fe80::1:2:3:4");
  ASSERT_TRUE(src && dst);
  std::memcpy(ev.tuple.src_addr, src->bytes.data(), 16);
  std::memcpy(ev.tuple.dst_addr, dst->bytes.data(), 16);

  Packet p;
  ASSERT_EQ(decode(ev, p), DecodeStatus::kOk);
  EXPECT_EQ(p.src, *src);
  EXPECT_EQ(p.dst, *dst);
  EXPECT_FALSE(p.src.isV4Mapped());
  EXPECT_EQ(p.src.toString(), "2001:db8::1");
  EXPECT_EQ(p.dst.toString(), "fe80::1:2:3:4");
  EXPECT_EQ(p.src_port, 53);
  EXPECT_EQ(p.dst_port, 5353);
  EXPECT_EQ(p.protocol, 17);
  EXPECT_EQ(p.direction, Direction::kIngress);
  EXPECT_EQ(p.flags, 0);
  EXPECT_EQ(p.addr_type, 6);
  EXPECT_EQ(p.length, 552u);
}

TEST(FlowDecode, LongerRecordIsAccepted) {
  auto b = bytesOf(makeEvent());
  b.resize(b.size() + 8, 0xaa);
  Packet p;
  EXPECT_EQ(decodePacketEvent(b.data(), b.size(), p), DecodeStatus::kOk);
  EXPECT_EQ(p.length, 1500u);
}

TEST(FlowDecode, EverySizeBelowTheStructIsTooShort) {
  const auto full = bytesOf(makeEvent());
  ASSERT_EQ(full.size(), 64u);
  for (std::size_t n = 0; n < sizeof(ayaflow_packet_event); ++n) {
    Packet p;
    p.length = 99;
    EXPECT_EQ(decodePacketEvent(full.data(), n, p), DecodeStatus::kTooShort) << "size " << n;
    EXPECT_EQ(p.length, 99u) << "output written on failure, size " << n;
  }
  Packet p;
  EXPECT_EQ(decodePacketEvent(nullptr, 64, p), DecodeStatus::kTooShort);
}

TEST(FlowDecode, WrongVersion) {
  for (unsigned v : {0u, AYAFLOW_ABI_VERSION + 1u, 0xffffu}) {
    ayaflow_packet_event ev = makeEvent();
    ev.abi_version = static_cast<__u16>(v);
    Packet p;
    EXPECT_EQ(decode(ev, p), DecodeStatus::kBadVersion) << v;
  }
}

TEST(FlowDecode, WrongKind) {
  for (unsigned k : {0u, 2u, 255u}) {
    ayaflow_packet_event ev = makeEvent();
    ev.kind = static_cast<__u8>(k);
    Packet p;
    EXPECT_EQ(decode(ev, p), DecodeStatus::kBadKind) << k;
  }
}

TEST(FlowDecode, WrongDirection) {
  for (unsigned d : {2u, 255u}) {
    ayaflow_packet_event ev = makeEvent();
    ev.direction = static_cast<__u8>(d);
    Packet p;
    EXPECT_EQ(decode(ev, p), DecodeStatus::kBadField) << d;
  }
}

TEST(FlowDecode, WrongAddrType) {
  for (unsigned a : {0u, 5u, 41u}) {
    ayaflow_packet_event ev = makeEvent();
    ev.tuple.addr_type = static_cast<__u8>(a);
    Packet p;
    EXPECT_EQ(decode(ev, p), DecodeStatus::kBadField) << a;
  }
}

TEST(FlowDecode, WrongProtocol) {
  for (unsigned proto : {0u, 1u, 58u, 132u}) {
    ayaflow_packet_event ev = makeEvent();
    ev.tuple.protocol = static_cast<__u8>(proto);
    Packet p;
    EXPECT_EQ(decode(ev, p), DecodeStatus::kBadField) << proto;
  }
}

TEST(FlowDecode, UnalignedBufferWorks) {
  const ayaflow_packet_event ev = makeEvent();
  // Backed by 8-byte-aligned storage, read from offset 1..7.
  alignas(8) unsigned char storage[sizeof ev + 8];
  for (std::size_t off = 1; off < 8; ++off) {
    std::memset(storage, 0xee, sizeof storage);
    std::memcpy(storage + off, &ev, sizeof ev);
    Packet p;
    ASSERT_EQ(decodePacketEvent(storage + off, sizeof ev, p), DecodeStatus::kOk) << off;
    EXPECT_EQ(p.timestamp_ns, 0x0123456789abcdefull);
    EXPECT_EQ(p.ifindex, 7u);
    EXPECT_EQ(p.src_port, 43210);
    EXPECT_EQ(p.dst.toString(), "93.184.216.34");
  }
}

TEST(FlowDecode, StatusNames) {
  EXPECT_STREQ(toString(DecodeStatus::kOk), "ok");
  EXPECT_STREQ(toString(DecodeStatus::kTooShort), "too short");
  EXPECT_STREQ(toString(DecodeStatus::kBadVersion), "bad abi version");
  EXPECT_STREQ(toString(DecodeStatus::kBadKind), "bad kind");
  EXPECT_STREQ(toString(DecodeStatus::kBadField), "bad field");
}

TEST(FlowDecode, IpAddressParse) {
  const auto v4 = IpAddress::parse("192.168.1.254");
  ASSERT_TRUE(v4);
  EXPECT_EQ(*v4, IpAddress::fromV4(0xc0a801fe));
  EXPECT_TRUE(v4->isV4Mapped());
  const auto mapped = IpAddress::parse("::ffff:192.168.1.254");
  ASSERT_TRUE(mapped);
  EXPECT_EQ(*mapped, *v4);
  const auto v6 = IpAddress::parse("2001:DB8:0:0:0:0:0:1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->toString(), "2001:db8::1");
  EXPECT_NE(*v6, *v4);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", "[::1]", "::1%eth0",
                          "2001:db8:::1", "hello", "1.2.3.4:80"}) {
    EXPECT_FALSE(IpAddress::parse(bad)) << bad;
  }
  EXPECT_FALSE(IpAddress::parse(std::string(100, '1')));
  // A string_view that is not NUL-terminated.
  const std::string s = "10.1.2.3999";
  const auto cut = IpAddress::parse(std::string_view(s).substr(0, 8));
  ASSERT_TRUE(cut);
  EXPECT_EQ(cut->toString(), "10.1.2.3");
}

ayaflow_flow_key makeFlowKey() {
  ayaflow_flow_key key;
  std::memset(&key, 0, sizeof key);
  key.ifindex = 9;
  key.direction = AYAFLOW_DIR_INGRESS;
  key.tuple.protocol = 17;
  key.tuple.addr_type = 6;
  key.tuple.src_port = 53;
  key.tuple.dst_port = 40000;
  key.tuple.src_addr[0] = 0xfd;
  key.tuple.src_addr[15] = 1;
  key.tuple.dst_addr[0] = 0xfd;
  key.tuple.dst_addr[15] = 2;
  return key;
}

TEST(FlowDecode, FlowEntryStandsForItsPackets) {
  const ayaflow_flow_key key = makeFlowKey();
  const ayaflow_flow_value value{1000, 123456789012ull, 500, 900, 0, 0, 0, 0};
  Packet p;
  ASSERT_EQ(decodeFlowEntry(key, value, p), DecodeStatus::kOk);
  EXPECT_EQ(p.packets, 1000u);
  EXPECT_EQ(p.length, 123456789012ull);  // more than 32 bits of bytes
  EXPECT_EQ(p.first_timestamp_ns, 500u);
  EXPECT_EQ(p.timestamp_ns, 900u);
  EXPECT_EQ(p.firstTimestampNs(), 500u);
  EXPECT_EQ(p.direction, Direction::kIngress);
  EXPECT_EQ(p.protocol, 17);
  EXPECT_EQ(p.addr_type, 6);
  EXPECT_EQ(p.ifindex, 9u);
  EXPECT_EQ(p.src_port, 53);
  EXPECT_EQ(p.dst_port, 40000);
  EXPECT_EQ(p.src.toString(), "fd00::1");
  EXPECT_EQ(p.dst.toString(), "fd00::2");

  // A latest-packet time written by another CPU just before the first: kept ordered.
  ASSERT_EQ(decodeFlowEntry(key, ayaflow_flow_value{2, 80, 700, 690, 0, 0, 0, 0}, p),
            DecodeStatus::kOk);
  EXPECT_EQ(p.first_timestamp_ns, 700u);
  EXPECT_EQ(p.timestamp_ns, 700u);

  // A packet event decoded into the same Packet stands for one packet again.
  const ayaflow_packet_event ev = makeEvent();
  ASSERT_EQ(decodePacketEvent(&ev, sizeof ev, p), DecodeStatus::kOk);
  EXPECT_EQ(p.packets, 1u);
  EXPECT_EQ(p.first_timestamp_ns, 0u);
  EXPECT_EQ(p.firstTimestampNs(), ev.timestamp_ns);
}

TEST(FlowDecode, TunnelFlagIsKeptAndReadable) {
  // A decapsulated packet (a later fragment of the inner packet, too): decoded like any.
  ayaflow_packet_event ev = makeEvent();
  ev.flags = AYAFLOW_F_TUNNEL | AYAFLOW_F_FRAGMENT;
  Packet p;
  ASSERT_EQ(decode(ev, p), DecodeStatus::kOk);
  EXPECT_EQ(p.flags, AYAFLOW_F_TUNNEL | AYAFLOW_F_FRAGMENT);
  EXPECT_TRUE(p.tunnelled());
  EXPECT_EQ(p.length, 1500u);
  ev.flags = AYAFLOW_F_FRAGMENT;
  ASSERT_EQ(decode(ev, p), DecodeStatus::kOk);
  EXPECT_FALSE(p.tunnelled());

  ayaflow_flow_key key = makeFlowKey();
  key.flags = AYAFLOW_F_TUNNEL;
  ASSERT_EQ(decodeFlowEntry(key, ayaflow_flow_value{3, 300, 1, 2, 0, 0, 0, 0}, p),
            DecodeStatus::kOk);
  EXPECT_TRUE(p.tunnelled());
  EXPECT_EQ(p.packets, 3u);
}

TEST(FlowDecode, BadFlowEntriesAreRejectedAndLeaveTheOutputAlone) {
  const ayaflow_flow_value value{1, 60, 1, 1, 0, 0, 0, 0};
  auto check = [&](ayaflow_flow_key key, ayaflow_flow_value v) {
    Packet p;
    p.ifindex = 12345;
    EXPECT_EQ(decodeFlowEntry(key, v, p), DecodeStatus::kBadField);
    EXPECT_EQ(p.ifindex, 12345u);
  };
  ayaflow_flow_key k = makeFlowKey();
  k.direction = 2;
  check(k, value);
  k = makeFlowKey();
  k.tuple.addr_type = 5;
  check(k, value);
  k = makeFlowKey();
  k.tuple.protocol = 1;
  check(k, value);
  check(makeFlowKey(), ayaflow_flow_value{0, 0, 1, 1, 0, 0, 0, 0});
}

}  // namespace
}  // namespace ayaflow::flow
