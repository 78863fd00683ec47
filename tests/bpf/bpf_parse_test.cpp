// SPDX-License-Identifier: MIT OR Apache-2.0
// The kernel program's parser on exact crafted frames, run by the kernel
// through BPF_PROG_TEST_RUN (no interface needed, but root).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/pkt_cls.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/bpf_program.h"
#include "packet_builder.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

constexpr std::uint16_t kEthIp = 0x0800;
constexpr std::uint16_t kEthIpv6 = 0x86DD;
constexpr std::uint16_t kEthArp = 0x0806;
constexpr std::uint16_t kQ = 0x8100;
constexpr std::uint16_t kAd = 0x88A8;

class BpfParseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    bpf::installLibbpfLogger(false);
    load(bpf::ProgramOptions{});
  }

  static int onSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<BpfParseTest*>(ctx);
    EXPECT_EQ(size, sizeof(ayaflow_packet_event));
    ayaflow_packet_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    self->events_.push_back(ev);
    return 0;
  }

  /// Runs the program on `frame`; returns the event it produced, if any.
  /// Checks the verdict, and that the per-CPU totals moved exactly with it.
  /// `refused` (optional) is set when the kernel refused to build an skb from
  /// the frame (an IPv6 ethertype with less than an IPv6 header): such a frame
  /// never reaches a TC program.
  std::optional<ayaflow_packet_event> run(const Bytes& frame, bool egress = false,
                                          bool* refused = nullptr) {
    const bpf::KernelTotals before = program_->readTotals();
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                .data_size_in = static_cast<__u32>(frame.size()), .repeat = 1);
    const int fd = egress ? program_->egressProgramFd() : program_->ingressProgramFd();
    const int err = bpf_prog_test_run_opts(fd, &opts);
    if (refused != nullptr) {
      *refused = err == -EINVAL;
      if (*refused) {
        EXPECT_EQ(program_->readTotals().totalPackets(), before.totalPackets());
        return std::nullopt;
      }
    }
    EXPECT_EQ(err, 0) << std::strerror(-err);
    // Never changes a packet's fate, and lets later programs run.
    EXPECT_EQ(static_cast<int>(opts.retval), TC_ACT_UNSPEC);
    events_.clear();
    ring_buffer__consume(rb_.get());
    EXPECT_LE(events_.size(), 1u);
    const bpf::KernelTotals after = program_->readTotals();
    const int dir = egress ? AYAFLOW_DIR_EGRESS : AYAFLOW_DIR_INGRESS;
    EXPECT_EQ(after.packets[dir] - before.packets[dir], events_.size());
    EXPECT_EQ(after.packets[1 - dir], before.packets[1 - dir]);
    EXPECT_EQ(after.totalLost(), before.totalLost());
    if (events_.empty()) {
      EXPECT_EQ(after.bytes[dir], before.bytes[dir]);
      return std::nullopt;
    }
    EXPECT_EQ(after.bytes[dir] - before.bytes[dir], events_[0].pkt_len);
    return events_[0];
  }

  /// Replaces the program with one loaded with `options` (and a reader on its ring buffer).
  void load(const bpf::ProgramOptions& options) {
    rb_.reset();
    program_ = std::make_unique<bpf::BpfProgram>(options);
    rb_.reset(ring_buffer__new(program_->eventsMapFd(), &BpfParseTest::onSample, this, nullptr));
    ASSERT_TRUE(rb_);
  }

  /// IPv6 is a load-time switch: loads a program with it on or off.
  void enableIpv6(bool on) {
    bpf::ProgramOptions options;
    options.enable_ipv6 = on;
    load(options);
  }

  static std::array<std::uint8_t, 16> mapped(const char* v4) {
    std::array<std::uint8_t, 16> a{};
    a[10] = a[11] = 0xff;
    inet_pton(AF_INET, v4, a.data() + 12);
    return a;
  }
  static std::array<std::uint8_t, 16> v6(const char* text) {
    std::array<std::uint8_t, 16> a{};
    inet_pton(AF_INET6, text, a.data());
    return a;
  }
  static std::array<std::uint8_t, 16> addr(const __u8 (&raw)[16]) {
    std::array<std::uint8_t, 16> a{};
    std::memcpy(a.data(), raw, 16);
    return a;
  }

  std::unique_ptr<bpf::BpfProgram> program_;
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb_{nullptr, ring_buffer__free};
  std::vector<ayaflow_packet_event> events_;
};

