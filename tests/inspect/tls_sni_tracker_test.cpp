// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/tls_sni_tracker.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_data.h"

namespace ayaflow::inspect {
namespace {

using testing::Bytes;
using testing::readData;

flow::FlowKey key(std::uint16_t port) {
  flow::FlowKey k;
  k.local = *flow::IpAddress::parse("10.215.0.2");
  k.remote = *flow::IpAddress::parse("10.215.0.1");
  k.local_port = port;
  k.remote_port = 443;
  k.protocol = 6;
  return k;
}

/// The recorded segments of a multi-segment ClientHello (data/<name>.segN.bin).
std::vector<Bytes> segments(const std::string& name, std::size_t n) {
  std::vector<Bytes> out;
  for (std::size_t i = 1; i <= n; ++i)
    out.push_back(readData(name + ".seg" + std::to_string(i) + ".bin"));
  return out;
}

constexpr std::uint32_t kIsn = 0xFFFFFF00u;  // first payload byte's seq; wraps inside the hello

TEST(TlsSniTracker, SplitCaptureFoundInFirstSegment) {
  // 1416-byte hello in 1228 + 188 bytes (MTU 1280): the name ends at byte 281.
  const auto segs = segments("tls_split", 2);
  TlsSniTracker t;
  const auto r = t.onSegment(key(1), kIsn, segs[0].data(), segs[0].size(), 1);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, TlsParseResult::kFound);
  EXPECT_EQ(r->sni, "www.example.test");
  EXPECT_FALSE(t.onSegment(key(1), kIsn + 1228, segs[1].data(), segs[1].size(), 2));
  EXPECT_EQ(t.counters().found, 1u);
  EXPECT_EQ(t.streams().bufferedBytes(), 0u);
}

TEST(TlsSniTracker, SniInSecondSegment) {
  // MSS 188: the name (bytes 265..280) starts in segment 2.
  const auto segs = segments("tls_mss200", 8);
  TlsSniTracker t;
  EXPECT_FALSE(t.onSegment(key(1), kIsn, segs[0].data(), segs[0].size(), 1));
  const auto r = t.onSegment(key(1), kIsn + 188, segs[1].data(), segs[1].size(), 2);
  ASSERT_TRUE(r) << "segments 1 and 2 hold bytes 0..375; the name ends at 281";
  EXPECT_EQ(r->status, TlsParseResult::kFound);
  EXPECT_EQ(r->sni, "www.example.test");
  EXPECT_EQ(r->sni_offset, 265u);
  EXPECT_FALSE(t.onSegment(key(1), kIsn + 376, segs[2].data(), segs[2].size(), 3));
}

TEST(TlsSniTracker, OutOfOrderSegmentsWithSyn) {
  const auto segs = segments("tls_mss200", 8);
  TlsSniTracker t;
  t.onSyn(key(1), kIsn - 1, 0);
  EXPECT_FALSE(t.onSegment(key(1), kIsn + 376, segs[2].data(), segs[2].size(), 1));
  EXPECT_FALSE(t.onSegment(key(1), kIsn + 188, segs[1].data(), segs[1].size(), 2));
  EXPECT_FALSE(t.onSegment(key(1), kIsn + 188, segs[1].data(), segs[1].size(), 3));  // again
  const auto r = t.onSegment(key(1), kIsn, segs[0].data(), segs[0].size(), 4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->sni, "www.example.test");
}

TEST(TlsSniTracker, OutOfOrderSegmentsWithoutSyn) {
  // Segment 2 arrives first and no SYN was seen: it is taken as the stream's start.
  const auto segs = segments("tls_mss200", 8);
  TlsSniTracker t;
  const auto first = t.onSegment(key(1), kIsn + 188, segs[1].data(), segs[1].size(), 1);
  // Judged alone, segment 2 is not TLS: without the SYN that verdict is final.
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, TlsParseResult::kNotTls);
  EXPECT_EQ(t.counters().not_tls, 1u);
}

TEST(TlsSniTracker, EverySplitOfARealHello) {
  const Bytes h = readData("tls_openssl_allciphers.bin");
  for (std::size_t cut = 1; cut < h.size(); ++cut) {
    TlsSniTracker t;
    const auto a = t.onSegment(key(1), kIsn, h.data(), cut, 1);
    const auto b = t.onSegment(key(1), kIsn + static_cast<std::uint32_t>(cut), h.data() + cut,
                               h.size() - cut, 2);
    const auto& r = a ? a : b;
    ASSERT_TRUE(r) << cut;
    EXPECT_EQ(r->sni, "www.example.test") << cut;
    EXPECT_EQ(a.has_value(), cut >= 281) << cut;
  }
}

TEST(TlsSniTracker, VerdictsAreCounted) {
  TlsSniTracker t;
  const std::string http = "GET / HTTP/1.1\r\n";
  const auto r =
      t.onSegment(key(1), 1, reinterpret_cast<const std::uint8_t*>(http.data()), http.size(), 1);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, TlsParseResult::kNotTls);
  Bytes bad = readData("tls_openssl.bin");
  bad[5 + 4 + 2 + 32] = 40;  // session id length 40
  EXPECT_EQ(t.onSegment(key(2), 1, bad.data(), bad.size(), 1)->status, TlsParseResult::kMalformed);
  EXPECT_EQ(t.counters().not_tls, 1u);
  EXPECT_EQ(t.counters().malformed, 1u);
  EXPECT_EQ(t.counters().found, 0u);
}

TEST(TlsSniTracker, TooLargeIsGivenUp) {
  StreamReassembler::Options o;
  o.max_stream_bytes = 200;
  TlsSniTracker t(o);
  const Bytes h = readData("tls_openssl_allciphers.bin");  // name ends at 281
  EXPECT_FALSE(t.onSegment(key(1), 0, h.data(), h.size(), 1));
  EXPECT_EQ(t.counters().too_large, 1u);
  EXPECT_EQ(t.streams().bufferedBytes(), 0u);
  t.onClose(key(1));
  EXPECT_EQ(t.streams().size(), 0u);
}

}  // namespace
}  // namespace ayaflow::inspect
