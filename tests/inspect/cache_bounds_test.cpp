// SPDX-License-Identifier: MIT OR Apache-2.0
// Every cache of deep inspection and reverse DNS is bounded: filled to twice its bound with
// the worst-case input (the longest valid names, streams with the most holes), it stays at
// its bound, counts what it pushed out, and its heap stays under the worst case that
// docs/deep-inspection.md states. Heap in use is measured with glibc's mallinfo2().
#include <malloc.h>

#include <gtest/gtest.h>
#include <prometheus/metric_family.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/inspect/deep_inspection.h"
#include "ayaflow/inspect/domain_map.h"
#include "ayaflow/inspect/payload_inspector.h"
#include "ayaflow/inspect/reverse_resolver.h"
#include "ayaflow/inspect/stream_reassembler.h"

namespace ayaflow::inspect {
namespace {

// Bytes allocated from malloc, in the heap and in mmap()ed chunks, over all arenas.
std::size_t heapInUse() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// The longest valid host name: 253 characters (three 63-character labels and a 61).
std::string longestName(char c) {
  const std::string label63(63, c);
  return label63 + "." + label63 + "." + label63 + "." + std::string(61, c);
}

flow::IpAddress address(std::uint32_t i) {
  // IPv6 addresses 2001:db8::<i>: any number of distinct ones.
  flow::IpAddress a = *flow::IpAddress::parse("2001:db8::");
  a.bytes[12] = static_cast<std::uint8_t>(i >> 24);
  a.bytes[13] = static_cast<std::uint8_t>(i >> 16);
  a.bytes[14] = static_cast<std::uint8_t>(i >> 8);
  a.bytes[15] = static_cast<std::uint8_t>(i);
  return a;
}

void report(const char* what, std::size_t entries, std::size_t bytes) {
  std::printf("[ worst case ] %s: %zu entries, %zu bytes (%.1f MiB, %zu B per entry)\n", what,
              entries, bytes, static_cast<double>(bytes) / (1 << 20),
              entries == 0 ? 0 : bytes / entries);
}

TEST(CacheBounds, DomainMapAtDefaultsWithLongestNames) {
  const std::size_t before = heapInUse();
  {
    DomainMap m;  // default Options: 16384 (per client) + 16384 (any client) + 16384 (SNI)
    const DomainMap::Options defaults;
    const std::string name = longestName('a');
    ASSERT_EQ(name.size(), 253u);
    const std::uint32_t dns = static_cast<std::uint32_t>(defaults.max_dns_entries);
    const std::uint32_t sni = static_cast<std::uint32_t>(defaults.max_sni_entries);
    for (std::uint32_t i = 0; i < 2 * dns; ++i)
      ASSERT_TRUE(m.learnDns(address(i), address(i), name)) << i;
    for (std::uint32_t i = 0; i < 2 * sni; ++i) {
      flow::FlowKey k;
      k.local = address(i);
      k.remote = address(i + 1);
      k.local_port = static_cast<std::uint16_t>(i);
      k.remote_port = 443;
      k.protocol = 6;
      ASSERT_TRUE(m.learnSni(k, name)) << i;
    }
    EXPECT_EQ(m.dnsSize(), defaults.max_dns_entries);
    EXPECT_EQ(m.dnsAnySize(), defaults.max_dns_entries);
    EXPECT_EQ(m.sniSize(), defaults.max_sni_entries);
    EXPECT_EQ(m.counters().evictions, 2 * std::uint64_t{dns} + sni);
    // The newest survive, the oldest went.
    EXPECT_TRUE(m.dnsName(address(2 * dns - 1), address(2 * dns - 1)));
    EXPECT_TRUE(m.dnsName(address(2 * dns - 1)));
    EXPECT_FALSE(m.dnsName(address(0), address(0)));
    EXPECT_FALSE(m.dnsName(address(0)));

    const std::size_t used = heapInUse() - before;
    report("DomainMap (2 dns + sni)", 2 * dns + sni, used);
    // ~0.5 KB per entry with the longest names: 24 MiB for the three default tables.
    EXPECT_LE(used, (2 * dns + sni) * std::size_t{512});
  }
}

TEST(CacheBounds, ReverseResolverAtDefaultsWithLongestNames) {
  const std::size_t before = heapInUse();
  {
    const ReverseResolver::Options defaults;
    const std::string name = longestName('b');
    ReverseResolver r(defaults, [&name](const flow::IpAddress&) { return name; });
    const std::uint32_t max = static_cast<std::uint32_t>(defaults.max_entries);
    const std::uint32_t batch = static_cast<std::uint32_t>(defaults.max_pending);
    for (std::uint32_t i = 0; i < 2 * max; i += batch) {
      for (std::uint32_t k = i; k < i + batch; ++k) r.lookup(address(k));
      r.waitIdleForTest();
    }
    EXPECT_EQ(r.cacheSize(), defaults.max_entries);
    const ReverseResolver::Counters c = r.counters();
    EXPECT_EQ(c.dropped, 0u);
    EXPECT_EQ(c.successes, 2u * max);
    EXPECT_EQ(c.evictions, max);
    EXPECT_EQ(r.lookup(address(2 * max - 1)), name);

    const std::size_t used = heapInUse() - before;
    report("ReverseResolver cache", max, used);
    EXPECT_LE(used, max * std::size_t{512});
  }
}

TEST(CacheBounds, ReverseResolverQueueIsBounded) {
  ReverseResolver::Options o;
  o.threads = 1;
  o.max_pending = 8;
  std::mutex m;
  m.lock();  // holds the one worker inside its first lookup
  ReverseResolver r(o, [&m](const flow::IpAddress&) -> std::optional<std::string> {
    std::lock_guard l(m);
    return std::nullopt;
  });
  for (std::uint32_t i = 0; i < 1000; ++i) r.lookup(address(i));
  // One in flight, at most max_pending queued, the rest dropped.
  EXPECT_LE(r.pendingSize(), o.max_pending + o.threads);
  EXPECT_GE(r.counters().dropped, 1000u - o.max_pending - o.threads);
  m.unlock();
  r.waitIdleForTest();
  EXPECT_EQ(r.pendingSize(), 0u);
}

// Streams with a hole every 256 bytes over the whole window, and more streams than allowed.
TEST(CacheBounds, TlsStreamTrackerAtDefaults) {
  const StreamReassembler::Options o = PayloadInspector::defaultTrackerOptions();
  ASSERT_EQ(o.max_stream_bytes, std::size_t{AYAFLOW_TLS_CAPTURE_BYTES});
  const std::size_t before = heapInUse();
  {
    StreamReassembler r(o);
    const std::vector<std::uint8_t> data(128, 0x16);
    const std::uint32_t streams = static_cast<std::uint32_t>(2 * o.max_streams);
    for (std::uint32_t i = 0; i < streams; ++i) {
      flow::FlowKey key;
      key.local = address(i);
      key.remote = address(0);
      key.local_port = 40000;
      key.remote_port = 443;
      key.protocol = 6;
      // 128 bytes every 256 from the start to the end of the window: max_ranges holes,
      // then later segments that are refused (too many holes).
      for (std::uint32_t off = 0; off + data.size() <= o.max_stream_bytes; off += 256) {
        r.add(key, 1000 + off, data.data(), data.size(), i);
      }
      ASSERT_LE(r.size(), o.max_streams);
      ASSERT_LE(r.bufferedBytes(), o.max_total_bytes);
    }
    EXPECT_EQ(r.size(), o.max_streams);
    EXPECT_GE(r.evictions(), o.max_streams);

    const std::size_t used = heapInUse() - before;
    report("TLS stream tracker", r.size(), used);
    // Buffered bytes plus ~1 KB of bookkeeping per stream.
    EXPECT_LE(used, o.max_total_bytes + o.max_streams * std::size_t{1024});
  }
}

TEST(CacheBounds, DeepInspectionTakesItsOptionsAndExportsCacheFamilies) {
  DeepInspection::Options o;
  o.domains.max_dns_entries = 2;
  o.domains.max_sni_entries = 1;
  o.tls_streams.max_streams = 3;
  DeepInspection inspection(o);
  EXPECT_EQ(inspection.inspector().tracker().streams().options().max_streams, 3u);
  const InspectionCacheStats s = inspection.cacheStats();
  EXPECT_EQ(s.dns_names, 0u);
  EXPECT_EQ(s.tls_streams, 0u);

  InspectionCacheStats given;
  given.dns_names = 5;
  given.sni_names = 6;
  given.names_evicted = 7;
  given.tls_streams = 8;
  given.tls_stream_bytes = 9;
  given.tls_streams_evicted = 10;
  const auto families = inspectionCacheFamilies(given);
  ASSERT_EQ(families.size(), 5u);
  EXPECT_EQ(families[0].name, "ayaflow_domain_names");
  ASSERT_EQ(families[0].metric.size(), 2u);
  EXPECT_EQ(families[0].metric[0].label[0].value, "dns");
  EXPECT_EQ(families[0].metric[0].gauge.value, 5.0);
  EXPECT_EQ(families[0].metric[1].label[0].value, "sni");
  EXPECT_EQ(families[0].metric[1].gauge.value, 6.0);
  EXPECT_EQ(families[1].name, "ayaflow_domain_names_evicted_total");
  EXPECT_EQ(families[1].metric[0].counter.value, 7.0);
  EXPECT_EQ(families[2].name, "ayaflow_tls_streams");
  EXPECT_EQ(families[2].metric[0].gauge.value, 8.0);
  EXPECT_EQ(families[3].name, "ayaflow_tls_stream_bytes");
  EXPECT_EQ(families[3].metric[0].gauge.value, 9.0);
  EXPECT_EQ(families[4].name, "ayaflow_tls_streams_evicted_total");
  EXPECT_EQ(families[4].metric[0].counter.value, 10.0);
}

TEST(CacheBounds, ReverseDnsFamilies) {
  ReverseResolver::Counters c;
  c.successes = 3;
  c.failures = 4;
  c.dropped = 5;
  c.evictions = 6;
  const auto families = reverseDnsFamilies(c, 7, 8);
  ASSERT_EQ(families.size(), 5u);
  EXPECT_EQ(families[0].name, "ayaflow_reverse_dns_cache_entries");
  EXPECT_EQ(families[0].metric[0].gauge.value, 7.0);
  EXPECT_EQ(families[1].name, "ayaflow_reverse_dns_pending");
  EXPECT_EQ(families[1].metric[0].gauge.value, 8.0);
  EXPECT_EQ(families[2].name, "ayaflow_reverse_dns_cache_evicted_total");
  EXPECT_EQ(families[2].metric[0].counter.value, 6.0);
  EXPECT_EQ(families[3].name, "ayaflow_reverse_dns_dropped_total");
  EXPECT_EQ(families[3].metric[0].counter.value, 5.0);
  EXPECT_EQ(families[4].name, "ayaflow_reverse_dns_lookups_total");
  ASSERT_EQ(families[4].metric.size(), 2u);
  EXPECT_EQ(families[4].metric[0].counter.value, 3.0);
  EXPECT_EQ(families[4].metric[1].counter.value, 4.0);
}

}  // namespace
}  // namespace ayaflow::inspect