TEST_F(BpfParseTest, Ipv4UdpEveryField) {
  const Bytes frame =
      concat(ethernet(kEthIp), ipv4(17, "10.1.2.3", "10.4.5.6", l4(17, 5353, 53, 100)));
  auto ev = run(frame);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->abi_version, AYAFLOW_ABI_VERSION);
  EXPECT_EQ(ev->kind, AYAFLOW_EVENT_PACKET);
  EXPECT_EQ(ev->direction, AYAFLOW_DIR_INGRESS);
  EXPECT_EQ(ev->tuple.protocol, 17);
  EXPECT_EQ(ev->tuple.addr_type, 4);
  EXPECT_EQ(ev->flags, 0);
  EXPECT_EQ(ev->tcp_flags, 0);  // UDP
  for (const __u8 pad : ev->tuple.pad) EXPECT_EQ(pad, 0);
  EXPECT_EQ(ev->pkt_len, 20u + 8u + 100u);
  EXPECT_EQ(ev->tuple.src_port, 5353);
  EXPECT_EQ(ev->tuple.dst_port, 53);
  EXPECT_NE(ev->timestamp_ns, 0u);
  EXPECT_EQ(addr(ev->tuple.src_addr), mapped("10.1.2.3"));
  EXPECT_EQ(addr(ev->tuple.dst_addr), mapped("10.4.5.6"));
}

TEST_F(BpfParseTest, TcpFlagsAreReported) {
  for (const std::uint8_t flags : {0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x18}) {
    Bytes segment = l4(6, 40000, 80, 0);
    segment[13] = flags;
    auto ev = run(concat(ethernet(kEthIp), ipv4(6, "10.1.2.3", "10.4.5.6", segment)));
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->tcp_flags, flags);
    EXPECT_EQ(ev->tuple.src_port, 40000);
  }
}

