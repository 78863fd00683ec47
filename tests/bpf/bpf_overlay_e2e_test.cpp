// SPDX-License-Identifier: MIT OR Apache-2.0
// Decapsulation on a real uplink (root): two VXLAN endpoints, one in the root namespace and one
// in a test namespace, over a veth pair (the "uplink"), as flannel or Calico connect two
// nodes. The program is attached to the root end of the veth, where the kernel's VXLAN
// packets pass. Its events and totals must be the pods' packets exactly as an AF_PACKET
// capture on the VXLAN device (the pods' side of the tunnel) sees them: same tuples, same
// packets, same IP bytes, each flagged AYAFLOW_F_TUNNEL; ordinary UDP on the same veth is
// counted as before, unflagged. Bulk TCP through the tunnel reaches the hook as VXLAN GSO
// super-packets, counted as the inner segments the far end of the uplink receives.
#include <arpa/inet.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
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

/// Ground truth: every IPv4 TCP/UDP frame on `ifname`, both ways, by flow, with its IP
/// length. `link` set: the device is in the link's namespace, and it is the far end of the
/// uplink, so its directions are turned round to the near end's, and each frame is a VXLAN
/// packet whose inner packet is what is counted (other frames are left out).
class DeviceCapture {
 public:
  explicit DeviceCapture(const std::string& ifname, const VethPair* link = nullptr)
      : far_end_(link != nullptr) {
    auto open_socket = [&] {
      fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
      if (fd_ < 0) throw std::runtime_error(std::string("AF_PACKET: ") + std::strerror(errno));
      sockaddr_ll sll{};
      sll.sll_family = AF_PACKET;
      sll.sll_protocol = htons(ETH_P_ALL);
      sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
      int size = 8 << 20;
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
      if (bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
        close(fd_);
        throw std::runtime_error(std::string("bind AF_PACKET: ") + std::strerror(errno));
      }
    };
    if (link != nullptr) {
      link->inNamespace(open_socket);
    } else {
      open_socket();
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
      if (n <= 0) continue;
      const bool outgoing = from.sll_pkttype == PACKET_OUTGOING;
      if (far_end_) {
        // Outer Ethernet, IPv4, UDP to 4789, VXLAN: the inner frame follows.
        if (n < 14 + 20 + 8 + 8 || !isIpv4(buf.data())) continue;
        const std::uint8_t* outer = buf.data() + 14;
        const std::size_t ihl = (outer[0] & 0x0f) * 4u;
        if (outer[9] != 17 || ((outer[ihl + 2] << 8) | outer[ihl + 3]) != 4789) continue;
        const std::size_t inner = 14 + ihl + 8 + 8;
        tally(buf.data() + inner, static_cast<std::size_t>(n) - inner,
              outgoing ? AYAFLOW_DIR_INGRESS : AYAFLOW_DIR_EGRESS);
      } else {
        tally(buf.data(), static_cast<std::size_t>(n),
              outgoing ? AYAFLOW_DIR_EGRESS : AYAFLOW_DIR_INGRESS);
      }
    }
    return counts_;
  }

 private:
  static bool isIpv4(const std::uint8_t* frame) { return frame[12] == 0x08 && frame[13] == 0; }

  /// An Ethernet frame of n bytes carrying IPv4 TCP or UDP: counted under `dir`.
  void tally(const std::uint8_t* frame, std::size_t n, int dir) {
    if (n < 14 + 20 + 4 || !isIpv4(frame)) return;
    const std::uint8_t* ip = frame + 14;
    const int proto = ip[9];
    const std::size_t ihl = (ip[0] & 0x0f) * 4u;
    if ((proto != 6 && proto != 17) || n < 14 + ihl + 4) return;
    const int sport = (ip[ihl] << 8) | ip[ihl + 1];
    const int dport = (ip[ihl + 2] << 8) | ip[ihl + 3];
    Sum& s = counts_[{dir, v4Text(ip + 12), v4Text(ip + 16), sport, dport, proto}];
    s.packets += 1;
    s.bytes += (ip[2] << 8) | ip[3];
    seen_ += 1;
  }

  bool far_end_;
  int fd_ = -1;
  std::uint64_t seen_ = 0;
  std::map<FlowKey, Sum> counts_;
};

/// Reads a loaded program's events: the sums of the tunnelled and of the other packets, by
/// flow, as the kernel counted them (segs packets, pkt_len bytes each).
struct EventSums {
  std::map<FlowKey, Sum> tunnelled, plain;
};

