// SPDX-License-Identifier: MIT OR Apache-2.0
// Overlay decapsulation in the kernel program, on exact crafted frames run by the kernel
// through BPF_PROG_TEST_RUN (root). On a Kubernetes node's uplink, pod-to-pod traffic between
// nodes crosses inside VXLAN, Geneve or IP-in-IP; it must count as the pods' own packet
// (tuple, protocol, family, the inner IP length, AYAFLOW_F_TUNNEL), as on the pod's
// interface. Expected figures come from the built bytes (the inner IP packet's size), never
// from the program; every run also checks that the per-CPU totals moved by exactly the
// event, under the inner protocol and family.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/bpf/flow_tables.h"
#include "packet_builder.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

constexpr std::uint16_t kEthIp = 0x0800;
constexpr std::uint16_t kEthIpv6 = 0x86DD;
constexpr std::uint16_t kEthArp = 0x0806;
constexpr std::uint16_t kTeb = 0x6558;  // Geneve: an Ethernet frame follows
constexpr std::uint16_t kQ = 0x8100;
constexpr std::uint16_t kVxlan = 4789;
constexpr std::uint16_t kVxlanLinux = 8472;
constexpr std::uint16_t kGeneve = 6081;
constexpr std::uint16_t kOuterSport = 51000;

std::array<std::uint8_t, 16> mapped(const char* v4) {
  std::array<std::uint8_t, 16> a{};
  a[10] = a[11] = 0xff;
  inet_pton(AF_INET, v4, a.data() + 12);
  return a;
}
std::array<std::uint8_t, 16> v6(const char* text) {
  std::array<std::uint8_t, 16> a{};
  inet_pton(AF_INET6, text, a.data());
  return a;
}
std::array<std::uint8_t, 16> addr(const __u8 (&raw)[16]) {
  std::array<std::uint8_t, 16> a{};
  std::memcpy(a.data(), raw, 16);
  return a;
}

/// A pod-to-pod packet: its IP bytes and what the program must report for it.
struct Inner {
  Bytes ip;
  std::uint8_t protocol;
  std::uint8_t family;
  const char* src;
  const char* dst;
  std::uint16_t sport, dport;
};

Inner udp4(std::size_t payload = 30) {
  return {ipv4(17, "10.244.1.2", "10.244.2.3", l4(17, 40000, 53, payload)),
          17,
          4,
          "10.244.1.2",
          "10.244.2.3",
          40000,
          53};
}
Inner tcp4(std::size_t payload = 100) {
  return {ipv4(6, "10.244.1.7", "10.244.3.9", l4(6, 41000, 8080, payload)),
          6,
          4,
          "10.244.1.7",
          "10.244.3.9",
          41000,
          8080};
}
Inner udp6(std::size_t payload = 30) {
  return {ipv6(17, "fd00:10:244:1::2", "fd00:10:244:2::3", l4(17, 40001, 5353, payload)),
          17,
          6,
          "fd00:10:244:1::2",
          "fd00:10:244:2::3",
          40001,
          5353};
}
Inner tcp6(std::size_t payload = 100) {
  return {ipv6(6, "fd00:10:244:1::7", "fd00:10:244:3::9", l4(6, 41001, 443, payload)),
          6,
          6,
          "fd00:10:244:1::7",
          "fd00:10:244:3::9",
          41001,
          443};
}

/// The inner packet as an Ethernet frame (VXLAN, Geneve 0x6558), with optional VLAN tags.
Bytes frameOf(const Inner& in, std::vector<std::uint16_t> tags = {}) {
  return concat(ethernet(in.family == 4 ? kEthIp : kEthIpv6, std::move(tags)), in.ip);
}

/// The node-to-node packet: outer Ethernet, outer IPv4 or IPv6 with `proto`, then `body`.
Bytes overIpv4(std::uint8_t proto, const Bytes& body) {
  return concat(ethernet(kEthIp), ipv4(proto, "192.168.0.1", "192.168.0.2", body));
}
Bytes overIpv6(std::uint8_t proto, const Bytes& body, std::vector<Ipv6Ext> exts = {}) {
  return concat(ethernet(kEthIpv6), ipv6(proto, "2001:db8::1", "2001:db8::2", body, exts));
}
Bytes udpOver(bool outer6, std::uint16_t dport, const Bytes& payload) {
  const Bytes u = udp(kOuterSport, dport, payload);
  return outer6 ? overIpv6(17, u) : overIpv4(17, u);
}