TEST_F(BpfParseTest, EgressProgramMarksEgress) {
  auto ev =
      run(concat(ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2", l4(6, 40000, 443, 0))), true);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->direction, AYAFLOW_DIR_EGRESS);
  EXPECT_EQ(ev->tuple.protocol, 6);
  EXPECT_EQ(ev->pkt_len, 40u);
}

TEST_F(BpfParseTest, Ipv4OptionsUseIhl) {
  for (unsigned words = 0; words <= 10; ++words) {
    auto ev = run(
        concat(ethernet(kEthIp), ipv4(6, "192.0.2.1", "192.0.2.2", l4(6, 1234, 80, 10), words)));
    ASSERT_TRUE(ev) << words;
    EXPECT_EQ(ev->tuple.src_port, 1234) << words;
    EXPECT_EQ(ev->tuple.dst_port, 80) << words;
    EXPECT_EQ(ev->pkt_len, 20u + words * 4 + 20u + 10u);
  }
}

TEST_F(BpfParseTest, VlanAndDoubleVlan) {
  const Bytes body = ipv4(17, "10.9.9.9", "10.8.8.8", l4(17, 1111, 2222, 4));
  for (auto tags : std::vector<std::vector<std::uint16_t>>{{kQ}, {kAd}, {kAd, kQ}, {kQ, kQ}}) {
    auto ev = run(concat(ethernet(kEthIp, tags), body));
    ASSERT_TRUE(ev) << tags.size();
    EXPECT_EQ(ev->tuple.src_port, 1111);
    EXPECT_EQ(ev->tuple.dst_port, 2222);
    EXPECT_EQ(addr(ev->tuple.src_addr), mapped("10.9.9.9"));
  }
  // A third tag is beyond what we walk: no event, and no wrong one.
  EXPECT_FALSE(run(concat(ethernet(kEthIp, {kAd, kQ, kQ}), body)));
}

TEST_F(BpfParseTest, Ipv4FragmentsAfterTheFirstHaveNoPorts) {
  // First fragment (MF set, offset 0): ports are there.
  auto first =
      run(concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.2", l4(17, 7, 9, 64), 0, 0x2000)));
  ASSERT_TRUE(first);
  EXPECT_EQ(first->flags, 0);
  EXPECT_EQ(first->tuple.src_port, 7);
  // Later fragment (offset 9 * 8): payload bytes would look like ports.
  auto later =
      run(concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.2", Bytes(40, 0x77), 0, 0x0009)));
  ASSERT_TRUE(later);
  EXPECT_EQ(later->flags, AYAFLOW_F_FRAGMENT);
  EXPECT_EQ(later->tuple.src_port, 0);
  EXPECT_EQ(later->tuple.dst_port, 0);
  EXPECT_EQ(later->pkt_len, 60u);
}

TEST_F(BpfParseTest, NonTcpUdpAndNonIpProduceNothing) {
  EXPECT_FALSE(run(concat(ethernet(kEthIp), ipv4(1, "10.0.0.1", "10.0.0.2", Bytes(16, 0)))));
  EXPECT_FALSE(run(concat(ethernet(kEthArp), Bytes(28, 0))));
  EXPECT_FALSE(run(concat(ethernet(0x88CC), Bytes(46, 0))));  // LLDP
  // Ethertype says IPv4 but the version nibble does not.
  Bytes bad = ipv4(17, "10.0.0.1", "10.0.0.2", l4(17, 1, 2, 0));
  bad[0] = 0x65;
  EXPECT_FALSE(run(concat(ethernet(kEthIp), bad)));
  // IHL below 5 is malformed.
  bad[0] = 0x44;
  EXPECT_FALSE(run(concat(ethernet(kEthIp), bad)));
}

TEST_F(BpfParseTest, TruncatedIpv4AtEveryLength) {
  const Bytes full =
      concat(ethernet(kEthIp, {kQ}), ipv4(6, "10.0.0.1", "10.0.0.2", l4(6, 4000, 5000, 0), 2));
  // 18 (L2) + 28 (IPv4 with options) + 14 (TCP ports to flags) bytes are needed.
  const std::size_t needed = 18 + 28 + 14;
  for (std::size_t len = 14; len <= full.size(); ++len) {
    auto ev = run(Bytes(full.begin(), full.begin() + static_cast<long>(len)));
    if (len < needed) {
      EXPECT_FALSE(ev) << "length " << len;
    } else {
      ASSERT_TRUE(ev) << "length " << len;
      EXPECT_EQ(ev->tuple.src_port, 4000);
      EXPECT_EQ(ev->tuple.dst_port, 5000);
    }
  }
}

TEST_F(BpfParseTest, Ipv6OnlyWhenEnabled) {
  const Bytes frame =
      concat(ethernet(kEthIpv6), ipv6(6, "2001:db8::1", "2001:db8::2", l4(6, 443, 50000, 30)));
  enableIpv6(false);
  EXPECT_FALSE(run(frame));
  enableIpv6(true);
  auto ev = run(frame);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->tuple.addr_type, 6);
  EXPECT_EQ(ev->tuple.protocol, 6);
  EXPECT_EQ(ev->tuple.src_port, 443);
  EXPECT_EQ(ev->tuple.dst_port, 50000);
  EXPECT_EQ(ev->pkt_len, 40u + 20u + 30u);
  EXPECT_EQ(addr(ev->tuple.src_addr), v6("2001:db8::1"));
  EXPECT_EQ(addr(ev->tuple.dst_addr), v6("2001:db8::2"));
}

TEST_F(BpfParseTest, Ipv6ExtensionHeadersAreWalked) {
  enableIpv6(true);
  const Bytes udp = l4(17, 53, 33333, 12);
  const std::vector<std::vector<Ipv6Ext>> chains = {
      {hopByHop()},   {destOpts16()},
      {routing()},    {fragment(0, true)},
      {authHeader()}, {hopByHop(), routing(), destOpts16(), fragment(0, false), authHeader()},
  };
  for (const auto& chain : chains) {
    std::size_t ext_len = 0;
    for (const auto& e : chain) ext_len += e.bytes.size();
    auto ev = run(concat(ethernet(kEthIpv6), ipv6(17, "fd00::a", "fd00::b", udp, chain)));
    ASSERT_TRUE(ev) << chain.size();
    EXPECT_EQ(ev->tuple.protocol, 17);
    EXPECT_EQ(ev->tuple.src_port, 53);
    EXPECT_EQ(ev->tuple.dst_port, 33333);
    EXPECT_EQ(ev->flags, 0);
    EXPECT_EQ(ev->pkt_len, 40u + ext_len + udp.size());
  }
  // A later fragment: counted, no ports.
  auto later = run(concat(ethernet(kEthIpv6),
                          ipv6(17, "fd00::a", "fd00::b", Bytes(24, 0x55), {fragment(100, false)})));
  ASSERT_TRUE(later);
  EXPECT_EQ(later->flags, AYAFLOW_F_FRAGMENT);
  EXPECT_EQ(later->tuple.src_port, 0);
  // More extension headers than the bounded walk takes: no event.
  std::vector<Ipv6Ext> long_chain(9, destOpts16());
  EXPECT_FALSE(run(concat(ethernet(kEthIpv6), ipv6(17, "fd00::a", "fd00::b", udp, long_chain))));
  // ICMPv6 is not TCP/UDP.
  EXPECT_FALSE(run(concat(ethernet(kEthIpv6), ipv6(58, "fd00::a", "fd00::b", Bytes(8, 0)))));
  // VLAN-tagged IPv6.
  auto tagged = run(concat(ethernet(kEthIpv6, {kQ}), ipv6(17, "fd00::a", "fd00::b", udp)));
  ASSERT_TRUE(tagged);
  EXPECT_EQ(tagged->tuple.dst_port, 33333);
}

TEST_F(BpfParseTest, TruncatedIpv6AtEveryLength) {
  enableIpv6(true);
  const Bytes full = concat(ethernet(kEthIpv6), ipv6(17, "fd00::1", "fd00::2", l4(17, 9, 10, 0),
                                                     {hopByHop(), destOpts16()}));
  const std::size_t needed = 14 + 40 + 8 + 16 + 4;
  for (std::size_t len = 14; len <= full.size(); ++len) {
    bool refused = false;
    auto ev = run(Bytes(full.begin(), full.begin() + static_cast<long>(len)), false, &refused);
    if (refused) {
      EXPECT_LT(len, 14u + 40u) << "kernel refused a frame with a whole IPv6 header";
      continue;
    }
    if (len < needed) {
      EXPECT_FALSE(ev) << "length " << len;
    } else {
      ASSERT_TRUE(ev) << "length " << len;
      EXPECT_EQ(ev->tuple.dst_port, 10);
    }
  }
}

/// Deep inspection: payload records from the kernel for crafted frames.
class BpfPayloadTest : public ::testing::Test {
 protected:
  struct Record {
    ayaflow_payload_event header{};
    Bytes data;
  };

  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    bpf::installLibbpfLogger(false);
    bpf::ProgramOptions options;
    options.deep_inspect = true;
    program_ = std::make_unique<bpf::BpfProgram>(options);
    rb_.reset(
        ring_buffer__new(program_->payloadEventsMapFd(), &BpfPayloadTest::onSample, this, nullptr));
    ASSERT_TRUE(rb_);
  }

  static int onSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<BpfPayloadTest*>(ctx);
    Record r;
    EXPECT_GE(size, 64u);
    std::memcpy(&r.header, data, std::min(size, sizeof(r.header)));
    EXPECT_EQ(size, 64u + r.header.data_len);
    EXPECT_EQ(r.header.pad, 0);  // the kernel writes every header byte
    for (const __u8 pad : r.header.tuple.pad) EXPECT_EQ(pad, 0);
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    r.data.assign(bytes + 64, bytes + size);
    self->records_.push_back(r);
    return 0;
  }

  std::vector<Record> run(const Bytes& frame, bool egress = false) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                .data_size_in = static_cast<__u32>(frame.size()), .repeat = 1);
    const int fd = egress ? program_->egressProgramFd() : program_->ingressProgramFd();
    EXPECT_EQ(bpf_prog_test_run_opts(fd, &opts), 0);
    EXPECT_EQ(static_cast<int>(opts.retval), TC_ACT_UNSPEC);
    records_.clear();
    ring_buffer__consume(rb_.get());
    return records_;
  }

  static Bytes pattern(std::size_t n, std::uint8_t first) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 7 + 3);
    if (n > 0) b[0] = first;
    return b;
  }

  std::unique_ptr<bpf::BpfProgram> program_;
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb_{nullptr, ring_buffer__free};
  std::vector<Record> records_;
};

