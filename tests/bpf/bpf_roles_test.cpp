// SPDX-License-Identifier: MIT OR Apache-2.0
// Once per node, run by the kernel through BPF_PROG_TEST_RUN (root): with the interface
// roles in the kernel map, a packet counts at the first hook of the node it passes and only
// adds to the elsewhere counters at a later one. The kernel copies ingress_ifindex from the
// __sk_buff passed as ctx_in, so each case states where the packet entered the node; the
// program runs on the loopback device (ifindex 1), whose role each case sets.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/bpf_program.h"
#include "packet_builder.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

constexpr int kHere = 1;  // the device BPF_PROG_TEST_RUN runs on: lo
constexpr std::uint32_t kPodVeth = 1001;
constexpr std::uint32_t kBridge = 1002;
constexpr std::uint32_t kUnattached = 1003;

struct Seen {
  std::uint64_t packets = 0, bytes = 0, elsewhere_packets = 0, elsewhere_bytes = 0;
};

class BpfRolesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    bpf::installLibbpfLogger(false);
    program_ = std::make_unique<bpf::BpfProgram>(bpf::ProgramOptions{});
    frame_ =
        concat(ethernet(0x0800), ipv4(17, "10.244.1.2", "10.244.1.3", l4(17, 40000, 5353, 72)));
  }

  Seen seen(int dir) const {
    Seen s;
    for (const auto& c : program_->readTotals().counters) {
      if (c.direction != dir) continue;
      s.packets += c.packets;
      s.bytes += c.bytes;
      s.elsewhere_packets += c.elsewhere_packets;
      s.elsewhere_bytes += c.elsewhere_bytes;
    }
    return s;
  }

  /// Runs the program once at `egress` (else ingress) on a packet that entered the node
  /// through `ingress_ifindex` (0: sent by the node); true when it counted there.
  bool countsAt(bool egress, std::uint32_t ingress_ifindex) {
    return countsAt(egress, ingress_ifindex, frame_, frame_.size() - 14);
  }
  bool countsAt(bool egress, std::uint32_t ingress_ifindex, const Bytes& frame,
                std::uint64_t ip_len) {
    const int dir = egress ? AYAFLOW_DIR_EGRESS : AYAFLOW_DIR_INGRESS;
    const Seen before = seen(dir);
    __sk_buff ctx{};
    ctx.ingress_ifindex = ingress_ifindex;
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
                .data_size_in = static_cast<__u32>(frame.size()), .ctx_in = &ctx,
                .ctx_size_in = sizeof(ctx), .repeat = 1);
    const int fd = egress ? program_->egressProgramFd() : program_->ingressProgramFd();
    const int err = bpf_prog_test_run_opts(fd, &opts);
    EXPECT_EQ(err, 0) << std::strerror(-err);
    EXPECT_EQ(static_cast<int>(opts.retval), TC_ACT_UNSPEC);
    const Seen after = seen(dir);
    const std::uint64_t counted = after.packets - before.packets;
    const std::uint64_t elsewhere = after.elsewhere_packets - before.elsewhere_packets;
    EXPECT_EQ(counted + elsewhere, 1u) << "every packet shows once at the hook";
    EXPECT_EQ(after.bytes - before.bytes, counted * ip_len);
    EXPECT_EQ(after.elsewhere_bytes - before.elsewhere_bytes, elsewhere * ip_len);
    return counted == 1;
  }

  std::unique_ptr<bpf::BpfProgram> program_;
  Bytes frame_;
};

TEST_F(BpfRolesTest, WithoutRolesEveryHookCounts) {
  EXPECT_TRUE(countsAt(false, kHere));
  EXPECT_TRUE(countsAt(true, 0));
  EXPECT_TRUE(countsAt(true, kPodVeth));
}

TEST_F(BpfRolesTest, IngressOfACountingInterfaceCounts) {
  program_->setRoles(
      {{kHere, AYAFLOW_ROLE_COUNT}, {static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT}});
  EXPECT_TRUE(countsAt(false, kHere));
}