/// Per-CPU totals by (direction, protocol, family), summed.
using Breakdown = std::map<std::tuple<int, int, int>, std::pair<std::uint64_t, std::uint64_t>>;

Breakdown breakdown(const bpf::KernelTotals& t) {
  Breakdown b;
  for (const auto& c : t.counters) {
    auto& v = b[{c.direction, c.protocol, c.addr_type}];
    v.first += c.packets;
    v.second += c.bytes;
  }
  return b;
}

struct FlowCollect final : bpf::FlowSink {
  void onFlow(const ayaflow_flow_key& key, const ayaflow_flow_value& value) noexcept override {
    entries.emplace_back(key, value);
  }
  std::vector<std::pair<ayaflow_flow_key, ayaflow_flow_value>> entries;
};

struct Switches {
  bool ipv6 = true;
  bool decapsulate = true;
  bool flow_table = false;
  bool deep_inspect = false;
};

class BpfOverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    bpf::installLibbpfLogger(false);
    load(Switches{});
  }

  void load(const Switches& s) {
    rb_.reset();
    payload_rb_.reset();
    tables_.reset();
    bpf::ProgramOptions options;
    options.enable_ipv6 = s.ipv6;
    options.decapsulate = s.decapsulate;
    options.flow_table = s.flow_table;
    options.deep_inspect = s.deep_inspect;
    program_ = std::make_unique<bpf::BpfProgram>(options);
    rb_.reset(ring_buffer__new(program_->eventsMapFd(), &BpfOverlayTest::onSample, this, nullptr));
    ASSERT_TRUE(rb_);
    if (s.flow_table) {
      tables_ = std::make_unique<bpf::FlowTables>(
          program_->flowTablesMapFd(), program_->flowTableFd(0), program_->flowTableFd(1), 64);
    }
    if (s.deep_inspect) {
      payload_rb_.reset(ring_buffer__new(program_->payloadEventsMapFd(), &BpfOverlayTest::onPayload,
                                         this, nullptr));
      ASSERT_TRUE(payload_rb_);
    }
  }

  static int onSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<BpfOverlayTest*>(ctx);
    EXPECT_EQ(size, sizeof(ayaflow_packet_event));
    ayaflow_packet_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    self->events_.push_back(ev);
    return 0;
  }

  static int onPayload(void* ctx, void* data, size_t size) {
    auto* self = static_cast<BpfOverlayTest*>(ctx);
    EXPECT_GE(size, 64u);
    ayaflow_payload_event h{};
    std::memcpy(&h, data, std::min(size, sizeof(h)));
    self->payloads_.push_back(h);
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    self->payload_data_.emplace_back(bytes + 64, bytes + size);
    return 0;
  }

  /// Runs the program once on `frame`, as a GSO/GRO skb of gso_segs segments when given.
  void exec(const Bytes& frame, bool egress, std::uint32_t gso_segs = 0,
            std::uint32_t gso_size = 0) {
    __sk_buff skb{};
    skb.gso_segs = gso_segs;
    skb.gso_size = gso_size;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                .data_size_in = static_cast<__u32>(frame.size()), .ctx_in = &skb,
                .ctx_size_in = sizeof(skb), .repeat = 1);
    const int fd = egress ? program_->egressProgramFd() : program_->ingressProgramFd();
    const int err = bpf_prog_test_run_opts(fd, &opts);
    EXPECT_EQ(err, 0) << std::strerror(-err);
    EXPECT_EQ(static_cast<int>(opts.retval), TC_ACT_UNSPEC);
  }

  /// exec() in per-packet mode; returns the event the program wrote, if any. Checks that the
  /// totals moved by exactly the event's packets and bytes, under its protocol and family
  /// only, and not at all without an event.
  std::optional<ayaflow_packet_event> run(const Bytes& frame, bool egress = false,
                                          std::uint32_t gso_segs = 0, std::uint32_t gso_size = 0) {
    const bpf::KernelTotals before = program_->readTotals();
    exec(frame, egress, gso_segs, gso_size);
    events_.clear();
    ring_buffer__consume(rb_.get());
    EXPECT_LE(events_.size(), 1u);
    const bpf::KernelTotals after = program_->readTotals();
    const int dir = egress ? AYAFLOW_DIR_EGRESS : AYAFLOW_DIR_INGRESS;
    EXPECT_EQ(after.totalLost(), before.totalLost());
    Breakdown moved = breakdown(after);
    for (const auto& [key, v] : breakdown(before)) {
      moved[key].first -= v.first;
      moved[key].second -= v.second;
    }
    for (auto it = moved.begin(); it != moved.end();) {
      it = it->second.first == 0 ? moved.erase(it) : std::next(it);
    }
    if (events_.empty()) {
      EXPECT_TRUE(moved.empty()) << "counted without an event";
      EXPECT_EQ(after.totalBytes(), before.totalBytes());
      return std::nullopt;
    }
    const ayaflow_packet_event& ev = events_[0];
    EXPECT_EQ(ev.direction, dir);
    for (const __u8 pad : ev.tuple.pad) EXPECT_EQ(pad, 0);
    EXPECT_EQ(moved.size(), 1u);
    const auto key = std::make_tuple(dir, int{ev.tuple.protocol}, int{ev.tuple.addr_type});
    EXPECT_EQ(moved[key].first, ev.segs);
    EXPECT_EQ(moved[key].second, ev.pkt_len);
    return ev;
  }

  /// The event is the pods' packet `in`: its tuple, family, its IP length, flagged.
  static void expectInner(const std::optional<ayaflow_packet_event>& ev, const Inner& in,
                          std::uint8_t flags = AYAFLOW_F_TUNNEL) {
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->flags, flags);
    EXPECT_EQ(ev->tuple.protocol, in.protocol);
    EXPECT_EQ(ev->tuple.addr_type, in.family);
    EXPECT_EQ(ev->tuple.src_port, in.sport);
    EXPECT_EQ(ev->tuple.dst_port, in.dport);
    EXPECT_EQ(ev->segs, 1u);
    EXPECT_EQ(ev->pkt_len, in.ip.size());
    if (in.family == 4) {
      EXPECT_EQ(addr(ev->tuple.src_addr), mapped(in.src));
      EXPECT_EQ(addr(ev->tuple.dst_addr), mapped(in.dst));
    } else {
      EXPECT_EQ(addr(ev->tuple.src_addr), v6(in.src));
      EXPECT_EQ(addr(ev->tuple.dst_addr), v6(in.dst));
    }
  }

  /// The event is the outer UDP packet to `dport` carrying `payload_len` bytes, as today.
  static void expectOuterUdp(const std::optional<ayaflow_packet_event>& ev, bool outer6,
                             std::uint16_t dport, std::size_t payload_len) {
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->flags, 0);
    EXPECT_EQ(ev->tuple.protocol, 17);
    EXPECT_EQ(ev->tuple.addr_type, outer6 ? 6 : 4);
    EXPECT_EQ(ev->tuple.src_port, kOuterSport);
    EXPECT_EQ(ev->tuple.dst_port, dport);
    EXPECT_EQ(ev->pkt_len, (outer6 ? 40u : 20u) + 8u + payload_len);
    EXPECT_EQ(addr(ev->tuple.src_addr), outer6 ? v6("2001:db8::1") : mapped("192.168.0.1"));
    EXPECT_EQ(addr(ev->tuple.dst_addr), outer6 ? v6("2001:db8::2") : mapped("192.168.0.2"));
  }

  std::unique_ptr<bpf::BpfProgram> program_;
  std::unique_ptr<bpf::FlowTables> tables_;
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb_{nullptr, ring_buffer__free};
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> payload_rb_{nullptr, ring_buffer__free};
  std::vector<ayaflow_packet_event> events_;
  std::vector<ayaflow_payload_event> payloads_;
  std::vector<Bytes> payload_data_;
};

