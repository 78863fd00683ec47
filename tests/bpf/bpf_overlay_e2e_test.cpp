// SPDX-License-Identifier: MIT OR Apache-2.0
// Decapsulation on a real uplink (root): two VXLAN endpoints, one in the root namespace and one
// in a test namespace, over a veth pair (the "uplink"), as flannel or Calico connect two
// nodes. The program is attached to the root end of the veth, where the kernel's VXLAN
// packets pass. Its events and totals must be the pods' packets exactly as an AF_PACKET
// capture on the VXLAN device (the pods' side of the tunnel) sees them: same tuples, same
// packets, same IP bytes, each flagged AYAFLOW_F_TUNNEL; ordinary UDP on the same veth is
// counted as before, unflagged.
#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/bpf/tc_attachment.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

constexpr int kLink = 71;  // VethPair number: 10.213.71.0/24 underlay
const std::string kOverlayNet = "10.215.71.";

/// A VXLAN device at each end of `link` (VNI 42, port 4789), overlay addresses 10.215.71.1
/// (root namespace) and .2, with permanent neighbour entries so no ARP crosses the tunnel.
/// The root-namespace device is removed in the destructor; the other goes with the namespace.
class VxlanOverLink {
 public:
  explicit VxlanOverLink(const VethPair& link) : link_(link) {
    name_ = "ayfv" + std::to_string(getpid() % 100000) + "x" + std::to_string(kLink);
    try {
      sh("ip link add " + name_ + " address 02:aa:00:00:47:01 type vxlan id 42" + " local " +
         link.hostV4() + " remote " + link.peerV4() + " dstport 4789 dev " + link.host());
      sh("ip addr add " + local() + "/24 dev " + name_);
      sh("ip link set " + name_ + " up");
      sh("ip neigh replace " + remote() + " lladdr 02:aa:00:00:47:02 nud permanent dev " + name_);
      const std::string in_ns = "ip -n " + link.ns() + " ";
      sh(in_ns + "link add vx0 address 02:aa:00:00:47:02 type vxlan id 42" + " local " +
         link.peerV4() + " remote " + link.hostV4() + " dstport 4789 dev " + link.peer());
      sh(in_ns + "addr add " + remote() + "/24 dev vx0");
      sh(in_ns + "link set vx0 up");
      sh(in_ns + "neigh replace " + local() + " lladdr 02:aa:00:00:47:01 nud permanent dev vx0");
    } catch (...) {
      shOutput("ip link del " + name_ + " 2>/dev/null");
      throw;
    }
  }
  ~VxlanOverLink() { shOutput("ip link del " + name_ + " 2>/dev/null"); }
  VxlanOverLink(const VxlanOverLink&) = delete;
  VxlanOverLink& operator=(const VxlanOverLink&) = delete;

  const std::string& name() const { return name_; }
  static std::string local() { return kOverlayNet + "1"; }
  static std::string remote() { return kOverlayNet + "2"; }

 private:
  const VethPair& link_;
  std::string name_;
};

/// Direction, addresses, ports and protocol of a packet, as text for readable failures.
using FlowKey = std::tuple<int, std::string, std::string, int, int, int>;
struct Sum {
  std::uint64_t packets = 0, bytes = 0;
  bool operator==(const Sum& o) const { return packets == o.packets && bytes == o.bytes; }
};
void PrintTo(const Sum& s, std::ostream* os) {
  *os << s.packets << " packets, " << s.bytes << " bytes";
}

std::string v4Text(const std::uint8_t* a) {
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, a, buf, sizeof(buf));
  return buf;
}

/// Ground truth: every IPv4 TCP/UDP frame on `ifname` (root namespace), both ways, by flow,
/// with its IP length. Reads until stopped.
class DeviceCapture {
 public:
  explicit DeviceCapture(const std::string& ifname) {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0) throw std::runtime_error(std::string("AF_PACKET: ") + std::strerror(errno));
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
      close(fd_);
      throw std::runtime_error(std::string("bind AF_PACKET: ") + std::strerror(errno));
    }
  }
  ~DeviceCapture() { close(fd_); }
  DeviceCapture(const DeviceCapture&) = delete;
  DeviceCapture& operator=(const DeviceCapture&) = delete;

  /// Reads frames until `packets` TCP/UDP packets were seen in total, or 5 s pass.
  std::map<FlowKey, Sum> readUntil(std::uint64_t packets) {
    std::array<std::uint8_t, 65536> buf{};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (seen_ < packets && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) != 1) continue;
      sockaddr_ll from{};
      socklen_t len = sizeof(from);
      const ssize_t n =
          recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 14 + 20 || buf[12] != 0x08 || buf[13] != 0x00) continue;
      const std::uint8_t* ip = buf.data() + 14;
      const int proto = ip[9];
      if (proto != 6 && proto != 17) continue;
      const std::size_t ihl = (ip[0] & 0x0f) * 4u;
      const int sport = (ip[ihl] << 8) | ip[ihl + 1];
      const int dport = (ip[ihl + 2] << 8) | ip[ihl + 3];
      const int dir =
          from.sll_pkttype == PACKET_OUTGOING ? AYAFLOW_DIR_EGRESS : AYAFLOW_DIR_INGRESS;
      Sum& s = counts_[{dir, v4Text(ip + 12), v4Text(ip + 16), sport, dport, proto}];
      s.packets += 1;
      s.bytes += (ip[2] << 8) | ip[3];
      seen_ += 1;
    }
    return counts_;
  }

 private:
  int fd_ = -1;
  std::uint64_t seen_ = 0;
  std::map<FlowKey, Sum> counts_;
};

