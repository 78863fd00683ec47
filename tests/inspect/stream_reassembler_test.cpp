// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/stream_reassembler.h"

#include <gtest/gtest.h>

#include <string>

#include "test_data.h"

namespace ayaflow::inspect {
namespace {

using testing::Bytes;
using Status = StreamReassembler::Status;

flow::FlowKey key(std::uint16_t port) {
  flow::FlowKey k;
  k.local = *flow::IpAddress::parse("10.0.0.1");
  k.remote = *flow::IpAddress::parse("10.0.0.2");
  k.local_port = port;
  k.remote_port = 443;
  k.protocol = 6;
  return k;
}

Bytes seqBytes(std::size_t n, std::uint8_t first = 0) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(first + i);
  return b;
}

std::string text(const StreamReassembler::View& v) {
  return std::string(reinterpret_cast<const char*>(v.data), v.len);
}

StreamReassembler::View add(StreamReassembler& r, const flow::FlowKey& k, std::uint32_t seq,
                            const std::string& s, std::uint64_t now = 1) {
  return r.add(k, seq, reinterpret_cast<const std::uint8_t*>(s.data()), s.size(), now);
}

TEST(StreamReassembler, InOrder) {
  StreamReassembler r;
  auto v = add(r, key(1), 1000, "hello ");
  EXPECT_EQ(v.status, Status::kGrew);
  EXPECT_EQ(text(v), "hello ");
  v = add(r, key(1), 1006, "world");
  EXPECT_EQ(v.status, Status::kGrew);
  EXPECT_EQ(text(v), "hello world");
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(text(r.view(key(1))), "hello world");
}

TEST(StreamReassembler, RetransmissionsAndOverlaps) {
  StreamReassembler r;
  add(r, key(1), 1000, "hello ");
  auto v = add(r, key(1), 1000, "hello ");
  EXPECT_EQ(v.status, Status::kUnchanged);
  EXPECT_EQ(text(v), "hello ");
  v = add(r, key(1), 1003, "lo wor");  // overlaps and extends
  EXPECT_EQ(v.status, Status::kGrew);
  EXPECT_EQ(text(v), "hello wor");
  v = add(r, key(1), 1001, "ell");  // inside
  EXPECT_EQ(v.status, Status::kUnchanged);
  EXPECT_EQ(text(v), "hello wor");
}

TEST(StreamReassembler, OutOfOrderWithoutSyn) {
  // The second segment arrives first: it becomes the start until the earlier one shows up.
  StreamReassembler r;
  auto v = add(r, key(1), 1006, "world");
  EXPECT_EQ(text(v), "world");
  v = add(r, key(1), 1000, "hello ");
  EXPECT_EQ(v.status, Status::kGrew);
  EXPECT_EQ(text(v), "hello world");
}

TEST(StreamReassembler, OutOfOrderWithSyn) {
  StreamReassembler r;
  r.startAt(key(1), 1000, 1);
  auto v = add(r, key(1), 1006, "world");
  EXPECT_EQ(v.status, Status::kUnchanged);  // a hole at the start
  EXPECT_EQ(v.len, 0u);
  v = add(r, key(1), 1000, "hello ");
  EXPECT_EQ(v.status, Status::kGrew);
  EXPECT_EQ(text(v), "hello world");
  // Before the start: trimmed.
  v = add(r, key(1), 995, "XXXXXhello!");
  EXPECT_EQ(text(v), "hello!world");
  v = add(r, key(1), 990, "before");
  EXPECT_EQ(v.status, Status::kUnchanged);
  EXPECT_EQ(text(v), "hello!world");
}

TEST(StreamReassembler, StartAtAfterData) {
  StreamReassembler r;
  add(r, key(1), 1000, "xxhello");
  r.startAt(key(1), 1002, 1);  // the first two bytes were before the stream's start
  EXPECT_EQ(text(r.view(key(1))), "hello");
  StreamReassembler r2;
  add(r2, key(1), 1000, "world");
  r2.startAt(key(1), 994, 1);  // data arrived before the true start: a hole now
  EXPECT_EQ(r2.view(key(1)).len, 0u);
  EXPECT_EQ(text(add(r2, key(1), 994, "hello ")), "hello world");
}

TEST(StreamReassembler, SequenceWraparound) {
  StreamReassembler r;
  const std::uint32_t base = 0xFFFFFFFCu;
  add(r, key(1), base, "abcd");
  auto v = add(r, key(1), base + 4, "efgh");  // seq 0
  EXPECT_EQ(text(v), "abcdefgh");
  StreamReassembler r2;
  add(r2, key(1), 0, "cd");  // after the wrap, arriving first
  v = add(r2, key(1), 0xFFFFFFFEu, "ab");
  EXPECT_EQ(text(v), "abcd");
}

TEST(StreamReassembler, WindowIsBounded) {
  StreamReassembler::Options o;
  o.max_stream_bytes = 10;
  StreamReassembler r(o);
  auto v = add(r, key(1), 0, "0123456789ABCDEF");
  EXPECT_EQ(text(v), "0123456789");
  v = add(r, key(1), 10, "more");
  EXPECT_EQ(v.status, Status::kUnchanged);
  v = add(r, key(1), 0x7FFFFFFF, "far");  // junk sequence number far ahead
  EXPECT_EQ(v.status, Status::kUnchanged);
  EXPECT_EQ(text(v), "0123456789");
  EXPECT_LE(r.bufferedBytes(), 10u);
  // Far behind (more than the window): trimmed, not rebased.
  v = add(r, key(1), 0x90000000u, "x");
  EXPECT_EQ(text(v), "0123456789");
}

TEST(StreamReassembler, TooManyHoles) {
  StreamReassembler::Options o;
  o.max_ranges = 3;
  StreamReassembler r(o);
  r.startAt(key(1), 0, 1);
  EXPECT_EQ(add(r, key(1), 10, "a").status, Status::kUnchanged);
  EXPECT_EQ(add(r, key(1), 20, "b").status, Status::kUnchanged);
  EXPECT_EQ(add(r, key(1), 30, "c").status, Status::kUnchanged);
  EXPECT_EQ(add(r, key(1), 40, "d").status, Status::kDropped);
  EXPECT_EQ(add(r, key(1), 21, "b").status, Status::kUnchanged);  // adjacent: merges
  // Filling from the start merges ranges and frees slots.
  EXPECT_EQ(text(add(r, key(1), 0, "0123456789")), "0123456789a");
  EXPECT_EQ(add(r, key(1), 40, "d").status, Status::kDropped);  // still 3 ranges
  EXPECT_EQ(text(add(r, key(1), 11, "---------")), "0123456789a---------bb");
  EXPECT_EQ(add(r, key(1), 40, "d").status, Status::kUnchanged);  // now 2 + 1
}

TEST(StreamReassembler, LruEvictionByCount) {
  StreamReassembler::Options o;
  o.max_streams = 2;
  StreamReassembler r(o);
  add(r, key(1), 0, "one");
  add(r, key(2), 0, "two");
  add(r, key(1), 3, "!");  // key(1) is now the most recently used
  add(r, key(3), 0, "three");
  EXPECT_EQ(r.size(), 2u);
  EXPECT_EQ(r.evictions(), 1u);
  EXPECT_EQ(r.view(key(2)).len, 0u);
  EXPECT_EQ(text(r.view(key(1))), "one!");
  EXPECT_EQ(text(r.view(key(3))), "three");
}

TEST(StreamReassembler, LruEvictionByBytes) {
  StreamReassembler::Options o;
  o.max_total_bytes = 1500;
  StreamReassembler r(o);
  const Bytes kb = seqBytes(1000);
  r.add(key(1), 0, kb.data(), kb.size(), 1);
  r.add(key(2), 0, kb.data(), kb.size(), 2);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(r.view(key(1)).len, 0u);
  EXPECT_EQ(r.view(key(2)).len, 1000u);
  EXPECT_LE(r.bufferedBytes(), 1500u);
  EXPECT_EQ(r.evictions(), 1u);
}

TEST(StreamReassembler, FinishReleasesAndIgnores) {
  StreamReassembler r;
  add(r, key(1), 0, "data");
  EXPECT_GT(r.bufferedBytes(), 0u);
  r.finish(key(1));
  EXPECT_EQ(r.bufferedBytes(), 0u);
  EXPECT_EQ(add(r, key(1), 4, "more").status, Status::kFinished);
  EXPECT_EQ(r.add(key(1), 4, nullptr, 0, 1).status, Status::kFinished);
  EXPECT_EQ(r.view(key(1)).len, 0u);
  EXPECT_EQ(r.size(), 1u);
  r.erase(key(1));
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(add(r, key(1), 8, "new").status, Status::kGrew);
  r.finish(key(9));  // unknown: ignored
}

TEST(StreamReassembler, EmptySegmentsCreateNothing) {
  StreamReassembler r;
  EXPECT_EQ(r.add(key(1), 0, nullptr, 0, 1).status, Status::kUnchanged);
  const std::uint8_t b = 1;
  EXPECT_EQ(r.add(key(1), 0, &b, 0, 1).status, Status::kUnchanged);
  EXPECT_EQ(r.size(), 0u);
}

TEST(StreamReassembler, ExpireIdle) {
  StreamReassembler::Options o;
  o.idle_timeout_ns = 100;
  StreamReassembler r(o);
  add(r, key(1), 0, "a", 1000);
  add(r, key(2), 0, "b", 1050);
  EXPECT_EQ(r.expire(1100), 0u);  // exactly at the boundary: kept
  EXPECT_EQ(r.expire(1101), 1u);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(r.view(key(1)).len, 0u);
  EXPECT_EQ(r.expire(5000), 1u);
  EXPECT_EQ(r.bufferedBytes(), 0u);
}

TEST(StreamReassembler, BufferedBytesTracksCapacity) {
  StreamReassembler r;
  const Bytes big = seqBytes(3000);
  for (std::uint16_t k = 1; k <= 5; ++k) r.add(key(k), 0, big.data(), big.size(), 1);
  EXPECT_GE(r.bufferedBytes(), 5u * 3000);
  EXPECT_LE(r.bufferedBytes(), 5u * r.options().max_stream_bytes);
  for (std::uint16_t k = 1; k <= 5; ++k) r.erase(key(k));
  EXPECT_EQ(r.bufferedBytes(), 0u);
}

}  // namespace
}  // namespace ayaflow::inspect