TEST_F(BpfOverlayTest, VxlanOnBothPortsOverIpv4AndIpv6CountsTheInnerPacket) {
  for (const std::uint16_t port : {kVxlan, kVxlanLinux}) {
    for (const bool outer6 : {false, true}) {
      for (const Inner& in : {udp4(), tcp4(), udp6(), tcp6()}) {
        SCOPED_TRACE(testing::Message()
                     << "port " << port << " outer IPv" << (outer6 ? 6 : 4) << " inner IPv"
                     << int{in.family} << " protocol " << int{in.protocol});
        const Bytes frame = udpOver(outer6, port, vxlan(42, frameOf(in)));
        expectInner(run(frame), in);
        expectInner(run(frame, true), in);
      }
    }
  }
}

TEST_F(BpfOverlayTest, VxlanInnerFrameWithVlanTags) {
  for (const auto& tags : std::vector<std::vector<std::uint16_t>>{{kQ}, {0x88A8, kQ}}) {
    expectInner(run(udpOver(false, kVxlan, vxlan(7, frameOf(tcp4(), tags)))), tcp4());
    expectInner(run(udpOver(true, kVxlanLinux, vxlan(7, frameOf(udp6(), tags)))), udp6());
  }
}

TEST_F(BpfOverlayTest, GeneveWithAndWithoutOptionsEthernetOrIpInside) {
  for (const unsigned words : {0u, 1u, 4u, 63u}) {
    for (const bool outer6 : {false, true}) {
      for (const Inner& in : {udp4(), tcp6()}) {
        SCOPED_TRACE(testing::Message() << words << " option words, outer IPv" << (outer6 ? 6 : 4)
                                        << " inner IPv" << int{in.family});
        // Protocol type 0x6558: an Ethernet frame inside.
        expectInner(run(udpOver(outer6, kGeneve, geneve(kTeb, frameOf(in), words))), in);
        // 0x0800 / 0x86DD: the IP packet directly.
        const std::uint16_t type = in.family == 4 ? kEthIp : kEthIpv6;
        expectInner(run(udpOver(outer6, kGeneve, geneve(type, in.ip, words)), true), in);
      }
    }
  }
}