TEST_F(BpfRolesTest, EgressCountsOnlyWhatDidNotEnterThroughARole) {
  program_->setRoles({{kHere, AYAFLOW_ROLE_COUNT},
                      {static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT},
                      {static_cast<int>(kBridge), AYAFLOW_ROLE_REENTRY}});
  EXPECT_TRUE(countsAt(true, 0)) << "sent by the node itself";
  EXPECT_FALSE(countsAt(true, kPodVeth)) << "counted where it left its pod";
  EXPECT_FALSE(countsAt(true, kBridge)) << "re-delivered by a bridge with an attached port";
  EXPECT_TRUE(countsAt(true, kUnattached)) << "entered through an interface not attached";
}

TEST_F(BpfRolesTest, APacketANodeSocketSendsIntoATunnelCountsAtTheUplink) {
  // A VXLAN device clears the ingress interface of what it encapsulates: at the uplink's
  // egress a tunnelled packet has ingress_ifindex 0. With a local socket (BPF_PROG_TEST_RUN
  // always gives the skb one) the node sent it, so it counts there even when pods' packets
  // forwarded into the tunnel do not (key 0). Those, without a socket, are checked on a real
  // VXLAN device by the node-mode end-to-end tests.
  const Bytes inner =
      concat(ethernet(0x0800), ipv4(17, "10.244.1.2", "10.244.2.2", l4(17, 40000, 5353, 72)));
  const Bytes outer = concat(ethernet(0x0800), ipv4(17, "192.168.50.1", "192.168.50.2",
                                                    udp(50000, 8472, vxlan(1, inner))));
  program_->setRoles({{kHere, AYAFLOW_ROLE_COUNT},
                      {static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT},
                      {0, AYAFLOW_ROLE_REENTRY}});
  EXPECT_TRUE(countsAt(true, 0, outer, inner.size() - 14));
  EXPECT_TRUE(countsAt(true, 0));
}

TEST_F(BpfRolesTest, AnObservedInterfaceCountsNothing) {
  program_->setRoles(
      {{kHere, AYAFLOW_ROLE_OBSERVE}, {static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT}});
  EXPECT_FALSE(countsAt(false, kHere));
  EXPECT_FALSE(countsAt(true, 0));
}

TEST_F(BpfRolesTest, RolesAreReplacedAsAWhole) {
  program_->setRoles({{static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT}});
  EXPECT_FALSE(countsAt(true, kPodVeth));
  program_->setRoles({{static_cast<int>(kBridge), AYAFLOW_ROLE_REENTRY}});  // the veth is gone
  EXPECT_TRUE(countsAt(true, kPodVeth));
  EXPECT_FALSE(countsAt(true, kBridge));
  program_->setRoles({});
  EXPECT_TRUE(countsAt(true, kBridge));
}

TEST_F(BpfRolesTest, RetiredInterfacesKeepTheirCountsInOneSeries) {
  EXPECT_TRUE(countsAt(false, kHere));
  EXPECT_TRUE(countsAt(true, 0));
  const bpf::KernelTotals before = program_->readTotals();
  // lo "is gone": its keys fold into the retired counters, the totals stay.
  EXPECT_EQ(program_->retireInterfaces({}), 2u);
  const bpf::KernelTotals after = program_->readTotals();
  EXPECT_EQ(after.totalPackets(), before.totalPackets());
  EXPECT_EQ(after.totalBytes(), before.totalBytes());
  std::uint64_t retired = 0;
  for (const auto& c : after.counters) {
    EXPECT_NE(c.ifindex, static_cast<std::uint32_t>(kHere));
    if (c.ifindex == bpf::kRetiredIfindex) retired += c.packets;
  }
  EXPECT_EQ(retired, 2u);
  // A present interface is kept; a second retirement adds to the same series.
  EXPECT_TRUE(countsAt(false, kHere));
  EXPECT_EQ(program_->retireInterfaces({static_cast<std::uint32_t>(kHere)}), 0u);
  EXPECT_EQ(program_->retireInterfaces({}), 1u);
  EXPECT_EQ(program_->readTotals().totalPackets(), 3u);
}

