// SPDX-License-Identifier: MIT OR Apache-2.0
#include "wire_counter.h"

#include <arpa/inet.h>
#include <endian.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ayaflow::test {

std::optional<WireFrame> expandWireFrame(const VnetHeader& vnet, const std::uint8_t* ip,
                                         std::size_t captured, bool count_ipv6) {
  WireFrame frame;
  char text[INET6_ADDRSTRLEN];
  std::size_t ip_header = 0;
  std::uint64_t ip_len = 0;
  if (captured >= 20 && ip[0] >> 4 == 4) {
    ip_header = (ip[0] & 0x0fu) * 4u;
    ip_len = static_cast<std::uint64_t>(ip[2] << 8 | ip[3]);
    frame.key.proto = ip[9];
    inet_ntop(AF_INET, ip + 12, text, sizeof(text));
    frame.key.src = text;
    inet_ntop(AF_INET, ip + 16, text, sizeof(text));
    frame.key.dst = text;
  } else if (captured >= 40 && ip[0] >> 4 == 6 && count_ipv6) {
    ip_header = 40;
    ip_len = static_cast<std::uint64_t>(ip[4] << 8 | ip[5]) + 40;
    frame.key.proto = ip[6];
    inet_ntop(AF_INET6, ip + 8, text, sizeof(text));
    frame.key.src = text;
    inet_ntop(AF_INET6, ip + 24, text, sizeof(text));
    frame.key.dst = text;
  } else {
    return std::nullopt;
  }
  const bool tcp = frame.key.proto == IPPROTO_TCP;
  if ((!tcp && frame.key.proto != IPPROTO_UDP) || captured < ip_header + (tcp ? 20 : 8)) {
    return std::nullopt;
  }
  const std::uint8_t* l4 = ip + ip_header;
  frame.key.sport = static_cast<std::uint16_t>(l4[0] << 8 | l4[1]);
  frame.key.dport = static_cast<std::uint16_t>(l4[2] << 8 | l4[3]);

  const unsigned type = vnet.gso_type & ~static_cast<unsigned>(kVnetGsoEcn);
  if (type == kVnetGsoNone) {
    frame.packets = 1;
    frame.bytes = ip_len;
    return frame;
  }
  const bool tcp_gso = type == kVnetGsoTcpV4 || type == kVnetGsoTcpV6;
  if (!(tcp_gso && tcp) && !(type == kVnetGsoUdpL4 && !tcp)) {
    // UFO splits one datagram into IP fragments, which are not segments with their own
    // headers; any other mismatch means the frame is not what its header says.
    throw std::invalid_argument("GSO type " + std::to_string(type) + " on IP protocol " +
                                std::to_string(frame.key.proto) + " cannot be expanded");
  }
  // Every segment repeats the IP and TCP (options included) or UDP header; the payload is cut
  // into gso_size pieces, the last one possibly shorter. Little-endian: packet sockets use
  // the host's byte order, and tests run on little-endian machines.
  const std::uint64_t segment_size = le16toh(vnet.gso_size);
  const std::uint64_t headers = ip_header + (tcp ? (l4[12] >> 4) * 4u : 8u);
  if (segment_size == 0 || ip_len < headers || (ip[0] >> 4 == 4 && ip_len == 0)) {
    throw std::invalid_argument("GSO buffer with segment size " + std::to_string(segment_size) +
                                " and IP length " + std::to_string(ip_len) + " cannot be expanded");
  }
  const std::uint64_t payload = ip_len - headers;
  const std::uint64_t segments =
      std::max<std::uint64_t>(1, (payload + segment_size - 1) / segment_size);
  frame.packets = segments;
  frame.bytes = segments * headers + payload;
  return frame;
}

