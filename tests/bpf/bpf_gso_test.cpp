// SPDX-License-Identifier: MIT OR Apache-2.0
// GSO super-packets and GRO-merged packets, run by the kernel through BPF_PROG_TEST_RUN
// (root): the kernel copies gso_segs and gso_size from the __sk_buff passed as ctx_in into
// the skb, so the program sees the same skb a TCP or UDP sender hands the TC hook before
// segmentation. Each must count as gso_segs packets on the wire, with the bytes of those
// segments: the skb's IP length plus (segs - 1) copies of the IP and TCP (or UDP) headers.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <cstring>
#include <memory>
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

/// A TCP header with `option_words` 4-byte words of options (NOP), then `payload` bytes.
Bytes tcpWithOptions(std::uint16_t sport, std::uint16_t dport, unsigned option_words,
                     std::size_t payload) {
  Bytes b = tcp(sport, dport, 1000, 0x10, {});
  b[12] = static_cast<std::uint8_t>((5 + option_words) << 4);
  b.insert(b.end(), option_words * 4, 0x01);
  b.insert(b.end(), payload, 0xab);
  return b;
}

struct FlowSum final : bpf::FlowSink {
  void onFlow(const ayaflow_flow_key& key, const ayaflow_flow_value& value) noexcept override {
    packets += value.packets;
    bytes += value.bytes;
    entries += 1;
    direction = key.direction;
  }
  std::uint64_t packets = 0, bytes = 0, entries = 0;
  int direction = -1;
};

struct Expected {
  std::uint32_t segs;    // wire packets
  std::uint64_t bytes;   // their IP bytes
  std::uint64_t supers;  // skbs counted as more than one packet
};

class BpfGsoTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    bpf::installLibbpfLogger(false);
    bpf::ProgramOptions options;
    options.enable_ipv6 = true;
    options.flow_table = GetParam();
    program_ = std::make_unique<bpf::BpfProgram>(options);
    rb_.reset(ring_buffer__new(program_->eventsMapFd(), &BpfGsoTest::onSample, this, nullptr));
    ASSERT_TRUE(rb_);
    if (options.flow_table) {
      tables_ = std::make_unique<bpf::FlowTables>(
          program_->flowTablesMapFd(), program_->flowTableFd(0), program_->flowTableFd(1), 64);
    }
  }

  static int onSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<BpfGsoTest*>(ctx);
    EXPECT_EQ(size, sizeof(ayaflow_packet_event));
    ayaflow_packet_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    self->events_.push_back(ev);
    return 0;
  }

  static std::uint64_t supers(const bpf::KernelTotals& t, int dir) {
    std::uint64_t n = 0;
    for (const auto& c : t.counters) {
      if (c.direction == dir) n += c.super_packets;
    }
    return n;
  }

  /// Runs the program once on `frame` as an skb with gso_segs/gso_size and checks the
  /// totals, and the event (per-packet mode) or the flow table (aggregated mode).
  void check(const Bytes& frame, std::uint32_t gso_segs, std::uint32_t gso_size,
             const Expected& want, bool egress = true) {
    const int dir = egress ? AYAFLOW_DIR_EGRESS : AYAFLOW_DIR_INGRESS;
    const bpf::KernelTotals before = program_->readTotals();
    __sk_buff ctx{};
    ctx.gso_segs = gso_segs;
    ctx.gso_size = gso_size;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                .data_size_in = static_cast<__u32>(frame.size()), .ctx_in = &ctx,
                .ctx_size_in = sizeof(ctx), .repeat = 1);
    const int fd = egress ? program_->egressProgramFd() : program_->ingressProgramFd();
    const int err = bpf_prog_test_run_opts(fd, &opts);
    ASSERT_EQ(err, 0) << std::strerror(-err);
    EXPECT_EQ(static_cast<int>(opts.retval), TC_ACT_UNSPEC);

    const bpf::KernelTotals after = program_->readTotals();
    EXPECT_EQ(after.packets[dir] - before.packets[dir], want.segs);
    EXPECT_EQ(after.bytes[dir] - before.bytes[dir], want.bytes);
    EXPECT_EQ(supers(after, dir) - supers(before, dir), want.supers);
    EXPECT_EQ(after.packets[1 - dir], before.packets[1 - dir]);

    events_.clear();
    ring_buffer__consume(rb_.get());
    if (tables_) {
      EXPECT_TRUE(events_.empty());
      FlowSum sum;
      tables_->swapAndCollect(sum);
      EXPECT_EQ(sum.entries, 1u);
      EXPECT_EQ(sum.direction, dir);
      EXPECT_EQ(sum.packets, want.segs);
      EXPECT_EQ(sum.bytes, want.bytes);
      return;
    }
    ASSERT_EQ(events_.size(), 1u);
    const ayaflow_packet_event& ev = events_[0];
    EXPECT_EQ(ev.abi_version, AYAFLOW_ABI_VERSION);
    EXPECT_EQ(ev.direction, dir);
    EXPECT_EQ(ev.segs, want.segs);
    EXPECT_EQ(ev.pkt_len, want.bytes);
  }

  std::unique_ptr<bpf::BpfProgram> program_;
  std::unique_ptr<bpf::FlowTables> tables_;
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb_{nullptr, ring_buffer__free};
  std::vector<ayaflow_packet_event> events_;
};