TEST_F(BpfOverlayTest, IpInIpAllFourCombinations) {
  expectInner(run(overIpv4(4, udp4().ip)), udp4());   // IPv4 in IPv4 (ipip)
  expectInner(run(overIpv4(41, tcp6().ip)), tcp6());  // IPv6 in IPv4 (sit)
  expectInner(run(overIpv6(4, tcp4().ip)), tcp4());   // IPv4 in IPv6 (ip6tnl)
  expectInner(run(overIpv6(41, udp6().ip)), udp6());  // IPv6 in IPv6 (ip6tnl)
  // The outer IPv6 next header is the one after its extension headers.
  expectInner(run(overIpv6(4, tcp4().ip, {hopByHop(), destOpts16()})), tcp4());
  // The protocol says which version is inside: no match, nothing counted.
  EXPECT_FALSE(run(overIpv4(4, udp6().ip)));
  EXPECT_FALSE(run(overIpv4(41, udp4().ip)));
}

TEST_F(BpfOverlayTest, OneLevelOnly) {
  // VXLAN in VXLAN: the first inner packet is what counts, itself a UDP packet to 4789.
  const Inner second = udp4();
  const Inner first{ipv4(17, "10.0.0.1", "10.0.0.2", udp(52000, kVxlan, vxlan(9, frameOf(second)))),
                    17,
                    4,
                    "10.0.0.1",
                    "10.0.0.2",
                    52000,
                    kVxlan};
  expectInner(run(udpOver(false, kVxlan, vxlan(8, frameOf(first)))), first);
  // IP-in-IP in IP-in-IP: the first inner is protocol 4, not TCP/UDP.
  EXPECT_FALSE(run(overIpv4(4, ipv4(4, "10.0.0.1", "10.0.0.2", udp4().ip))));
}

TEST_F(BpfOverlayTest, InnerFragmentCountsWithoutPorts) {
  // A later fragment of the pods' packet: counted as it is on the pod's interface.
  const Inner frag{ipv4(17, "10.244.1.2", "10.244.2.3", Bytes(48, 0x77), 0, 0x0010),
                   17,
                   4,
                   "10.244.1.2",
                   "10.244.2.3",
                   0,
                   0};
  expectInner(run(udpOver(false, kVxlan, vxlan(1, frameOf(frag)))), frag,
              AYAFLOW_F_TUNNEL | AYAFLOW_F_FRAGMENT);
}