TEST_F(BpfPayloadTest, DnsPayloadEitherDirectionExactBytes) {
  const Bytes query = pattern(45, 0x12);
  auto recs = run(concat(ethernet(kEthIp),
                         ipv4(17, "10.0.0.1", "10.0.0.53", concat(l4(17, 40000, 53, 0), query))),
                  true);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].header.kind, AYAFLOW_EVENT_PAYLOAD);
  EXPECT_EQ(recs[0].header.direction, AYAFLOW_DIR_EGRESS);
  EXPECT_EQ(recs[0].header.tuple.dst_port, 53);
  EXPECT_EQ(recs[0].header.data_len, query.size());
  EXPECT_EQ(recs[0].data, query);
  // A response (source port 53), larger than one chunk: the first 1024 bytes.
  const Bytes response = pattern(1500, 0x34);
  recs = run(concat(ethernet(kEthIp),
                    ipv4(17, "10.0.0.53", "10.0.0.1", concat(l4(17, 53, 40000, 0), response))));
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].header.tuple.src_port, 53);
  EXPECT_EQ(recs[0].data, Bytes(response.begin(), response.begin() + 1024));
  // Other UDP ports carry nothing.
  EXPECT_TRUE(run(concat(ethernet(kEthIp),
                         ipv4(17, "10.0.0.1", "10.0.0.2", concat(l4(17, 5353, 5354, 0), query))))
                  .empty());
}

