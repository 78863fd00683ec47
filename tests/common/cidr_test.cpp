// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/cidr.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace ayaflow::common {
namespace {

std::array<std::uint8_t, 16> v6(const char* text) {
  in6_addr a{};
  EXPECT_EQ(inet_pton(AF_INET6, text, &a), 1) << text;
  std::array<std::uint8_t, 16> out;
  std::memcpy(out.data(), &a, 16);
  return out;
}

/// IPv4 address as the IPv4-mapped bytes a dual-stack socket reports.
std::array<std::uint8_t, 16> v4(const char* text) {
  in_addr a{};
  EXPECT_EQ(inet_pton(AF_INET, text, &a), 1) << text;
  return mapIpv4(a);
}

Cidr mustParse(const char* text) {
  const auto cidr = Cidr::parse(text);
  EXPECT_TRUE(cidr.has_value()) << text;
  return cidr.value_or(Cidr{});
}

TEST(CidrTest, ParsesIpv4NetworkAsMappedIpv6) {
  const Cidr c = mustParse("10.0.0.0/8");
  EXPECT_TRUE(c.v4);
  EXPECT_EQ(c.prefix_len, 104);
  EXPECT_EQ(c.network, v6("::ffff:10.0.0.0"));
  EXPECT_EQ(c.toString(), "10.0.0.0/8");
}

TEST(CidrTest, BareAddressIsHostRoute) {
  EXPECT_EQ(mustParse("192.168.1.5").prefix_len, 128);
  EXPECT_EQ(mustParse("192.168.1.5").toString(), "192.168.1.5/32");
  EXPECT_EQ(mustParse("2001:db8::1").prefix_len, 128);
  EXPECT_EQ(mustParse("2001:db8::1").toString(), "2001:db8::1/128");
  EXPECT_FALSE(mustParse("2001:db8::1").v4);
}

TEST(CidrTest, HostBitsAreMasked) {
  EXPECT_EQ(mustParse("10.1.2.3/8").toString(), "10.0.0.0/8");
  EXPECT_EQ(mustParse("10.1.2.3/8"), mustParse("10.0.0.0/8"));
  EXPECT_EQ(mustParse("192.168.255.255/23").toString(), "192.168.254.0/23");
  EXPECT_EQ(mustParse("2001:db8:ffff::1/33").toString(), "2001:db8:8000::/33");
  EXPECT_EQ(mustParse("1.2.3.4/0").toString(), "0.0.0.0/0");
  EXPECT_EQ(mustParse("ffff::1/0").toString(), "::/0");
}

TEST(CidrTest, ToStringRoundTrips) {
  for (const char* text : {"0.0.0.0/0", "10.0.0.0/8", "172.16.0.0/12", "1.2.3.4/32", "::/0",
                           "2001:db8::/32", "fe80::/10", "::1/128", "::ffff:10.0.0.0/104"}) {
    const Cidr c = mustParse(text);
    EXPECT_EQ(c.toString(), text);
    EXPECT_EQ(mustParse(c.toString().c_str()), c) << text;
  }
}

TEST(CidrTest, Ipv4ContainmentEdges) {
  const Cidr c = mustParse("192.168.1.0/24");
  EXPECT_TRUE(c.contains(v4("192.168.1.0")));
  EXPECT_TRUE(c.contains(v4("192.168.1.255")));
  EXPECT_FALSE(c.contains(v4("192.168.0.255")));
  EXPECT_FALSE(c.contains(v4("192.168.2.0")));

  const Cidr odd = mustParse("10.0.0.64/27");  // .64 - .95
  EXPECT_FALSE(odd.contains(v4("10.0.0.63")));
  EXPECT_TRUE(odd.contains(v4("10.0.0.64")));
  EXPECT_TRUE(odd.contains(v4("10.0.0.95")));
  EXPECT_FALSE(odd.contains(v4("10.0.0.96")));

  const Cidr host = mustParse("10.0.0.1/32");
  EXPECT_TRUE(host.contains(v4("10.0.0.1")));
  EXPECT_FALSE(host.contains(v4("10.0.0.0")));
  EXPECT_FALSE(host.contains(v4("10.0.0.2")));
}

TEST(CidrTest, Ipv4SlashZeroMatchesEveryIpv4PeerButNoIpv6Peer) {
  const Cidr all4 = mustParse("0.0.0.0/0");
  EXPECT_TRUE(all4.contains(v4("0.0.0.0")));
  EXPECT_TRUE(all4.contains(v4("255.255.255.255")));
  EXPECT_FALSE(all4.contains(v6("::1")));
  EXPECT_FALSE(all4.contains(v6("2001:db8::1")));
  EXPECT_FALSE(all4.contains(v6("::")));
}

TEST(CidrTest, Ipv6SlashZeroMatchesEverything) {
  const Cidr all = mustParse("::/0");
  EXPECT_TRUE(all.contains(v6("::")));
  EXPECT_TRUE(all.contains(v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(all.contains(v4("10.1.2.3")));  // IPv4-mapped peers too
}

TEST(CidrTest, Ipv6ContainmentEdges) {
  const Cidr c = mustParse("2001:db8::/32");
  EXPECT_TRUE(c.contains(v6("2001:db8::")));
  EXPECT_TRUE(c.contains(v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(c.contains(v6("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(c.contains(v6("2001:db9::")));

  const Cidr odd = mustParse("fe80::/10");
  EXPECT_TRUE(odd.contains(v6("febf:ffff::1")));
  EXPECT_FALSE(odd.contains(v6("fec0::1")));
  EXPECT_FALSE(odd.contains(v6("fe7f::1")));

  const Cidr host = mustParse("::1/128");
  EXPECT_TRUE(host.contains(v6("::1")));
  EXPECT_FALSE(host.contains(v6("::2")));
  EXPECT_FALSE(host.contains(v6("::")));
}

TEST(CidrTest, Ipv4CidrMatchesMappedPeersOnly) {
  const Cidr lo = mustParse("127.0.0.0/8");
  EXPECT_TRUE(lo.contains(v6("::ffff:127.0.0.1")));
  // Same low 32 bits but not IPv4-mapped: an IPv4-compatible address or a plain IPv6 one.
  EXPECT_FALSE(lo.contains(v6("::127.0.0.1")));
  EXPECT_FALSE(lo.contains(v6("64:ff9b::127.0.0.1")));
}

TEST(CidrTest, MappedIpv6TextMatchesSamePeersAsIpv4) {
  const Cidr mapped = mustParse("::ffff:10.0.0.0/104");
  EXPECT_FALSE(mapped.v4);
  EXPECT_TRUE(mapped.contains(v4("10.255.0.1")));
  EXPECT_FALSE(mapped.contains(v4("11.0.0.1")));
}

TEST(CidrTest, InAddrHelpers) {
  const Cidr c = mustParse("192.0.2.0/24");
  in_addr a4{};
  ASSERT_EQ(inet_pton(AF_INET, "192.0.2.77", &a4), 1);
  EXPECT_TRUE(c.contains(a4));
  ASSERT_EQ(inet_pton(AF_INET, "192.0.3.1", &a4), 1);
  EXPECT_FALSE(c.contains(a4));

  in6_addr a6{};
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:192.0.2.1", &a6), 1);
  EXPECT_TRUE(c.contains(a6));
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::1", &a6), 1);
  EXPECT_FALSE(c.contains(a6));
  EXPECT_TRUE(mustParse("2001:db8::/64").contains(a6));
}

TEST(CidrTest, AcceptsAllPrefixLengths) {
  for (int len = 0; len <= 32; ++len) {
    const std::string text = "255.255.255.255/" + std::to_string(len);
    const auto c = Cidr::parse(text);
    ASSERT_TRUE(c) << text;
    EXPECT_EQ(c->prefix_len, 96 + len);
    EXPECT_TRUE(c->contains(v4("255.255.255.255")));
    EXPECT_EQ(c->contains(v4("0.0.0.0")), len == 0) << text;
  }
  for (int len = 0; len <= 128; ++len) {
    const std::string text = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/" + std::to_string(len);
    const auto c = Cidr::parse(text);
    ASSERT_TRUE(c) << text;
    EXPECT_EQ(c->prefix_len, len);
    EXPECT_EQ(c->contains(v6("::")), len == 0) << text;
  }
}

class CidrBadTextTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CidrBadTextTest, IsRejected) { EXPECT_FALSE(Cidr::parse(GetParam()).has_value()); }

INSTANTIATE_TEST_SUITE_P(
    Table, CidrBadTextTest,
    ::testing::Values("", "/", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8",
                      "10.0.0.0/08", "10.0.0.0/8/8", "10.0.0.0/8x", "10.0.0.0/1000",
                      "10.0.0.0/99999999999999999999", "2001:db8::/129", "::/00", "10.0.0",
                      "10.0.0.0.0", "256.0.0.0/8", "010.0.0.0/8", "10.0.0.0 /8", "10.0.0.0/ 8",
                      " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0.0/8\n", "abc", "localhost",
                      "1.2.3.4:80", "2001:db8:::/32", "2001:db8::g/32", "[::1]", "[::1]/128",
                      "fe80::1%eth0", "0x0a.0.0.0/8"));

TEST(CidrTest, RejectsEmbeddedNul) {
  EXPECT_FALSE(Cidr::parse(std::string_view("10.0.0.0\0/8", 11)).has_value());
  EXPECT_FALSE(Cidr::parse(std::string_view("10.0.0.0/8\0", 11)).has_value());
}

}  // namespace
}  // namespace ayaflow::common