TEST_F(BpfOverlayTest, OuterFragmentsAreNotDecapsulated) {
  // A later fragment of a VXLAN packet: UDP without ports, as today.
  const Bytes rest(64, 0x33);
  auto later =
      run(concat(ethernet(kEthIp), ipv4(17, "192.168.0.1", "192.168.0.2", rest, 0, 0x0020)));
  ASSERT_TRUE(later);
  EXPECT_EQ(later->flags, AYAFLOW_F_FRAGMENT);
  EXPECT_EQ(later->tuple.dst_port, 0);
  EXPECT_EQ(later->pkt_len, 20u + 64u);
  // The first fragment (MF set) holds the tunnel header but not the whole inner packet:
  // the outer UDP packet, as today, so the fragments' bytes add up.
  const Bytes payload = vxlan(1, frameOf(udp4()));
  auto first = run(concat(ethernet(kEthIp), ipv4(17, "192.168.0.1", "192.168.0.2",
                                                 udp(kOuterSport, kVxlan, payload), 0, 0x2000)));
  expectOuterUdp(first, false, kVxlan, payload.size());
  // The same over IPv6 with a fragment header (offset 0, more fragments).
  auto first6 = run(overIpv6(17, udp(kOuterSport, kVxlan, payload), {fragment(0, true)}));
  ASSERT_TRUE(first6);
  EXPECT_EQ(first6->flags, 0);
  EXPECT_EQ(first6->tuple.dst_port, kVxlan);
  EXPECT_EQ(first6->pkt_len, 40u + 8u + 8u + payload.size());
  // An atomic fragment (a fragment header with offset 0 and no more fragments) is whole.
  expectInner(run(overIpv6(17, udp(kOuterSport, kVxlan, payload), {fragment(0, false)})), udp4());
  // IP-in-IP fragments are not TCP/UDP: nothing, as today.
  EXPECT_FALSE(
      run(concat(ethernet(kEthIp), ipv4(4, "192.168.0.1", "192.168.0.2", udp4().ip, 0, 0x2000))));
  EXPECT_FALSE(
      run(concat(ethernet(kEthIp), ipv4(4, "192.168.0.1", "192.168.0.2", rest, 0, 0x0020))));
}

TEST_F(BpfOverlayTest, InnerPacketsThatAreNotTcpOrUdpAreNotCounted) {
  const Bytes arp = concat(ethernet(kEthArp), Bytes(28, 0));
  const Bytes icmp = ipv4(1, "10.244.1.2", "10.244.2.3", Bytes(16, 0));
  const Bytes icmp6 = ipv6(58, "fd00::1", "fd00::2", Bytes(16, 0));
  EXPECT_FALSE(run(udpOver(false, kVxlan, vxlan(1, arp))));
  EXPECT_FALSE(run(udpOver(false, kVxlanLinux, vxlan(1, concat(ethernet(kEthIp), icmp)))));
  EXPECT_FALSE(run(udpOver(true, kVxlan, vxlan(1, concat(ethernet(kEthIpv6), icmp6)))));
  EXPECT_FALSE(run(udpOver(false, kGeneve, geneve(kTeb, arp, 2))));
  EXPECT_FALSE(run(udpOver(false, kGeneve, geneve(kEthIp, icmp))));
  EXPECT_FALSE(run(udpOver(false, kGeneve, geneve(kEthIpv6, icmp6))));
  EXPECT_FALSE(run(overIpv4(4, icmp)));
  EXPECT_FALSE(run(overIpv6(41, icmp6)));
  // Garbage where the inner IP header should be: the tunnel header was well formed.
  EXPECT_FALSE(run(udpOver(false, kVxlan, vxlan(1, concat(ethernet(kEthIp), Bytes(40, 0x65))))));
  EXPECT_FALSE(run(udpOver(false, kGeneve, geneve(kEthIpv6, Bytes(60, 0x45)))));
}