/// The counters readTotals() reports for ifindex (one per key: never two for the same one).
std::vector<bpf::KernelCounter> countersOf(const bpf::KernelTotals& t, std::uint32_t ifindex) {
  std::vector<bpf::KernelCounter> out;
  for (const auto& c : t.counters) {
    if (c.ifindex == ifindex) out.push_back(c);
  }
  return out;
}

TEST_F(BpfRolesTest, AnInterfaceCountedInTheHashThenInItsSlotShowsOneSeries) {
  // No role yet: counted in the `stats` hash. With a role the interface gets a stats slot;
  // both add up under one key, and retiring it folds both and frees the slot, which the
  // next interface starts from zero.
  EXPECT_TRUE(countsAt(false, kHere));
  program_->setRoles({{kHere, AYAFLOW_ROLE_COUNT}});
  EXPECT_TRUE(countsAt(false, kHere));
  EXPECT_TRUE(countsAt(false, kHere));
  auto mine = countersOf(program_->readTotals(), kHere);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].direction, AYAFLOW_DIR_INGRESS);
  EXPECT_EQ(mine[0].protocol, 17);
  EXPECT_EQ(mine[0].addr_type, 4);
  EXPECT_EQ(mine[0].packets, 3u);
  EXPECT_EQ(mine[0].bytes, 3u * (frame_.size() - 14));

  EXPECT_EQ(program_->retireInterfaces({}), 2u) << "one key in the hash, one in the slot";
  program_->setRoles({{static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT}});  // takes the slot
  const bpf::KernelTotals after = program_->readTotals();
  EXPECT_EQ(after.totalPackets(), 3u);
  EXPECT_TRUE(countersOf(after, kHere).empty());
  EXPECT_TRUE(countersOf(after, kPodVeth).empty()) << "a reused slot starts from zero";
  program_->setRoles(
      {{static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT}, {kHere, AYAFLOW_ROLE_COUNT}});
  EXPECT_TRUE(countsAt(false, kHere));
  mine = countersOf(program_->readTotals(), kHere);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].packets, 1u);
  EXPECT_EQ(program_->readTotals().totalPackets(), 4u);
}

TEST_F(BpfRolesTest, InterfacesBeyondTheSlotsCountInTheHash) {
  std::map<int, std::uint8_t> roles;
  for (int i = 0; i < AYAFLOW_STATS_SLOTS; ++i) roles[5000 + i] = AYAFLOW_ROLE_COUNT;
  program_->setRoles(roles);
  roles[kHere] = AYAFLOW_ROLE_COUNT;  // every slot is taken
  program_->setRoles(roles);
  EXPECT_TRUE(countsAt(false, kHere));
  EXPECT_FALSE(countsAt(true, kHere)) << "its role still holds: what entered here is counted";
  const auto mine = countersOf(program_->readTotals(), kHere);
  ASSERT_EQ(mine.size(), 2u);
  EXPECT_EQ(program_->readTotals().totalPackets(), 1u);
  // Freed slots go to the interfaces without one at the next setRoles().
  EXPECT_EQ(program_->retireInterfaces({static_cast<std::uint32_t>(kHere)}), 0u);
  program_->setRoles({{kHere, AYAFLOW_ROLE_COUNT}});
  EXPECT_TRUE(countsAt(false, kHere));
  EXPECT_EQ(program_->readTotals().totalPackets(), 2u);
  EXPECT_EQ(countersOf(program_->readTotals(), kHere).size(), 2u);
}

}  // namespace
}  // namespace ayaflow::test
