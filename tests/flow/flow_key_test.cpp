// SPDX-License-Identifier: MIT OR Apache-2.0
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <type_traits>
#include <unordered_set>

#include "ayaflow/flow/flow_key.h"

namespace ayaflow::flow {
namespace {

IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a) << text;
  return a.value_or(IpAddress{});
}

Packet packet(const char* src, std::uint16_t sport, const char* dst, std::uint16_t dport,
              Direction dir, std::uint8_t proto = 6) {
  Packet p;
  p.src = ip(src);
  p.dst = ip(dst);
  p.src_port = sport;
  p.dst_port = dport;
  p.direction = dir;
  p.protocol = proto;
  p.length = 100;
  return p;
}

static_assert(std::has_unique_object_representations_v<FlowKey>);
static_assert(std::is_trivially_copyable_v<FlowKey>);
static_assert(sizeof(FlowKey) == 40);

TEST(FlowKey, BothDirectionsOfOneConnectionShareAKey) {
  const FlowKey out =
      FlowKey::fromPacket(packet("10.0.0.1", 1000, "10.0.0.2", 80, Direction::kEgress));
  const FlowKey in =
      FlowKey::fromPacket(packet("10.0.0.2", 80, "10.0.0.1", 1000, Direction::kIngress));
  EXPECT_EQ(out, in);
  EXPECT_EQ(out.local, ip("10.0.0.1"));
  EXPECT_EQ(out.remote, ip("10.0.0.2"));
  EXPECT_EQ(out.local_port, 1000);
  EXPECT_EQ(out.remote_port, 80);
  EXPECT_EQ(out.protocol, 6);
  EXPECT_EQ(FlowKeyHash{}(out), FlowKeyHash{}(in));
  EXPECT_EQ(formatConnection(out), "10.0.0.1:1000 -> 10.0.0.2:80");
}

TEST(FlowKey, OppositeOrientationIsADifferentConnection) {
  // Same addresses, but here 10.0.0.2 is the local end.
  const FlowKey a =
      FlowKey::fromPacket(packet("10.0.0.1", 1000, "10.0.0.2", 80, Direction::kEgress));
  const FlowKey b =
      FlowKey::fromPacket(packet("10.0.0.1", 1000, "10.0.0.2", 80, Direction::kIngress));
  EXPECT_NE(a, b);
  EXPECT_EQ(formatConnection(b), "10.0.0.2:80 -> 10.0.0.1:1000");
}

TEST(FlowKey, DifferentProtocolDifferentKey) {
  const FlowKey tcp =
      FlowKey::fromPacket(packet("10.0.0.1", 53, "10.0.0.2", 53, Direction::kEgress, 6));
  const FlowKey udp =
      FlowKey::fromPacket(packet("10.0.0.1", 53, "10.0.0.2", 53, Direction::kEgress, 17));
  EXPECT_NE(tcp, udp);
  EXPECT_NE(FlowKeyHash{}(tcp), FlowKeyHash{}(udp));
}

TEST(FlowKey, PortsAndAddressesDistinguishKeys) {
  const FlowKey base =
      FlowKey::fromPacket(packet("10.0.0.1", 1000, "10.0.0.2", 80, Direction::kEgress));
  FlowKey k = base;
  k.local_port = 1001;
  EXPECT_NE(k, base);
  k = base;
  k.remote_port = 81;
  EXPECT_NE(k, base);
  k = base;
  k.remote = ip("10.0.0.3");
  EXPECT_NE(k, base);
  k = base;
  EXPECT_EQ(k, base);
}

TEST(FlowKey, Ipv6KeyAndFormatting) {
  const FlowKey k = FlowKey::fromPacket(
      packet("2001:db8::1", 443, "2001:db8:0:0:1::2", 50000, Direction::kIngress));
  EXPECT_EQ(formatConnection(k), "[2001:db8::1:0:0:2]:50000 -> [2001:db8::1]:443");
}