TEST_F(BpfOverlayTest, MalformedTunnelHeadersCountTheOuterPacket) {
  // VXLAN without the I flag.
  const Bytes no_i = vxlan(1, frameOf(udp4()), 0x00);
  expectOuterUdp(run(udpOver(false, kVxlan, no_i)), false, kVxlan, no_i.size());
  // Other flags or reserved bits: not the header a Linux VXLAN device takes (GBP, GPE), and
  // not what ordinary UDP to these ports should be mistaken for ('x' = 0x78 has the I bit).
  for (const Bytes& hdr :
       {Bytes{0x88, 0, 0, 0, 0, 0, 1, 0}, Bytes{0x0c, 0, 0, 3, 0, 0, 1, 0},
        Bytes{0x08, 1, 0, 0, 0, 0, 1, 0}, Bytes{0x08, 0, 0, 0, 0, 0, 1, 1}, Bytes(8, 'x')}) {
    const Bytes payload = concat(hdr, frameOf(udp4()));
    expectOuterUdp(run(udpOver(false, kVxlanLinux, payload)), false, kVxlanLinux, payload.size());
  }
  // Geneve versions 1 to 3.
  for (const std::uint8_t version : {1, 2, 3}) {
    const Bytes g = geneve(kTeb, frameOf(udp4()), 0, version);
    expectOuterUdp(run(udpOver(true, kGeneve, g)), true, kGeneve, g.size());
  }
  // A Geneve protocol type we do not look into (MPLS).
  const Bytes mpls = geneve(0x8847, Bytes(40, 0));
  expectOuterUdp(run(udpOver(false, kGeneve, mpls)), false, kGeneve, mpls.size());
  // Shorter than the 8-byte tunnel header.
  const Bytes short_hdr = {0x08, 0, 0, 0};
  expectOuterUdp(run(udpOver(false, kVxlan, short_hdr)), false, kVxlan, 4);
  expectOuterUdp(run(udpOver(false, kGeneve, short_hdr)), false, kGeneve, 4);
  // Geneve options longer than the packet: 63 words announced, 2 present.
  Bytes cut = geneve(kTeb, {}, 63);
  cut.resize(8 + 8);
  expectOuterUdp(run(udpOver(false, kGeneve, cut)), false, kGeneve, cut.size());
  // Other UDP ports are ordinary UDP, whatever they carry.
  const Bytes vx = vxlan(1, frameOf(udp4()));
  expectOuterUdp(run(udpOver(false, 4790, vx)), false, 4790, vx.size());
}

TEST_F(BpfOverlayTest, TruncatedAtEveryLength) {
  // Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 + inner IPv4 20 + ports 4.
  const Inner in = udp4();
  const Bytes full = udpOver(false, kVxlan, vxlan(1, frameOf(in)));
  const std::size_t ports = 14 + 20 + 4;           // the outer ports
  const std::size_t tunnel = 14 + 20 + 8 + 8;      // the whole tunnel header
  const std::size_t inner = tunnel + 14 + 20 + 4;  // the inner ports
  // The kernel builds no skb from an IPv4 frame shorter than the IPv4 header.
  for (std::size_t len = 14 + 20; len <= full.size(); ++len) {
    SCOPED_TRACE(testing::Message() << "length " << len);
    const auto ev = run(Bytes(full.begin(), full.begin() + static_cast<long>(len)));
    if (len < ports) {
      EXPECT_FALSE(ev);
    } else if (len < tunnel) {
      // The tunnel header is cut: an ordinary UDP packet (its IP length from the header).
      expectOuterUdp(ev, false, kVxlan, full.size() - 14 - 20 - 8);
    } else if (len < inner) {
      EXPECT_FALSE(ev);  // the tunnel is there, the packet inside is cut short
    } else {
      expectInner(ev, in);
    }
  }
}

TEST_F(BpfOverlayTest, Ipv6SwitchAppliesInsideAndOutside) {
  load(Switches{.ipv6 = false});
  // IPv6 inside IPv4: not counted, as on the pod's interface.
  EXPECT_FALSE(run(udpOver(false, kVxlan, vxlan(1, frameOf(tcp6())))));
  EXPECT_FALSE(run(udpOver(false, kGeneve, geneve(kEthIpv6, udp6().ip))));
  EXPECT_FALSE(run(overIpv4(41, tcp6().ip)));
  // IPv4 inside IPv6: the outer packet is not looked at.
  EXPECT_FALSE(run(udpOver(true, kVxlan, vxlan(1, frameOf(tcp4())))));
  EXPECT_FALSE(run(overIpv6(4, udp4().ip)));
  // IPv4 in IPv4 still counts.
  expectInner(run(udpOver(false, kVxlan, vxlan(1, frameOf(tcp4())))), tcp4());
  expectInner(run(overIpv4(4, udp4().ip)), udp4());
}