TEST(BpfOverlayE2e, VxlanOnARealUplinkCountsThePodsPacketsExactly) {
  AYAFLOW_REQUIRE_ROOT();
  bpf::installLibbpfLogger(false);
  VethPair link(kLink);
  VxlanOverLink vxlan(link);

  bpf::ProgramOptions options;  // per-packet events, decapsulation on (the default)
  ASSERT_TRUE(options.decapsulate);
  bpf::BpfProgram program(options);
  std::vector<ayaflow_packet_event> events;
  auto on_event = [](void* ctx, void* data, size_t size) {
    EXPECT_EQ(size, sizeof(ayaflow_packet_event));
    ayaflow_packet_event ev;
    std::memcpy(&ev, data, sizeof(ev));
    static_cast<std::vector<ayaflow_packet_event>*>(ctx)->push_back(ev);
    return 0;
  };
  std::unique_ptr<ring_buffer, void (*)(ring_buffer*)> rb(
      ring_buffer__new(program.eventsMapFd(), on_event, &events, nullptr), ring_buffer__free);
  ASSERT_TRUE(rb);
  bpf::TcAttachment attachment(link.host(), program.ingressProgramFd(), program.egressProgramFd(),
                               bpf::HookMode::kAuto);
  DeviceCapture truth(vxlan.name());

  // The "pods": 20 datagrams of 100 bytes out through the tunnel, 10 of 1000 back.
  int remote_fd = -1;
  link.inNamespace([&] { remote_fd = udpSocket(VxlanOverLink::remote(), 7000); });
  const int local_fd = udpSocket(VxlanOverLink::local(), 6000);
  for (int i = 0; i < 20; ++i) udpSend(local_fd, VxlanOverLink::remote(), 7000, 100);
  udpReceive(remote_fd, 20);
  for (int i = 0; i < 10; ++i) udpSend(remote_fd, VxlanOverLink::local(), 6000, 1000);
  udpReceive(local_fd, 10);
  close(local_fd);
  close(remote_fd);
  // Ordinary UDP on the uplink itself: 3 datagrams each way, not tunnelled.
  udpExchange(link, false, 6001, 7001, 3, 50, 3, 60);

  const std::map<FlowKey, Sum> seen = truth.readUntil(30);
  std::map<FlowKey, Sum> tunnelled, plain;
  ring_buffer__consume(rb.get());
  for (const auto& ev : events) {
    ASSERT_EQ(ev.tuple.addr_type, 4);
    const FlowKey key{ev.direction,
                      v4Text(ev.tuple.src_addr + 12),
                      v4Text(ev.tuple.dst_addr + 12),
                      ev.tuple.src_port,
                      ev.tuple.dst_port,
                      ev.tuple.protocol};
    Sum& s = (ev.flags & AYAFLOW_F_TUNNEL) ? tunnelled[key] : plain[key];
    s.packets += ev.segs;
    s.bytes += ev.pkt_len;
    EXPECT_EQ(ev.flags & ~AYAFLOW_F_TUNNEL, 0);
  }

  // What the capture on the VXLAN device saw, and what was sent.
  const FlowKey out{
      AYAFLOW_DIR_EGRESS, VxlanOverLink::local(), VxlanOverLink::remote(), 6000, 7000, 17};
  const FlowKey back{
      AYAFLOW_DIR_INGRESS, VxlanOverLink::remote(), VxlanOverLink::local(), 7000, 6000, 17};
  const std::map<FlowKey, Sum> sent = {{out, {20, 20 * (20 + 8 + 100)}},
                                       {back, {10, 10 * (20 + 8 + 1000)}}};
  EXPECT_EQ(seen, sent);
  EXPECT_EQ(tunnelled, seen);

  // The underlay's own UDP, unflagged; nothing else (no outer 4789 packet).
  const std::map<FlowKey, Sum> underlay = {
      {{AYAFLOW_DIR_EGRESS, link.hostV4(), link.peerV4(), 6001, 7001, 17}, {3, 3 * (28 + 50)}},
      {{AYAFLOW_DIR_INGRESS, link.peerV4(), link.hostV4(), 7001, 6001, 17}, {3, 3 * (28 + 60)}}};
  EXPECT_EQ(plain, underlay);

  // The kernel's totals for the uplink: exactly the two sums.
  const bpf::KernelTotals totals = program.readTotals();
  EXPECT_EQ(totals.packets[AYAFLOW_DIR_EGRESS], 20u + 3u);
  EXPECT_EQ(totals.bytes[AYAFLOW_DIR_EGRESS], 20u * 128u + 3u * 78u);
  EXPECT_EQ(totals.packets[AYAFLOW_DIR_INGRESS], 10u + 3u);
  EXPECT_EQ(totals.bytes[AYAFLOW_DIR_INGRESS], 10u * 1028u + 3u * 88u);
  EXPECT_EQ(totals.totalLost(), 0u);
}

}  // namespace
}  // namespace ayaflow::test
