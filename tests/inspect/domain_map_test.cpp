// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/domain_map.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
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

TEST(DomainMap, SniBeatsDns) {
  FakeClock clock;
  DomainMap m({}, clock.fn());
  EXPECT_FALSE(m.lookup(ip("10.0.0.7"), 443));
  EXPECT_TRUE(m.learnDns(ip("10.0.0.7"), "www.example.test"));
  EXPECT_EQ(m.lookup(ip("10.0.0.7"), 443), "www.example.test");
  EXPECT_EQ(m.lookup(ip("10.0.0.7"), 80), "www.example.test");
  EXPECT_TRUE(m.learnSni(ip("10.0.0.7"), 443, "api.example.test"));
  EXPECT_EQ(m.lookup(ip("10.0.0.7"), 443), "api.example.test");
  EXPECT_EQ(m.lookup(ip("10.0.0.7"), 80), "www.example.test");  // SNI is per port
  flow::FlowKey k;
  k.remote = ip("10.0.0.7");
  k.remote_port = 443;
  EXPECT_EQ(m.lookup(k), "api.example.test");
  EXPECT_EQ(m.dnsName(ip("10.0.0.7")), "www.example.test");
  EXPECT_EQ(m.sniName(ip("10.0.0.7"), 443), "api.example.test");
  EXPECT_FALSE(m.sniName(ip("10.0.0.7"), 8443));
}

TEST(DomainMap, TtlExpiry) {
  FakeClock clock;
  DomainMap m({}, clock.fn());  // 300 s
  m.learnDns(ip("10.0.0.7"), "a.test");
  m.learnSni(ip("10.0.0.8"), 443, "b.test");
  clock.now += 299s;
  EXPECT_EQ(m.lookup(ip("10.0.0.7"), 0), "a.test");
  EXPECT_EQ(m.expire(), 0u);
  clock.now += 1s;  // exactly 300 s: gone
  EXPECT_FALSE(m.lookup(ip("10.0.0.7"), 0));
  EXPECT_FALSE(m.lookup(ip("10.0.0.8"), 443));
  EXPECT_EQ(m.dnsSize(), 1u);  // still stored until expire()
  EXPECT_EQ(m.expire(), 2u);
  EXPECT_EQ(m.dnsSize(), 0u);
  EXPECT_EQ(m.sniSize(), 0u);
}

TEST(DomainMap, RefreshExtendsAndCountsOnlyNewNames) {
  FakeClock clock;
  DomainMap::Options o;
  o.ttl = 10s;
  DomainMap m(o, clock.fn());
  EXPECT_TRUE(m.learnDns(ip("10.0.0.7"), "a.test"));
  clock.now += 8s;
  EXPECT_FALSE(m.learnDns(ip("10.0.0.7"), "A.TEST"));  // same name (case-folded): refresh
  clock.now += 8s;
  EXPECT_EQ(m.lookup(ip("10.0.0.7"), 0), "a.test");   // alive thanks to the refresh
  EXPECT_TRUE(m.learnDns(ip("10.0.0.7"), "b.test"));  // a different name counts
  EXPECT_EQ(m.lookup(ip("10.0.0.7"), 0), "b.test");
  clock.now += 10s;
  EXPECT_TRUE(m.learnDns(ip("10.0.0.7"), "b.test"));  // expired, learned again: counts
  EXPECT_FALSE(m.learnSni(ip("10.0.0.7"), 443, "bad name"));
  EXPECT_TRUE(m.learnSni(ip("10.0.0.7"), 443, "b.test"));
  EXPECT_FALSE(m.learnSni(ip("10.0.0.7"), 443, "b.test"));
  EXPECT_EQ(m.counters().dns_learned, 3u);
  EXPECT_EQ(m.counters().sni_learned, 1u);
  EXPECT_EQ(m.domainsResolved(), 4u);
}