TEST_F(BpfOverlayTest, DecapsulateOffCountsTheOuterPacketAsBefore) {
  load(Switches{.decapsulate = false});
  const Bytes vx = vxlan(1, frameOf(tcp4()));
  expectOuterUdp(run(udpOver(false, kVxlan, vx)), false, kVxlan, vx.size());
  const Bytes g = geneve(kEthIpv6, udp6().ip, 3);
  expectOuterUdp(run(udpOver(true, kGeneve, g), true), true, kGeneve, g.size());
  EXPECT_FALSE(run(overIpv4(4, udp4().ip)));  // protocol 4 is not TCP/UDP
  EXPECT_FALSE(run(overIpv6(41, udp6().ip)));
}

/// A TCP header with `option_words` 4-byte words of options, then `payload` bytes.
Bytes tcpWithOptions(std::uint16_t sport, std::uint16_t dport, unsigned option_words,
                     std::size_t payload) {
  Bytes b = tcp(sport, dport, 1000, 0x10, {});
  b[12] = static_cast<std::uint8_t>((5 + option_words) << 4);
  b.insert(b.end(), option_words * 4, 0x01);
  b.insert(b.end(), payload, 0xab);
  return b;
}

TEST_F(BpfOverlayTest, TunnelledGsoCountsTheInnerSegments) {
  // A VXLAN GSO skb of 4 inner TCP segments of 500 bytes (the last 400): each segment on the
  // pod's interface repeats the inner IPv4 (20) and TCP header with timestamps (32); the
  // tunnel headers the uplink adds are not counted.
  const Bytes inner_ip = ipv4(6, "10.244.1.2", "10.244.2.3", tcpWithOptions(40000, 5201, 3, 1900));
  const Bytes frame = udpOver(false, kVxlan, vxlan(1, concat(ethernet(kEthIp), inner_ip)));
  const std::uint64_t want = inner_ip.size() + 3 * (20 + 32);
  EXPECT_EQ(want, 3 * (20 + 32 + 500) + (20 + 32 + 400));  // the segments' own IP lengths
  for (const bool egress : {true, false}) {                // GSO on egress, GRO-merged on ingress
    auto ev = run(frame, egress, 4, 500);
    ASSERT_TRUE(ev);
    EXPECT_EQ(ev->flags, AYAFLOW_F_TUNNEL);
    EXPECT_EQ(ev->segs, 4u);
    EXPECT_EQ(ev->pkt_len, want);
    EXPECT_EQ(ev->tuple.dst_port, 5201);
  }
  // UDP GSO inside Geneve over IPv6, IPv6 inside: 3 segments repeating 40 + 8 bytes.
  const Bytes inner6 = ipv6(17, "fd00::1", "fd00::2", l4(17, 4433, 443, 3000));
  auto ev6 = run(udpOver(true, kGeneve, geneve(kEthIpv6, inner6, 2)), true, 3, 1000);
  ASSERT_TRUE(ev6);
  EXPECT_EQ(ev6->segs, 3u);
  EXPECT_EQ(ev6->pkt_len, inner6.size() + 2 * (40 + 8));
  EXPECT_EQ(ev6->pkt_len, 3u * (40 + 8 + 1000));
}

TEST_F(BpfOverlayTest, FlowTableKeyCarriesTheTunnelFlag) {
  load(Switches{.flow_table = true});
  const Inner in = tcp4();
  const Bytes vx = udpOver(false, kVxlan, vxlan(1, frameOf(in)));
  const Bytes ipip = overIpv4(4, in.ip);
  const Bytes plain = concat(ethernet(kEthIp), in.ip);
  for (const Bytes* f : {&vx, &vx, &ipip, &plain}) exec(*f, true);
  events_.clear();
  ring_buffer__consume(rb_.get());
  EXPECT_TRUE(events_.empty());  // counted in the table: no event
  const bpf::KernelTotals t = program_->readTotals();
  EXPECT_EQ(t.packets[AYAFLOW_DIR_EGRESS], 4u);
  EXPECT_EQ(t.bytes[AYAFLOW_DIR_EGRESS], 4u * in.ip.size());
  FlowCollect c;
  tables_->swapAndCollect(c);
  ASSERT_EQ(c.entries.size(), 2u);  // the tunnelled packets, the plain one
  std::sort(c.entries.begin(), c.entries.end(),
            [](const auto& a, const auto& b) { return a.first.flags < b.first.flags; });
  EXPECT_EQ(c.entries[0].first.flags, 0);
  EXPECT_EQ(c.entries[0].second.packets, 1u);
  EXPECT_EQ(c.entries[1].first.flags, AYAFLOW_F_TUNNEL);
  EXPECT_EQ(c.entries[1].second.packets, 3u);
  EXPECT_EQ(c.entries[1].second.bytes, 3u * in.ip.size());
  EXPECT_EQ(c.entries[1].first.tuple.dst_port, in.dport);
  EXPECT_EQ(addr(c.entries[1].first.tuple.src_addr), mapped(in.src));
}

