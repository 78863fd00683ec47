// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/domain_map.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ayaflow/inspect/dns.h"
#include "test_data.h"

namespace ayaflow::inspect {
namespace {

using namespace std::chrono_literals;
using testing::readData;

flow::IpAddress ip(const char* text) { return *flow::IpAddress::parse(text); }

/// A manual clock for DomainMap.
struct FakeClock {
  std::chrono::steady_clock::time_point now{std::chrono::hours(1000)};
  DomainMap::Clock fn() {
    return [this] { return now; };
  }
};

/// A TCP connection local:local_port -> remote:remote_port.
flow::FlowKey conn(const char* local, std::uint16_t local_port, const char* remote,
                   std::uint16_t remote_port) {
  flow::FlowKey k;
  k.local = ip(local);
  k.remote = ip(remote);
  k.local_port = local_port;
  k.remote_port = remote_port;
  k.protocol = 6;
  return k;
}

flow::FlowKey reversed(flow::FlowKey k) {
  std::swap(k.local, k.remote);
  std::swap(k.local_port, k.remote_port);
  return k;
}

TEST(DomainMap, SniBeatsDns) {
  FakeClock clock;
  DomainMap m({}, clock.fn());
  const flow::FlowKey tls = conn("10.0.0.1", 40000, "10.0.0.7", 443);
  EXPECT_FALSE(m.lookup(tls));
  EXPECT_TRUE(m.learnDns(ip("10.0.0.1"), ip("10.0.0.7"), "www.example.test"));
  EXPECT_EQ(m.lookup(tls), "www.example.test");
  EXPECT_EQ(m.lookup(conn("10.0.0.1", 40001, "10.0.0.7", 80)), "www.example.test");
  EXPECT_TRUE(m.learnSni(tls, "api.example.test"));
  EXPECT_EQ(m.lookup(tls), "api.example.test");
  EXPECT_EQ(m.lookup(reversed(tls)), "api.example.test");  // seen from the server end
  EXPECT_EQ(m.lookup(conn("10.0.0.1", 40001, "10.0.0.7", 443)), "www.example.test");
  EXPECT_EQ(m.dnsName(ip("10.0.0.1"), ip("10.0.0.7")), "www.example.test");
  EXPECT_EQ(m.dnsName(ip("10.0.0.7")), "www.example.test");
  EXPECT_EQ(m.sniName(tls), "api.example.test");
  EXPECT_FALSE(m.sniName(conn("10.0.0.1", 40000, "10.0.0.7", 8443)));
}

TEST(DomainMap, InterleavedConnectionsToOneServerKeepTheirOwnSni) {
  DomainMap m;
  const flow::FlowKey a = conn("10.0.0.1", 40001, "10.0.0.7", 443);
  const flow::FlowKey b = conn("10.0.0.1", 40002, "10.0.0.7", 443);
  const flow::FlowKey c = conn("10.0.0.2", 40001, "10.0.0.7", 443);  // another client
  EXPECT_TRUE(m.learnSni(a, "a.example.test"));
  EXPECT_EQ(m.lookup(a), "a.example.test");  // named before the others arrive
  EXPECT_TRUE(m.learnSni(b, "b.example.test"));
  EXPECT_TRUE(m.learnSni(c, "c.example.test"));
  EXPECT_EQ(m.lookup(a), "a.example.test");
  EXPECT_EQ(m.lookup(b), "b.example.test");
  EXPECT_EQ(m.lookup(c), "c.example.test");
  EXPECT_EQ(m.lookup(reversed(b)), "b.example.test");
  EXPECT_EQ(m.sniSize(), 3u);
  // A fourth connection without an SNI (or not yet seen) is not named by the others.
  EXPECT_FALSE(m.lookup(conn("10.0.0.1", 40003, "10.0.0.7", 443)));
  // UDP with the same ports is another connection.
  flow::FlowKey udp = a;
  udp.protocol = 17;
  EXPECT_FALSE(m.lookup(udp));
}

TEST(DomainMap, DnsNamesAnAddressForTheClientThatAsked) {
  DomainMap m;
  const flow::IpAddress server = ip("10.0.0.7");
  EXPECT_TRUE(m.learnDns(ip("10.0.0.1"), server, "one.example.test"));
  EXPECT_TRUE(m.learnDns(ip("10.0.0.2"), server, "two.example.test"));
  EXPECT_EQ(m.lookup(conn("10.0.0.1", 40000, "10.0.0.7", 443)), "one.example.test");
  EXPECT_EQ(m.lookup(conn("10.0.0.2", 40000, "10.0.0.7", 443)), "two.example.test");
  // No lookup by 10.0.0.3: the latest answer to anyone.
  EXPECT_EQ(m.lookup(conn("10.0.0.3", 40000, "10.0.0.7", 443)), "two.example.test");
  EXPECT_TRUE(m.learnDns(ip("10.0.0.1"), server, "three.example.test"));
  EXPECT_EQ(m.lookup(conn("10.0.0.3", 40000, "10.0.0.7", 443)), "three.example.test");
  EXPECT_EQ(m.lookup(conn("10.0.0.1", 40000, "10.0.0.7", 443)), "three.example.test");
  EXPECT_EQ(m.lookup(conn("10.0.0.2", 40000, "10.0.0.7", 443)), "two.example.test");
  EXPECT_EQ(m.dnsSize(), 2u);
  EXPECT_EQ(m.dnsAnySize(), 1u);
  // Its own SNI still beats every DNS name.
  const flow::FlowKey tls = conn("10.0.0.2", 40001, "10.0.0.7", 443);
  m.learnSni(tls, "sni.example.test");
  EXPECT_EQ(m.lookup(tls), "sni.example.test");
  EXPECT_FALSE(m.lookup(conn("10.0.0.2", 40000, "10.0.0.8", 443)));
}

TEST(DomainMap, TtlExpiry) {
  FakeClock clock;
  DomainMap m({}, clock.fn());  // 300 s
  const flow::FlowKey dns = conn("10.0.0.1", 40000, "10.0.0.7", 80);
  const flow::FlowKey tls = conn("10.0.0.1", 40001, "10.0.0.8", 443);
  m.learnDns(ip("10.0.0.1"), ip("10.0.0.7"), "a.test");
  m.learnSni(tls, "b.test");
  clock.now += 299s;
  EXPECT_EQ(m.lookup(dns), "a.test");
  EXPECT_EQ(m.lookup(conn("10.0.0.2", 40000, "10.0.0.7", 80)), "a.test");
  EXPECT_EQ(m.expire(), 0u);
  clock.now += 1s;  // exactly 300 s: gone
  EXPECT_FALSE(m.lookup(dns));
  EXPECT_FALSE(m.lookup(conn("10.0.0.2", 40000, "10.0.0.7", 80)));
  EXPECT_FALSE(m.lookup(tls));
  EXPECT_EQ(m.dnsSize(), 1u);  // still stored until expire()
  EXPECT_EQ(m.expire(), 3u);   // per client, any client, SNI
  EXPECT_EQ(m.dnsSize(), 0u);
  EXPECT_EQ(m.dnsAnySize(), 0u);
  EXPECT_EQ(m.sniSize(), 0u);
}

TEST(DomainMap, RefreshExtendsAndCountsOnlyNewNames) {
  FakeClock clock;
  DomainMap::Options o;
  o.ttl = 10s;
  DomainMap m(o, clock.fn());
  const flow::IpAddress client = ip("10.0.0.1");
  const flow::IpAddress a = ip("10.0.0.7");
  const flow::FlowKey k = conn("10.0.0.1", 40000, "10.0.0.7", 443);
  EXPECT_TRUE(m.learnDns(client, a, "a.test"));
  clock.now += 8s;
  EXPECT_FALSE(m.learnDns(client, a, "A.TEST"));  // same name (case-folded): refresh
  clock.now += 8s;
  EXPECT_EQ(m.lookup(k), "a.test");              // alive thanks to the refresh
  EXPECT_TRUE(m.learnDns(client, a, "b.test"));  // a different name counts
  EXPECT_EQ(m.lookup(k), "b.test");
  clock.now += 10s;
  EXPECT_TRUE(m.learnDns(client, a, "b.test"));          // expired, learned again: counts
  EXPECT_TRUE(m.learnDns(ip("10.0.0.2"), a, "b.test"));  // another client counts
  EXPECT_FALSE(m.learnSni(k, "bad name"));
  EXPECT_TRUE(m.learnSni(k, "b.test"));
  EXPECT_FALSE(m.learnSni(k, "b.test"));
  EXPECT_EQ(m.counters().dns_learned, 4u);
  EXPECT_EQ(m.counters().sni_learned, 1u);
  EXPECT_EQ(m.domainsResolved(), 5u);
}

TEST(DomainMap, InvalidNamesAreRefused) {
  DomainMap m;
  const flow::IpAddress c = ip("10.0.0.1");
  EXPECT_FALSE(m.learnDns(c, ip("10.0.0.7"), ""));
  EXPECT_FALSE(m.learnDns(c, ip("10.0.0.7"), "10.0.0.7"));
  EXPECT_FALSE(m.learnDns(c, ip("10.0.0.7"), std::string("a\0b", 3)));
  EXPECT_FALSE(m.learnSni(conn("10.0.0.1", 1, "10.0.0.7", 443), std::string(300, 'a')));
  EXPECT_EQ(m.dnsSize(), 0u);
  EXPECT_EQ(m.dnsAnySize(), 0u);
  EXPECT_EQ(m.domainsResolved(), 0u);
}

TEST(DomainMap, BoundedSizeEvictsOldest) {
  FakeClock clock;
  DomainMap::Options o;
  o.max_dns_entries = 3;
  o.max_sni_entries = 2;
  DomainMap m(o, clock.fn());
  const flow::IpAddress c = ip("10.0.0.100");
  m.learnDns(c, ip("10.0.0.1"), "one.test");
  clock.now += 1s;
  m.learnDns(c, ip("10.0.0.2"), "two.test");
  clock.now += 1s;
  m.learnDns(c, ip("10.0.0.3"), "three.test");
  clock.now += 1s;
  m.learnDns(c, ip("10.0.0.1"), "one.test");   // refresh: now the newest
  m.learnDns(c, ip("10.0.0.4"), "four.test");  // evicts 10.0.0.2 from both DNS tables
  EXPECT_EQ(m.dnsSize(), 3u);
  EXPECT_EQ(m.dnsAnySize(), 3u);
  EXPECT_FALSE(m.dnsName(c, ip("10.0.0.2")));
  EXPECT_FALSE(m.dnsName(ip("10.0.0.2")));
  EXPECT_EQ(m.dnsName(c, ip("10.0.0.1")), "one.test");
  EXPECT_EQ(m.dnsName(ip("10.0.0.4")), "four.test");
  EXPECT_EQ(m.counters().evictions, 2u);
  // Many clients, one address: the per-client table is bounded, the any-client one holds
  // one entry.
  for (int i = 0; i < 10; ++i)
    m.learnDns(flow::IpAddress::fromV4(0x0a010000u + i), ip("10.0.0.9"), "nine.test");
  EXPECT_EQ(m.dnsSize(), 3u);
  EXPECT_EQ(m.dnsAnySize(), 3u);
  EXPECT_EQ(m.dnsName(ip("10.0.0.9")), "nine.test");
  EXPECT_EQ(m.counters().evictions, 2u + 10u + 1u);
  // Connections: the oldest SNI goes first.
  const flow::FlowKey a = conn("10.0.0.100", 1, "10.0.0.1", 443);
  const flow::FlowKey b = conn("10.0.0.100", 2, "10.0.0.1", 443);
  const flow::FlowKey d = conn("10.0.0.100", 3, "10.0.0.1", 443);
  m.learnSni(a, "a.test");
  m.learnSni(b, "b.test");
  m.learnSni(d, "d.test");
  EXPECT_EQ(m.sniSize(), 2u);
  EXPECT_FALSE(m.sniName(a));
  EXPECT_EQ(m.sniName(b), "b.test");
  EXPECT_EQ(m.sniName(d), "d.test");
  EXPECT_EQ(m.counters().evictions, 2u + 10u + 1u + 1u);
}

TEST(DomainMap, LearnsFromRealResponses) {
  DomainMap m;
  const flow::IpAddress client = ip("10.215.0.2");
  for (const char* file : {"dns_a.response.bin", "dns_aaaa.response.bin"}) {
    const auto b = readData(file);
    const auto msg = parseDnsMessage(b.data(), b.size());
    ASSERT_TRUE(msg);
    EXPECT_EQ(m.learnDnsResponse(*msg, client), 1u);
  }
  EXPECT_EQ(m.lookup(conn("10.215.0.2", 1, "10.215.0.7", 443)), "www.example.test");
  EXPECT_EQ(m.lookup(conn("fd00:215::2", 1, "fd00:215::7", 443)), "www.example.test");
  EXPECT_EQ(m.dnsName(client, ip("fd00:215::7")), "www.example.test");
  // The CNAME chain maps the address to the name the user asked for.
  const auto b = readData("dns_cname.response.bin");
  const auto chain = parseDnsMessage(b.data(), b.size());
  ASSERT_TRUE(chain);
  EXPECT_EQ(m.learnDnsResponse(*chain, client), 1u);
  EXPECT_EQ(m.lookup(conn("10.215.0.2", 1, "10.215.0.7", 443)), "chain.example.test");
  // Queries and NXDOMAIN teach nothing.
  for (const char* file : {"dns_a.query.bin", "dns_nxdomain.response.bin"}) {
    const auto q = readData(file);
    const auto msg = parseDnsMessage(q.data(), q.size());
    ASSERT_TRUE(msg);
    EXPECT_EQ(m.learnDnsResponse(*msg, client), 0u);
  }
  EXPECT_EQ(m.domainsResolved(), 3u);
}

TEST(DomainMap, ConcurrentUse) {
  DomainMap::Options o;
  o.max_dns_entries = 256;
  o.max_sni_entries = 512;
  DomainMap m(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t] {
      for (std::uint32_t i = 0; i < 2000; ++i) {
        const auto a = flow::IpAddress::fromV4(0x0a000000u + (i % 512));
        flow::FlowKey k;
        k.local = flow::IpAddress::fromV4(0x0a010000u + (i % 3));
        k.remote = a;
        k.local_port = static_cast<std::uint16_t>(40000 + i % 5);
        k.remote_port = 443;
        k.protocol = 6;
        if (t % 2 == 0) {
          m.learnDns(k.local, a, "h" + std::to_string(i % 7) + ".test");
          m.learnSni(k, "s.test");
        } else {
          (void)m.lookup(k);
          if (i % 100 == 0) m.expire();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(m.dnsSize(), 256u);
  EXPECT_LE(m.dnsAnySize(), 256u);
  EXPECT_LE(m.sniSize(), 512u);
}

}  // namespace
}  // namespace ayaflow::inspect
