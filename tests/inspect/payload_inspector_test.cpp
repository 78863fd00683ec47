// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/payload_inspector.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "ayaflow/abi/event.h"
#include "test_data.h"

namespace ayaflow::inspect {
namespace {

using testing::Bytes;
using testing::readData;

flow::IpAddress ip(const char* text) { return *flow::IpAddress::parse(text); }

/// The header fields of one ayaflow_payload_event record, as the kernel fills them.
struct Rec {
  std::uint8_t direction = AYAFLOW_DIR_EGRESS;
  std::uint8_t protocol = 6;
  std::uint8_t addr_type = 4;
  std::uint8_t flags = 0;
  std::uint32_t seq = 0;
  const char* src = "10.215.0.2";
  std::uint16_t src_port = 40000;
  const char* dst = "10.215.0.1";
  std::uint16_t dst_port = 443;
};

/// A record as it sits in the ring buffer: the 64-byte header, then the data.
Bytes record(const Rec& r, const std::uint8_t* data, std::size_t len) {
  ayaflow_payload_event h;
  std::memset(&h, 0, sizeof h);
  h.abi_version = AYAFLOW_ABI_VERSION;
  h.kind = AYAFLOW_EVENT_PAYLOAD;
  h.direction = r.direction;
  h.flags = r.flags;
  h.data_len = static_cast<std::uint16_t>(len);
  h.ifindex = 7;
  h.seq = r.seq;
  h.timestamp_ns = 1;
  h.tuple.protocol = r.protocol;
  h.tuple.addr_type = r.addr_type;
  h.tuple.src_port = r.src_port;
  h.tuple.dst_port = r.dst_port;
  std::memcpy(h.tuple.src_addr, ip(r.src).bytes.data(), 16);
  std::memcpy(h.tuple.dst_addr, ip(r.dst).bytes.data(), 16);
  Bytes out(64 + len);
  std::memcpy(out.data(), &h, 64);
  if (len != 0) std::memcpy(out.data() + 64, data, len);
  return out;
}

Bytes record(const Rec& r, const Bytes& data) { return record(r, data.data(), data.size()); }

/// DNS over UDP: client 10.215.0.2:40000 <-> server 10.215.0.1:53.
Rec dnsQuery() {
  Rec r;
  r.protocol = 17;
  r.dst_port = 53;
  return r;
}

Rec dnsResponse() {
  Rec r;
  r.direction = AYAFLOW_DIR_INGRESS;
  r.protocol = 17;
  r.src = "10.215.0.1";
  r.src_port = 53;
  r.dst = "10.215.0.2";
  r.dst_port = 40000;
  return r;
}

constexpr std::uint32_t kIsn = 0xFFFFFF00u;  // first payload byte's seq; wraps inside the hello

/// TLS client stream 10.215.0.2:40000 -> 10.215.0.1:443.
Rec tls(std::uint32_t seq, std::uint8_t flags = 0) {
  Rec r;
  r.seq = seq;
  r.flags = flags;
  return r;
}

Bytes syn(std::uint32_t isn) { return record(tls(isn, AYAFLOW_PF_SYN), nullptr, 0); }
Bytes fin(std::uint32_t seq) { return record(tls(seq, AYAFLOW_PF_FIN), nullptr, 0); }

std::vector<Bytes> segments(const std::string& name, std::size_t n) {
  std::vector<Bytes> out;
  for (std::size_t i = 1; i <= n; ++i)
    out.push_back(readData(name + ".seg" + std::to_string(i) + ".bin"));
  return out;
}

flow::FlowKey flowTo(const char* remote, std::uint16_t port) {
  flow::FlowKey k;
  k.local = ip("10.215.0.2");
  k.remote = ip(remote);
  k.local_port = 40001;
  k.remote_port = port;
  k.protocol = 6;
  return k;
}

/// The connection of tls(): 10.215.0.2:40000 -> 10.215.0.1:port.
flow::FlowKey tlsConn(std::uint16_t port = 443) {
  flow::FlowKey k = flowTo("10.215.0.1", port);
  k.local_port = 40000;
  return k;
}

class PayloadInspectorTest : public ::testing::Test {
 protected:
  void feed(const Bytes& rec, std::uint64_t now_ns = 1) {
    inspector.onRecord(rec.data(), rec.size(), now_ns);
  }