TEST_F(BpfPayloadTest, TlsStreamFromSynFirstFourKilobytes) {
  const std::uint32_t isn = 0xfffffff0;  // wraps inside the captured range
  auto syn =
      run(concat(ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2", tcp(50000, 443, isn, 0x02, {}))),
          true);
  ASSERT_EQ(syn.size(), 1u);
  EXPECT_EQ(syn[0].header.flags, AYAFLOW_PF_SYN);
  EXPECT_EQ(syn[0].header.seq, isn);
  EXPECT_EQ(syn[0].header.data_len, 0u);
  // First segment: 3000 bytes, not starting with a TLS byte (the SYN decides).
  const Bytes first = pattern(3000, 0x42);
  auto recs = run(concat(ethernet(kEthIp),
                         ipv4(6, "10.0.0.1", "10.0.0.2", tcp(50000, 443, isn + 1, 0x18, first))),
                  true);
  ASSERT_EQ(recs.size(), 3u);  // 1024 + 1024 + 952
  Bytes joined;
  for (std::size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i].header.seq, isn + 1 + static_cast<std::uint32_t>(i * 1024));
    joined.insert(joined.end(), recs[i].data.begin(), recs[i].data.end());
  }
  EXPECT_EQ(joined, first);
  // Second segment: only the 1096 bytes up to 4096 are captured.
  const Bytes second = pattern(3000, 0x43);
  recs = run(concat(ethernet(kEthIp),
                    ipv4(6, "10.0.0.1", "10.0.0.2", tcp(50000, 443, isn + 1 + 3000, 0x18, second))),
             true);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].header.data_len + recs[1].header.data_len, 1096u);
  // Beyond the window nothing more, even with a TLS-looking first byte.
  EXPECT_TRUE(
      run(concat(ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2",
                                        tcp(50000, 443, isn + 1 + 6000, 0x18, pattern(100, 0x16)))),
          true)
          .empty());
}