WireCounter::WireCounter(const std::string& device, const VethPair* link, bool count_ipv6)
    : device_(device), count_ipv6_(count_ipv6) {
  const auto open = [&] {
    // Protocol 0: the socket receives nothing until bind() names the protocol and the device
    // (created with ETH_P_ALL it would queue every device's frames until then).
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
    }
    // Before bind: every frame the socket ever queues carries the header.
    int on = 1;
    if (setsockopt(fd_, SOL_PACKET, PACKET_VNET_HDR, &on, sizeof(on)) != 0) {
      throw std::runtime_error(std::string("PACKET_VNET_HDR: ") + std::strerror(errno));
    }
    // Room for a whole test transfer's buffers even if the reader falls behind; the kernel
    // doubles the figure for its bookkeeping.
    int size = 32 << 20;
    int granted = 0;
    socklen_t len = sizeof(granted);
    if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0 ||
        getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &granted, &len) != 0 || granted < size) {
      throw std::runtime_error("SO_RCVBUFFORCE 32 MiB on the capture socket: " +
                               std::string(std::strerror(errno)));
    }
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(device.c_str()));
    ifindex_ = sll.sll_ifindex;
    if (sll.sll_ifindex == 0 || bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
      throw std::runtime_error("bind AF_PACKET to " + device + ": " + std::strerror(errno));
    }
  };
  try {
    if (link != nullptr) {
      link->inNamespace(open);
    } else {
      open();
    }
  } catch (...) {
    if (fd_ >= 0) close(fd_);
    throw;
  }
  thread_ = std::thread([this] { loop(); });
}

WireCounter::~WireCounter() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
}

LinkCounter::Count WireCounter::total() {
  std::lock_guard<std::mutex> lock(mutex_);
  LinkCounter::Count t;
  for (const auto& [key, c] : result_.counts) {
    t.packets += c.packets;
    t.bytes += c.bytes;
  }
  return t;
}

WireCounter::Result WireCounter::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // Read (and reset) by the kernel: frames it could not queue for this socket, for want of
  // receive buffer or because their buffer had no virtio_net_hdr form.
  tpacket_stats stats{};
  socklen_t len = sizeof(stats);
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &stats, &len) != 0) {
    throw std::runtime_error(std::string("PACKET_STATISTICS: ") + std::strerror(errno));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (error_) throw std::runtime_error("capture on " + device_ + ": " + *error_);
  if (stats.tp_drops != 0) {
    throw std::runtime_error(
        "capture on " + device_ + " dropped " + std::to_string(stats.tp_drops) + " of " +
        std::to_string(stats.tp_packets) + " frames: the ground truth is incomplete");
  }
  return result_;
}

void WireCounter::loop() {
  // Headers are enough: MSG_TRUNC reports the whole length while only these bytes are copied.
  std::array<std::uint8_t, 512> buf{};
  constexpr std::size_t kVnet = sizeof(VnetHeader);
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 50) == 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
      continue;
    }
    sockaddr_ll from{};
    socklen_t from_len = sizeof(from);
    const ssize_t n = recvfrom(fd_, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC,
                               reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < static_cast<ssize_t>(kVnet + ETH_HLEN) || from.sll_ifindex != ifindex_) continue;
    const std::size_t captured = std::min(static_cast<std::size_t>(n), buf.size());
    const std::uint16_t ethertype =
        static_cast<std::uint16_t>(buf[kVnet + 12] << 8 | buf[kVnet + 13]);
    if (ethertype != ETH_P_IP && ethertype != ETH_P_IPV6) continue;
    VnetHeader vnet;
    std::memcpy(&vnet, buf.data(), kVnet);
    std::optional<WireFrame> frame;
    try {
      frame = expandWireFrame(vnet, buf.data() + kVnet + ETH_HLEN, captured - kVnet - ETH_HLEN,
                              count_ipv6_);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = e.what();
      continue;
    }
    if (!frame) continue;
    std::lock_guard<std::mutex> lock(mutex_);
    LinkCounter::Count& c = result_.counts[frame->key];
    c.packets += frame->packets;
    c.bytes += frame->bytes;
    result_.frames += 1;
    result_.largest = std::max(result_.largest, frame->packets);
    if (frame->packets > 1) {
      result_.super_frames[from.sll_pkttype == PACKET_OUTGOING ? 1 : 0] += 1;
    }
  }
}

}  // namespace ayaflow::test