  DomainMap domains;
  PayloadInspector inspector{domains};
};

TEST_F(PayloadInspectorTest, DnsResponseTeachesTheAnswerAddress) {
  feed(record(dnsQuery(), readData("dns_a.query.bin")));
  EXPECT_EQ(inspector.counters().dns_queries, 1u);
  EXPECT_EQ(inspector.lastQueryName(), "www.example.test");
  EXPECT_EQ(domains.dnsSize(), 0u);  // a query teaches nothing

  feed(record(dnsResponse(), readData("dns_a.response.bin")));
  const auto c = inspector.counters();
  EXPECT_EQ(c.records, 2u);
  EXPECT_EQ(c.malformed_records, 0u);
  EXPECT_EQ(c.dns_responses, 1u);
  EXPECT_EQ(c.dns_unparsable, 0u);
  EXPECT_EQ(domains.dnsName(ip("10.215.0.7")), "www.example.test");
  // Learned for the response's destination, the client that asked.
  EXPECT_EQ(domains.dnsName(ip("10.215.0.2"), ip("10.215.0.7")), "www.example.test");
  EXPECT_FALSE(domains.dnsName(ip("10.215.0.1"), ip("10.215.0.7")));
  EXPECT_EQ(domains.dnsSize(), 1u);
  // A later flow to that address, any port, carries the name.
  EXPECT_EQ(inspector.domainFor(flowTo("10.215.0.7", 80)), "www.example.test");
  EXPECT_FALSE(inspector.domainFor(flowTo("10.215.0.8", 80)));
}

TEST_F(PayloadInspectorTest, DnsCnameChainAndAaaaOverIpv6) {
  feed(record(dnsResponse(), readData("dns_cname.response.bin")));
  EXPECT_EQ(domains.dnsName(ip("10.215.0.7")), "chain.example.test");  // the name asked for

  Rec v6 = dnsResponse();
  v6.addr_type = 6;
  v6.src = "fd00:215::1";
  v6.dst = "fd00:215::2";
  feed(record(v6, readData("dns_aaaa.response.bin")));
  EXPECT_EQ(domains.dnsName(ip("fd00:215::7")), "www.example.test");
  EXPECT_EQ(domains.dnsName(ip("fd00:215::2"), ip("fd00:215::7")), "www.example.test");
  EXPECT_EQ(inspector.counters().dns_responses, 2u);
  EXPECT_EQ(inspector.counters().malformed_records, 0u);
}

TEST_F(PayloadInspectorTest, DnsErrorsAndGarbage) {
  feed(record(dnsResponse(), readData("dns_nxdomain.response.bin")));
  EXPECT_EQ(inspector.counters().dns_responses, 1u);
  EXPECT_EQ(domains.dnsSize(), 0u);

  const Bytes garbage = {0x12, 0x34, 0x81};
  feed(record(dnsResponse(), garbage));
  feed(record(dnsQuery(), nullptr, 0));  // an empty UDP payload
  const auto c = inspector.counters();
  EXPECT_EQ(c.dns_unparsable, 2u);
  EXPECT_EQ(c.malformed_records, 0u);
  EXPECT_EQ(c.records, 3u);
}

TEST_F(PayloadInspectorTest, ClientHelloInTwoRecordsAfterSyn) {
  // MSS 188: the name (bytes 265..280) lies in the second segment.
  const auto segs = segments("tls_mss200", 8);
  feed(syn(kIsn - 1));
  feed(record(tls(kIsn), segs[0]));
  EXPECT_EQ(domains.sniSize(), 0u);
  EXPECT_EQ(inspector.tracker().streams().size(), 1u);
  feed(record(tls(kIsn + 188), segs[1]));

  const auto c = inspector.counters();
  EXPECT_EQ(c.records, 3u);
  EXPECT_EQ(c.malformed_records, 0u);
  EXPECT_EQ(c.tls_sni_found, 1u);
  EXPECT_EQ(domains.sniName(tlsConn()), "www.example.test");
  EXPECT_FALSE(domains.sniName(tlsConn(8443)));
  EXPECT_EQ(inspector.domainFor(tlsConn()), "www.example.test");
  // The SNI names its own connection, not another one to the same server address:port.
  EXPECT_FALSE(inspector.domainFor(flowTo("10.215.0.1", 443)));
  EXPECT_EQ(inspector.tracker().streams().bufferedBytes(), 0u);  // settled: bytes released

  // The rest of the hello is ignored.
  for (std::size_t i = 2; i < segs.size(); ++i)
    feed(record(tls(kIsn + 188 * static_cast<std::uint32_t>(i)), segs[i]));
  EXPECT_EQ(inspector.counters().tls_sni_found, 1u);
  EXPECT_EQ(domains.counters().sni_learned, 1u);
}

TEST_F(PayloadInspectorTest, OutOfOrderRecordsAfterSyn) {
  const auto segs = segments("tls_mss200", 8);
  feed(syn(kIsn - 1));
  feed(record(tls(kIsn + 188), segs[1]));  // segment 2 first: the SYN places it
  EXPECT_EQ(domains.sniSize(), 0u);
  feed(record(tls(kIsn), segs[0]));
  EXPECT_EQ(domains.sniName(tlsConn()), "www.example.test");
  EXPECT_EQ(inspector.counters().tls_not_tls, 0u);
}

TEST_F(PayloadInspectorTest, NameCutBetweenRecordsWithoutSyn) {
  // One 440-byte hello (name at 265..280) sent as two records cut inside the name, for a
  // connection whose SYN was not seen.
  const Bytes hello = readData("tls_openssl_allciphers.bin");
  ASSERT_EQ(hello.size(), 440u);
  feed(record(tls(kIsn), hello.data(), 270));
  EXPECT_EQ(domains.sniSize(), 0u);
  feed(record(tls(kIsn + 270), hello.data() + 270, hello.size() - 270));
  EXPECT_EQ(domains.sniName(tlsConn()), "www.example.test");
  EXPECT_EQ(inspector.counters().tls_sni_found, 1u);
}

TEST_F(PayloadInspectorTest, SameSegmentsSeenAtTwoHooks) {
  // A routing host sees each segment at ingress and at egress: one stream, one verdict.
  const auto segs = segments("tls_mss200", 8);
  Rec in = tls(kIsn);
  in.direction = AYAFLOW_DIR_INGRESS;
  feed(record(tls(kIsn), segs[0]));
  feed(record(in, segs[0]));
  in.seq = kIsn + 188;
  feed(record(in, segs[1]));
  feed(record(tls(kIsn + 188), segs[1]));
  const auto c = inspector.counters();
  EXPECT_EQ(c.tls_sni_found, 1u);
  EXPECT_EQ(c.tls_not_tls, 0u);
  EXPECT_EQ(c.tls_malformed, 0u);
  EXPECT_EQ(domains.sniName(tlsConn()), "www.example.test");
}

TEST_F(PayloadInspectorTest, FinForgetsTheStream) {
  const auto segs = segments("tls_mss200", 8);
  feed(syn(kIsn - 1));
  feed(record(tls(kIsn), segs[0]));
  EXPECT_EQ(inspector.tracker().streams().size(), 1u);
  feed(fin(kIsn + 188));
  EXPECT_EQ(inspector.tracker().streams().size(), 0u);
  EXPECT_EQ(inspector.tracker().streams().bufferedBytes(), 0u);

  // Segment 2 alone, with the start forgotten, opens a new stream that is not TLS.
  feed(record(tls(kIsn + 188), segs[1]));
  EXPECT_EQ(inspector.counters().tls_not_tls, 1u);
  EXPECT_EQ(domains.sniSize(), 0u);
  EXPECT_EQ(inspector.counters().malformed_records, 0u);
}

TEST_F(PayloadInspectorTest, SynStartsANewConnectionOnTheSameTuple) {
  // The FIN record of the first connection was lost; the next SYN still restarts the stream.
  const Bytes hello = readData("tls_openssl.bin");
  feed(syn(kIsn - 1));
  feed(record(tls(kIsn), hello));
  EXPECT_EQ(inspector.counters().tls_sni_found, 1u);
  const std::uint32_t isn2 = 0x12345678u;
  feed(syn(isn2));
  feed(record(tls(isn2 + 1), hello));
  EXPECT_EQ(inspector.counters().tls_sni_found, 2u);
}

TEST_F(PayloadInspectorTest, HelloLargerThanTheCaptureIsGivenUp) {
  // A handshake record announcing 8 KiB of cipher suites: the name cannot lie within the
  // AYAFLOW_TLS_CAPTURE_BYTES the kernel sends, so the stream is given up at once.
  Bytes hello = {0x16, 0x03, 0x01, 0x40, 0x00,  // handshake record, 16384 bytes
                 0x01, 0x00, 0x3f, 0xfc,        // ClientHello, 16380 bytes
                 0x03, 0x03};                   // client_version
  hello.resize(hello.size() + 32, 0xab);        // random
  hello.push_back(0);                           // session_id: empty
  hello.push_back(0x20);                        // cipher_suites: 8192 bytes
  hello.push_back(0x00);
  hello.resize(200, 0x13);
  feed(record(tls(kIsn), hello));
  const auto c = inspector.counters();
  EXPECT_EQ(c.tls_too_large, 1u);
  EXPECT_EQ(c.tls_malformed, 0u);
  EXPECT_EQ(c.tls_not_tls, 0u);
  EXPECT_EQ(inspector.tracker().streams().bufferedBytes(), 0u);
}

TEST_F(PayloadInspectorTest, UnalignedRecord) {
  const Bytes rec = record(dnsResponse(), readData("dns_a.response.bin"));
  Bytes shifted(rec.size() + 1);
  std::memcpy(shifted.data() + 1, rec.data(), rec.size());
  inspector.onRecord(shifted.data() + 1, rec.size(), 1);
  EXPECT_EQ(domains.dnsName(ip("10.215.0.7")), "www.example.test");
}

TEST_F(PayloadInspectorTest, MalformedRecordsAreCountedAndIgnored) {
  const Bytes response = readData("dns_a.response.bin");
  const Bytes hello = readData("tls_openssl.bin");
  const Bytes good_dns = record(dnsResponse(), response);
  const Bytes good_tls = record(tls(kIsn), hello);

  std::vector<Bytes> bad;
  bad.push_back(Bytes(good_dns.begin(), good_dns.begin() + 63));  // shorter than the header
  {
    Bytes b = good_dns;  // wrong ABI version
    b[0] = AYAFLOW_ABI_VERSION + 1;
    bad.push_back(b);
  }
  {
    Bytes b = good_dns;  // a packet event, not a payload record
    b[offsetof(ayaflow_payload_event, kind)] = AYAFLOW_EVENT_PACKET;
    bad.push_back(b);
  }
  {
    Bytes b = good_dns;  // data_len (host order) says one byte more than the record holds
    const auto more = static_cast<std::uint16_t>(response.size() + 1);
    std::memcpy(&b[offsetof(ayaflow_payload_event, data_len)], &more, sizeof more);
    bad.push_back(b);
  }
  bad.push_back(Bytes(good_dns.begin(), good_dns.end() - 1));  // record one byte short
  {
    Bytes b = good_dns;  // direction
    b[offsetof(ayaflow_payload_event, direction)] = 2;
    bad.push_back(b);
  }
  {
    Bytes b = good_dns;  // protocol (ICMP)
    b[offsetof(ayaflow_payload_event, tuple) + offsetof(ayaflow_tuple, protocol)] = 1;
    bad.push_back(b);
  }
  {
    Bytes b = good_dns;  // addr_type
    b[offsetof(ayaflow_payload_event, tuple) + offsetof(ayaflow_tuple, addr_type)] = 5;
    bad.push_back(b);
  }
  {
    Rec r = dnsResponse();  // addr_type 4 with IPv6 addresses
    r.src = "fd00:215::1";
    bad.push_back(record(r, response));
  }
  {
    Bytes b = good_tls;  // unknown flag
    b[offsetof(ayaflow_payload_event, flags)] = 0x04;
    bad.push_back(b);
  }
  bad.push_back(record(tls(kIsn, AYAFLOW_PF_SYN | AYAFLOW_PF_FIN), nullptr, 0));
  bad.push_back(record(tls(kIsn, AYAFLOW_PF_SYN), hello));  // a marker with data
  {
    Rec r = dnsQuery();  // a marker on UDP
    r.flags = AYAFLOW_PF_FIN;
    bad.push_back(record(r, nullptr, 0));
  }
  bad.push_back(record(tls(kIsn), nullptr, 0));  // TCP, no marker, no data

  for (const Bytes& b : bad) inspector.onRecord(b.data(), b.size(), 1);
  inspector.onRecord(nullptr, 0, 1);
  inspector.onRecord(nullptr, 100, 1);

  const std::uint64_t n = bad.size() + 2;
  auto c = inspector.counters();
  EXPECT_EQ(c.records, n);
  EXPECT_EQ(c.malformed_records, n);
  EXPECT_EQ(c.dns_queries + c.dns_responses + c.dns_unparsable, 0u);
  EXPECT_EQ(c.tls_sni_found + c.tls_no_sni + c.tls_not_tls + c.tls_malformed, 0u);
  EXPECT_EQ(c.exceptions, 0u);
  EXPECT_EQ(domains.dnsSize(), 0u);
  EXPECT_EQ(domains.sniSize(), 0u);
  EXPECT_EQ(inspector.tracker().streams().size(), 0u);

  // The well-formed originals still work afterwards.
  feed(good_dns);
  feed(good_tls);
  c = inspector.counters();
  EXPECT_EQ(c.malformed_records, n);
  EXPECT_EQ(c.dns_responses, 1u);
  EXPECT_EQ(c.tls_sni_found, 1u);
  EXPECT_EQ(domains.dnsName(ip("10.215.0.7")), "www.example.test");
  EXPECT_EQ(domains.sniName(tlsConn()), "www.example.test");
}

TEST_F(PayloadInspectorTest, ExpireDropsIdleStreams) {
  const auto segs = segments("tls_mss200", 8);
  feed(record(tls(kIsn), segs[0]), 1'000);
  EXPECT_EQ(inspector.tracker().streams().size(), 1u);
  const std::uint64_t idle = PayloadInspector::defaultTrackerOptions().idle_timeout_ns;
  EXPECT_EQ(inspector.expire(1'000 + idle), 0u);
  EXPECT_EQ(inspector.expire(1'001 + idle), 1u);
  EXPECT_EQ(inspector.tracker().streams().size(), 0u);
}

TEST(PayloadInspectorOptions, TrackerWindowIsTheKernelCapture) {
  EXPECT_EQ(PayloadInspector::defaultTrackerOptions().max_stream_bytes,
            std::size_t{AYAFLOW_TLS_CAPTURE_BYTES});
}

}  // namespace
}  // namespace ayaflow::inspect