TEST(DomainMap, InvalidNamesAreRefused) {
  DomainMap m;
  EXPECT_FALSE(m.learnDns(ip("10.0.0.7"), ""));
  EXPECT_FALSE(m.learnDns(ip("10.0.0.7"), "10.0.0.7"));
  EXPECT_FALSE(m.learnDns(ip("10.0.0.7"), std::string("a\0b", 3)));
  EXPECT_FALSE(m.learnSni(ip("10.0.0.7"), 443, std::string(300, 'a')));
  EXPECT_EQ(m.dnsSize(), 0u);
  EXPECT_EQ(m.domainsResolved(), 0u);
}

TEST(DomainMap, BoundedSizeEvictsOldest) {
  FakeClock clock;
  DomainMap::Options o;
  o.max_dns_entries = 3;
  o.max_sni_entries = 1;
  DomainMap m(o, clock.fn());
  m.learnDns(ip("10.0.0.1"), "one.test");
  clock.now += 1s;
  m.learnDns(ip("10.0.0.2"), "two.test");
  clock.now += 1s;
  m.learnDns(ip("10.0.0.3"), "three.test");
  clock.now += 1s;
  m.learnDns(ip("10.0.0.1"), "one.test");   // refresh: now the newest
  m.learnDns(ip("10.0.0.4"), "four.test");  // evicts 10.0.0.2
  EXPECT_EQ(m.dnsSize(), 3u);
  EXPECT_FALSE(m.dnsName(ip("10.0.0.2")));
  EXPECT_EQ(m.dnsName(ip("10.0.0.1")), "one.test");
  EXPECT_EQ(m.dnsName(ip("10.0.0.4")), "four.test");
  m.learnSni(ip("10.0.0.1"), 443, "a.test");
  m.learnSni(ip("10.0.0.1"), 8443, "b.test");
  EXPECT_EQ(m.sniSize(), 1u);
  EXPECT_EQ(m.sniName(ip("10.0.0.1"), 8443), "b.test");
  EXPECT_EQ(m.counters().evictions, 2u);
}

TEST(DomainMap, LearnsFromRealResponses) {
  DomainMap m;
  for (const char* file : {"dns_a.response.bin", "dns_aaaa.response.bin"}) {
    const auto b = readData(file);
    const auto msg = parseDnsMessage(b.data(), b.size());
    ASSERT_TRUE(msg);
    EXPECT_EQ(m.learnDnsResponse(*msg), 1u);
  }
  EXPECT_EQ(m.lookup(ip("10.215.0.7"), 443), "www.example.test");
  EXPECT_EQ(m.lookup(ip("fd00:215::7"), 443), "www.example.test");
  // The CNAME chain maps the address to the name the user asked for.
  const auto b = readData("dns_cname.response.bin");
  const auto chain = parseDnsMessage(b.data(), b.size());
  ASSERT_TRUE(chain);
  EXPECT_EQ(m.learnDnsResponse(*chain), 1u);
  EXPECT_EQ(m.lookup(ip("10.215.0.7"), 443), "chain.example.test");
  // Queries and NXDOMAIN teach nothing.
  for (const char* file : {"dns_a.query.bin", "dns_nxdomain.response.bin"}) {
    const auto q = readData(file);
    const auto msg = parseDnsMessage(q.data(), q.size());
    ASSERT_TRUE(msg);
    EXPECT_EQ(m.learnDnsResponse(*msg), 0u);
  }
  EXPECT_EQ(m.domainsResolved(), 3u);
}

TEST(DomainMap, ConcurrentUse) {
  DomainMap::Options o;
  o.max_dns_entries = 256;
  DomainMap m(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m, t] {
      for (std::uint32_t i = 0; i < 2000; ++i) {
        const auto a = flow::IpAddress::fromV4(0x0a000000u + (i % 512));
        if (t % 2 == 0) {
          m.learnDns(a, "h" + std::to_string(i % 7) + ".test");
          m.learnSni(a, 443, "s.test");
        } else {
          (void)m.lookup(a, 443);
          if (i % 100 == 0) m.expire();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(m.dnsSize(), 256u);
  EXPECT_LE(m.sniSize(), 512u);
}

}  // namespace
}  // namespace ayaflow::inspect