TEST(FlowKey, EndpointFormatting) {
  EXPECT_EQ(formatEndpoint(ip("1.2.3.4"), 80), "1.2.3.4:80");
  EXPECT_EQ(formatEndpoint(ip("0.0.0.0"), 0), "0.0.0.0:0");
  EXPECT_EQ(formatEndpoint(ip("255.255.255.255"), 65535), "255.255.255.255:65535");
  EXPECT_EQ(formatEndpoint(ip("2001:db8::1"), 443), "[2001:db8::1]:443");
  EXPECT_EQ(formatEndpoint(ip("::1"), 53), "[::1]:53");
  EXPECT_EQ(formatEndpoint(ip("::"), 1), "[::]:1");
  EXPECT_EQ(formatEndpoint(ip("fe80::"), 8080), "[fe80::]:8080");
  // RFC 5952: the longest zero run is compressed; the first one on a tie; a single zero
  // group is not; lowercase; no leading zeros.
  EXPECT_EQ(ip("2001:0db8:0000:0000:0001:0000:0000:0001").toString(), "2001:db8::1:0:0:1");
  EXPECT_EQ(ip("2001:db8:0:1:1:1:1:1").toString(), "2001:db8:0:1:1:1:1:1");
  EXPECT_EQ(ip("2001:0:0:1:0:0:0:1").toString(), "2001:0:0:1::1");
  EXPECT_EQ(ip("ABCD:EF01:2345:6789:ABCD:EF01:2345:6789").toString(),
            "abcd:ef01:2345:6789:abcd:ef01:2345:6789");
  EXPECT_EQ(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").toString(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  EXPECT_EQ(ip("1::").toString(), "1::");
  // Mapped IPv4 is shown as plain IPv4.
  EXPECT_EQ(ip("::ffff:10.1.2.3").toString(), "10.1.2.3");
  EXPECT_EQ(IpAddress::fromV4(0x7f000001).toString(), "127.0.0.1");
}

TEST(FlowKey, Ipv6FormattingMatchesInetNtop) {
  // Random addresses with many zero groups, compared with glibc's inet_ntop (which
  // follows RFC 5952 except for its embedded-IPv4 forms, excluded here).
  std::mt19937_64 rng(12345);
  int compared = 0;
  for (int n = 0; n < 20000; ++n) {
    IpAddress a;
    for (int w = 0; w < 8; ++w) {
      const std::uint64_t r = rng();
      const unsigned v =
          (r & 1) ? 0 : static_cast<unsigned>((r >> 8) & (0xffffu >> ((r >> 4) & 15)));
      a.bytes[2 * w] = static_cast<std::uint8_t>(v >> 8);
      a.bytes[2 * w + 1] = static_cast<std::uint8_t>(v);
    }
    bool first80zero = true;
    for (int i = 0; i < 10; ++i) first80zero = first80zero && a.bytes[i] == 0;
    if (first80zero) continue;
    char expect[INET6_ADDRSTRLEN];
    ASSERT_NE(inet_ntop(AF_INET6, a.bytes.data(), expect, sizeof expect), nullptr);
    ASSERT_EQ(a.toString(), expect);
    const auto back = IpAddress::parse(a.toString());
    ASSERT_TRUE(back);
    ASSERT_EQ(*back, a);
    ++compared;
  }
  EXPECT_GT(compared, 10000);
}

TEST(FlowKey, HashEqualForEqualKeysAndSeeded) {
  const FlowKey a = FlowKey::fromPacket(packet("10.0.0.1", 1, "10.0.0.2", 2, Direction::kEgress));
  const FlowKey b = a;
  EXPECT_EQ(FlowKeyHash{}(a), FlowKeyHash{}(b));
  EXPECT_EQ(hashFlowKey(a), hashFlowKey(b));
  EXPECT_EQ(hashFlowKey(a, 0), hashFlowKey(a));
  EXPECT_EQ(FlowKeyHash{7}(a), FlowKeyHash{7}(b));
  EXPECT_NE(FlowKeyHash{7}(a), FlowKeyHash{8}(a));
  const std::uint64_t s1 = randomHashSeed();
  const std::uint64_t s2 = randomHashSeed();
  EXPECT_NE(s1, s2);  // 2^-64 chance of a false failure
  EXPECT_NE(hashFlowKey(a, s1), hashFlowKey(a, s2));
}

TEST(FlowKey, HashSpreadsSequentialKeys) {
  // Sequential ports: no full-hash collisions, and both the high 4 bits (shard) and the
  // low 10 bits (slot) are used roughly evenly, with or without a seed.
  for (const std::uint64_t seed : {std::uint64_t{0}, randomHashSeed()}) {
    FlowKey k = FlowKey::fromPacket(packet("10.0.0.1", 1, "10.0.0.2", 2, Direction::kEgress));
    std::unordered_set<std::uint64_t> seen;
    std::size_t high[16] = {};
    std::size_t low_set[1024] = {};
    constexpr int kN = 65536;
    for (int port = 0; port < kN; ++port) {
      k.local_port = static_cast<std::uint16_t>(port);
      const std::uint64_t h = hashFlowKey(k, seed);
      seen.insert(h);
      ++high[h >> 60];
      ++low_set[h & 1023];
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(kN));
    for (std::size_t c : high) {
      EXPECT_GT(c, kN / 16 * 8 / 10);
      EXPECT_LT(c, kN / 16 * 12 / 10);
    }
    for (std::size_t c : low_set) {
      EXPECT_GT(c, 20u);  // mean 64
      EXPECT_LT(c, 120u);
    }
  }
}

}  // namespace
}  // namespace ayaflow::flow