TEST_F(BpfPayloadTest, WithoutSynOnlyATlsRecordStartsAStream) {
  EXPECT_TRUE(run(concat(ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2",
                                                tcp(50001, 443, 1000, 0x18, pattern(200, 0x17)))))
                  .empty());
  auto recs = run(concat(ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2",
                                                tcp(50001, 443, 5000, 0x18, pattern(200, 0x16)))));
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].header.seq, 5000u);
  EXPECT_EQ(recs[0].data, pattern(200, 0x16));
  // Port 8443 is not inspected; server-to-client (source port 443) neither.
  EXPECT_TRUE(run(concat(ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2",
                                                tcp(50002, 8443, 1, 0x18, pattern(200, 0x16)))))
                  .empty());
  EXPECT_TRUE(run(concat(ethernet(kEthIp), ipv4(6, "10.0.0.2", "10.0.0.1",
                                                tcp(443, 50002, 1, 0x18, pattern(200, 0x16)))))
                  .empty());
}

TEST_F(BpfPayloadTest, OffByDefault) {
  program_ = std::make_unique<bpf::BpfProgram>(bpf::ProgramOptions{});
  rb_.reset(
      ring_buffer__new(program_->payloadEventsMapFd(), &BpfPayloadTest::onSample, this, nullptr));
  EXPECT_TRUE(run(concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.53",
                                                concat(l4(17, 40000, 53, 0), pattern(40, 1)))))
                  .empty());
  EXPECT_EQ(program_->readPayloadTotals().events, 0u);
}

const bpf::KernelCounter* findCounter(const bpf::KernelTotals& t, std::uint8_t dir,
                                      std::uint8_t proto, std::uint8_t family) {
  for (const auto& c : t.counters) {
    if (c.ifindex != 0 && c.direction == dir && c.protocol == proto && c.addr_type == family) {
      return &c;
    }
  }
  return nullptr;
}

TEST_F(BpfParseTest, CountersBreakDownByDirectionProtocolAndFamily) {
  enableIpv6(true);
  const Bytes udp4 = concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.2", l4(17, 1, 2, 10)));
  const Bytes tcp6 = concat(ethernet(kEthIpv6), ipv6(6, "fd00::1", "fd00::2", l4(6, 3, 4, 0)));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(run(udp4));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(run(tcp6, true));
  const bpf::KernelTotals t = program_->readTotals();
  const bpf::KernelCounter* a = findCounter(t, AYAFLOW_DIR_INGRESS, 17, 4);
  const bpf::KernelCounter* b = findCounter(t, AYAFLOW_DIR_EGRESS, 6, 6);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->packets, 3u);
  EXPECT_EQ(a->bytes, 3u * 38u);
  EXPECT_EQ(b->packets, 2u);
  EXPECT_EQ(b->bytes, 2u * 60u);
  EXPECT_EQ(a->ifindex, b->ifindex);
  EXPECT_EQ(t.totalPackets(), 5u);
  EXPECT_EQ(t.totalBytes(), 3u * 38u + 2u * 60u);
}