EventSums sumEvents(const std::vector<ayaflow_packet_event>& events) {
  EventSums sums;
  for (const auto& ev : events) {
    EXPECT_EQ(ev.tuple.addr_type, 4);
    const FlowKey key{ev.direction,
                      v4Text(ev.tuple.src_addr + 12),
                      v4Text(ev.tuple.dst_addr + 12),
                      ev.tuple.src_port,
                      ev.tuple.dst_port,
                      ev.tuple.protocol};
    Sum& s = (ev.flags & AYAFLOW_F_TUNNEL) ? sums.tunnelled[key] : sums.plain[key];
    s.packets += ev.segs;
    s.bytes += ev.pkt_len;
    EXPECT_EQ(ev.flags & ~AYAFLOW_F_TUNNEL, 0);
  }
  return sums;
}

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
  ring_buffer__consume(rb.get());
  const auto [tunnelled, plain] = sumEvents(events);

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

/// Bulk TCP between the "pods" through the tunnel: the egress hook on the uplink sees VXLAN
/// GSO super-packets (the veth has no TSO, so the kernel segments them in software after the
/// hook), each standing for gso_segs inner segments. The program must count the segments and
/// their inner IP bytes exactly as the far end of the uplink receives them, decapsulated.
TEST(BpfOverlayE2e, TunnelledTcpSuperPacketsCountAsTheirSegments) {
  AYAFLOW_REQUIRE_ROOT();
  bpf::installLibbpfLogger(false);
  VethPair link(kLink);
  VxlanOverLink vxlan(link);

  bpf::BpfProgram program(bpf::ProgramOptions{});
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
  DeviceCapture far_end(link.peer(), &link);

  // 4 MiB from the root namespace's "pod" to the other's, then both ends close.
  int server = -1;
  link.inNamespace([&] {
    server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(5201);
    inet_pton(AF_INET, VxlanOverLink::remote().c_str(), &a.sin_addr);
    ASSERT_EQ(bind(server, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    ASSERT_EQ(listen(server, 1), 0);
  });
  const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(5201);
  inet_pton(AF_INET, VxlanOverLink::remote().c_str(), &to.sin_addr);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 0)
      << std::strerror(errno);
  const int conn = accept(server, nullptr, nullptr);
  ASSERT_GE(conn, 0);
  constexpr std::size_t kBytes = 4 << 20;
  std::thread sender([&] {
    const std::vector<char> chunk(64 * 1024, 'x');
    for (std::size_t sent = 0; sent < kBytes;) {
      const ssize_t n = send(client, chunk.data(), std::min(chunk.size(), kBytes - sent), 0);
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
    shutdown(client, SHUT_WR);
    char c;
    while (recv(client, &c, 1, 0) > 0) {
    }
  });
  std::vector<char> buf(256 * 1024);
  std::size_t received = 0;
  for (ssize_t n; (n = recv(conn, buf.data(), buf.size(), 0)) > 0;) {
    received += static_cast<std::size_t>(n);
  }
  close(conn);
  sender.join();
  close(client);
  close(server);
  EXPECT_EQ(received, kBytes);

  // The far end sees every segment once the last ACK is through: read until it has seen as
  // many as the kernel counted (or 5 s), then compare flow by flow.
  ring_buffer__consume(rb.get());
  const bpf::KernelTotals totals = program.readTotals();
  const std::map<FlowKey, Sum> seen = far_end.readUntil(totals.totalPackets());
  ring_buffer__consume(rb.get());
  const auto [tunnelled, plain] = sumEvents(events);
  EXPECT_TRUE(plain.empty());
  EXPECT_EQ(tunnelled, seen);
  std::uint64_t super_packets = 0;
  for (const auto& ev : events) super_packets += ev.segs > 1 ? 1 : 0;
  // The data went as super-packets (the point of the test), and all of it was counted.
  EXPECT_GT(super_packets, 0u);
  std::uint64_t data_bytes = 0;
  for (const auto& [key, sum] : tunnelled) {
    if (std::get<0>(key) == AYAFLOW_DIR_EGRESS) data_bytes += sum.bytes;
  }
  EXPECT_GT(data_bytes, kBytes);
  std::printf("%llu super-packets among %zu events; %llu packets, %llu inner IP bytes egress\n",
              static_cast<unsigned long long>(super_packets), events.size(),
              static_cast<unsigned long long>(totals.packets[AYAFLOW_DIR_EGRESS]),
              static_cast<unsigned long long>(data_bytes));
}

}  // namespace
}  // namespace ayaflow::test