TEST_P(BpfGsoTest, OrdinarySkbIsOnePacket) {
  // gso_segs 0 (an ordinary skb) and 1 both count once, with the IP length.
  const Bytes frame =
      concat(ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2", tcpWithOptions(40000, 80, 3, 100)));
  check(frame, 0, 0, {1, 20 + 32 + 100, 0});
  check(frame, 1, 1448, {1, 20 + 32 + 100, 0});
}

TEST_P(BpfGsoTest, Ipv4TcpWithOptionsCountsEverySegment) {
  // 4 segments of 500 bytes (the last 400): IPv4 with 8 bytes of options, TCP with 12
  // (timestamps): every segment repeats 28 + 32 bytes of headers.
  const Bytes frame = concat(
      ethernet(kEthIp), ipv4(6, "10.0.0.1", "10.0.0.2", tcpWithOptions(40000, 5201, 3, 1900), 2));
  const std::uint64_t super_len = 28 + 32 + 1900;
  check(frame, 4, 500, {4, super_len + 3 * (28 + 32), 1});
  // Wire check: the segments' own IP lengths.
  EXPECT_EQ(super_len + 3 * (28 + 32), 3 * (28 + 32 + 500) + (28 + 32 + 400));
  // GRO-merged on ingress: the same arithmetic.
  check(frame, 4, 500, {4, super_len + 3 * (28 + 32), 1}, false);
}

TEST_P(BpfGsoTest, Ipv4BigTcpWithoutTotalLengthUsesTheSkbLength) {
  // BIG TCP leaves tot_len 0: the IP length is what the skb holds after the Ethernet header.
  Bytes ip = ipv4(6, "10.0.0.1", "10.0.0.2", tcpWithOptions(40000, 5201, 3, 2000));
  ip[2] = ip[3] = 0;
  const Bytes frame = concat(ethernet(kEthIp), ip);
  check(frame, 5, 400, {5, (20 + 32 + 2000) + 4 * (20 + 32), 1});
}

TEST_P(BpfGsoTest, Ipv6TcpWithExtensionHeadersCountsEverySegment) {
  // Hop-by-hop (8) and destination options (16) are repeated in every segment.
  const Bytes frame = concat(
      ethernet(kEthIpv6), ipv6(6, "2001:db8::1", "2001:db8::2",
                               tcpWithOptions(40000, 5201, 3, 2000), {hopByHop(), destOpts16()}));
  const std::uint64_t hdr = 40 + 8 + 16 + 32;
  check(frame, 3, 700, {3, (hdr + 2000) + 2 * hdr, 1});
}

TEST_P(BpfGsoTest, Ipv6BigTcpWithoutPayloadLengthUsesTheSkbLength) {
  Bytes ip = ipv6(6, "2001:db8::1", "2001:db8::2", tcpWithOptions(40000, 5201, 0, 1000));
  ip[4] = ip[5] = 0;
  const Bytes frame = concat(ethernet(kEthIpv6), ip);
  check(frame, 2, 500, {2, (40 + 20 + 1000) + (40 + 20), 1});
}

TEST_P(BpfGsoTest, UdpGsoRepeatsTheUdpHeader) {
  const Bytes frame =
      concat(ethernet(kEthIp), ipv4(17, "10.0.0.1", "10.0.0.2", l4(17, 4433, 443, 3000)));
  check(frame, 3, 1000, {3, (20 + 8 + 3000) + 2 * (20 + 8), 1});
  const Bytes frame6 =
      concat(ethernet(kEthIpv6), ipv6(17, "2001:db8::1", "2001:db8::2", l4(17, 4433, 443, 2400)));
  check(frame6, 2, 1200, {2, (40 + 8 + 2400) + (40 + 8), 1}, false);
}

INSTANTIATE_TEST_SUITE_P(Modes, BpfGsoTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("FlowTable") : std::string("Events");
                         });

}  // namespace
}  // namespace ayaflow::test