TEST_F(BpfParseTest, FullStatsMapFallsBackToOverflowAndStaysExact) {
  // Fill every key of the stats map with interfaces that do not exist.
  const int cpus = libbpf_num_possible_cpus();
  std::vector<ayaflow_stats> zero(static_cast<std::size_t>(cpus));
  for (std::uint32_t i = 0; i < AYAFLOW_STATS_MAX_ENTRIES; ++i) {
    ayaflow_stats_key key{};
    key.ifindex = 1000000 + i;
    key.protocol = 17;
    key.addr_type = 4;
    ASSERT_EQ(bpf_map_update_elem(program_->statsMapFd(), &key, zero.data(), BPF_NOEXIST), 0);
  }
  const Bytes udp4 = concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.2", l4(17, 1, 2, 10)));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(run(udp4));  // run() checks the totals moved
  const bpf::KernelTotals t = program_->readTotals();
  EXPECT_EQ(t.totalPackets(), 4u);
  EXPECT_EQ(t.totalBytes(), 4u * 38u);
  const bpf::KernelCounter* overflow = nullptr;
  for (const auto& c : t.counters) {
    if (c.ifindex == 0 && c.direction == AYAFLOW_DIR_INGRESS) overflow = &c;
  }
  ASSERT_NE(overflow, nullptr);
  EXPECT_EQ(overflow->packets, 4u);
}

TEST_F(BpfParseTest, FullRingBufferCountsLostEventsNotPackets) {
  // Smallest ring: 4096 bytes hold 4096 / (64 + 8) = 56 events.
  program_.reset();
  rb_.reset();
  program_ = std::make_unique<bpf::BpfProgram>(bpf::ProgramOptions{4096, false});
  const Bytes frame = concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.2", l4(17, 1, 2, 10)));
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<__u32>(frame.size()), .repeat = 200);
  ASSERT_EQ(bpf_prog_test_run_opts(program_->ingressProgramFd(), &opts), 0);
  const bpf::KernelTotals t = program_->readTotals();
  EXPECT_EQ(t.packets[AYAFLOW_DIR_INGRESS], 200u);
  EXPECT_EQ(t.bytes[AYAFLOW_DIR_INGRESS], 200u * 38u);
  EXPECT_EQ(t.events_lost[AYAFLOW_DIR_INGRESS], 200u - 56u);
  std::size_t seen = 0;
  auto count = [](void* ctx, void*, size_t) {
    ++*static_cast<std::size_t*>(ctx);
    return 0;
  };
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb(
      ring_buffer__new(program_->eventsMapFd(), count, &seen, nullptr), ring_buffer__free);
  ASSERT_TRUE(rb);
  ring_buffer__consume(rb.get());
  EXPECT_EQ(seen, 56u);
  EXPECT_EQ(seen + t.totalLost(), t.totalPackets());
}

/// Translated size of a loaded program, in bytes.
std::uint32_t xlatedBytes(int prog_fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  EXPECT_EQ(bpf_obj_get_info_by_fd(prog_fd, &info, &len), 0);
  return info.xlated_prog_len;
}

/// The switches are load-time constants: the code of what is off is not in the program
/// the kernel runs.
TEST(BpfLoadTimeSwitches, TheVerifierDropsWhatIsOff) {
  AYAFLOW_REQUIRE_ROOT();
  bpf::installLibbpfLogger(false);
  const auto size = [](bool ipv6, bool deep_inspect, bool flow_table) {
    bpf::ProgramOptions options;
    options.enable_ipv6 = ipv6;
    options.deep_inspect = deep_inspect;
    options.flow_table = flow_table;
    const bpf::BpfProgram program(options);
    return xlatedBytes(program.ingressProgramFd());
  };
  const std::uint32_t base = size(false, false, false);
  EXPECT_LT(base, size(true, false, false));
  EXPECT_LT(base, size(false, true, false));
  EXPECT_LT(base, size(false, false, true));
}

}  // namespace
}  // namespace ayaflow::test