TEST_F(BpfOverlayTest, DeepInspectionReadsTheInnerPayload) {
  load(Switches{.deep_inspect = true});
  Bytes query(45, 0);
  for (std::size_t i = 0; i < query.size(); ++i) query[i] = static_cast<std::uint8_t>(i * 7 + 3);
  const Bytes dns = ipv4(17, "10.244.1.2", "10.96.0.10", udp(40000, 53, query));
  run(udpOver(false, kVxlan, vxlan(1, concat(ethernet(kEthIp), dns))), true);
  // A TLS SYN inside Geneve (IPv6 inside): the stream starts at the inner TCP header.
  const Bytes syn = ipv6(6, "fd00::1", "fd00::2", tcp(50000, 443, 777, 0x02, {}));
  run(udpOver(false, kGeneve, geneve(kEthIpv6, syn, 1)), true);
  payloads_.clear();
  payload_data_.clear();
  ring_buffer__consume(payload_rb_.get());
  ASSERT_EQ(payloads_.size(), 2u);
  EXPECT_EQ(payloads_[0].tuple.dst_port, 53);
  EXPECT_EQ(addr(payloads_[0].tuple.dst_addr), mapped("10.96.0.10"));
  EXPECT_EQ(payloads_[0].data_len, query.size());
  EXPECT_EQ(payload_data_[0], query);
  EXPECT_EQ(payloads_[1].flags, AYAFLOW_PF_SYN);
  EXPECT_EQ(payloads_[1].seq, 777u);
  EXPECT_EQ(payloads_[1].tuple.addr_type, 6);
  EXPECT_EQ(addr(payloads_[1].tuple.src_addr), v6("fd00::1"));
}

/// Translated size of a loaded program, in bytes.
std::uint32_t xlatedBytes(int prog_fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  EXPECT_EQ(bpf_obj_get_info_by_fd(prog_fd, &info, &len), 0);
  return info.xlated_prog_len;
}

TEST(BpfOverlaySwitch, TheVerifierDropsTheTunnelCodeWhenOff) {
  AYAFLOW_REQUIRE_ROOT();
  bpf::installLibbpfLogger(false);
  const auto size = [](bool decapsulate) {
    bpf::ProgramOptions options;
    options.decapsulate = decapsulate;
    const bpf::BpfProgram program(options);
    return std::make_pair(xlatedBytes(program.ingressProgramFd()),
                          xlatedBytes(program.egressProgramFd()));
  };
  const auto off = size(false);
  const auto on = size(true);
  EXPECT_LT(off.first, on.first);
  EXPECT_LT(off.second, on.second);
}

TEST(BpfOverlaySwitch, EverySwitchOnPassesTheVerifier) {
  // The largest program: both IP parses with IPv6, deep inspection and the flow table.
  AYAFLOW_REQUIRE_ROOT();
  bpf::installLibbpfLogger(false);
  bpf::ProgramOptions options;
  options.enable_ipv6 = true;
  options.deep_inspect = true;
  options.flow_table = true;
  options.decapsulate = true;
  const bpf::BpfProgram program(options);
  EXPECT_GT(xlatedBytes(program.ingressProgramFd(bpf::LinkLayer::kIpOnly)), 0u);
  EXPECT_GT(xlatedBytes(program.egressProgramFd()), 0u);
}

}  // namespace
}  // namespace ayaflow::test
