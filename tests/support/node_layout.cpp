// SPDX-License-Identifier: MIT OR Apache-2.0
#include "node_layout.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <tuple>

namespace ayaflow::test {

namespace {

/// MAC addresses are fixed by role, so every neighbour entry can be static:
/// 02:a7:0<node>:00:<kind>:<index>.
std::string mac(int node, int kind, int index) {
  char text[18];
  std::snprintf(text, sizeof text, "02:a7:%02x:00:%02x:%02x", node, kind, index);
  return text;
}
std::string bridgeMac(int node) { return mac(node, 0, 1); }
std::string vxlanMac(int node) { return mac(node, 1, 0); }
std::string uplinkMac(int node) { return mac(node, 2, 0); }

std::string podV4(int node, int index) {
  return "10.244." + std::to_string(node) + "." + std::to_string(index);
}
std::string podV6(int node, int index) {
  return "fd00:244:" + std::to_string(node) + "::" + std::to_string(index);
}
/// The other node's VXLAN gateway for its IPv6 pod CIDR (an address only in a static
/// neighbour entry: flannel.1 carries no IPv6 address, see the header).
std::string vxlanGatewayV6(int node) { return "fd00:244:" + std::to_string(node) + "::fe"; }

/// Writes a sysctl (path under /proc/sys) of namespace `ns`: /proc/sys/net shows the
/// namespace of the thread that opens it.
void sysctl(const std::string& ns, const std::string& path, const std::string& value) {
  inNetns(ns, [&] {
    std::ofstream out("/proc/sys/" + path);
    out << value;
    out.close();
    if (!out) throw std::runtime_error("sysctl " + path + "=" + value + " in " + ns);
  });
}

}  // namespace

NodeLayout::NodeLayout() {
  id_ = std::to_string(getpid() % 100000);
  node1_ = "ayn" + id_ + "n1";
  node2_ = "ayn" + id_ + "n2";
  try {
    for (const std::string& ns : {node1_, node2_}) {
      sh("ip netns add " + ns);
      sh("ip -n " + ns + " link set lo up");
      sysctl(ns, "net/ipv4/ip_forward", "1");
      sysctl(ns, "net/ipv6/conf/all/forwarding", "1");
      sysctl(ns, "net/ipv4/conf/all/rp_filter", "0");
      sysctl(ns, "net/ipv4/conf/default/rp_filter", "0");
    }
    // The uplink: one veth pair between the nodes, `eth0` on both sides.
    sh("ip -n " + node1_ + " link add eth0 address " + uplinkMac(1) +
       " type veth peer name eth0 address " + uplinkMac(2) + " netns " + node2_);
    for (int n : {1, 2}) {
      const int other = 3 - n;
      const std::string ipn = "ip -n " + node(n) + " ";
      sh(ipn + "addr add " + nodeV4(n) + "/24 dev eth0");
      sh(ipn + "-6 addr add " + nodeV6(n) + "/64 dev eth0 nodad");
      sh(ipn + "link set eth0 up");
      sh(ipn + "neigh replace " + nodeV4(other) + " lladdr " + uplinkMac(other) +
         " dev eth0 nud permanent");
      sh(ipn + "-6 neigh replace " + nodeV6(other) + " lladdr " + uplinkMac(other) +
         " dev eth0 nud permanent");
      sh(ipn + "route add default via " + nodeV4(other));
      sh(ipn + "-6 route add default via " + nodeV6(other));
      buildNode(n);
    }
    addPod(1, "a");
    addPod(1, "b");
    addPod(2, "c");
  } catch (...) {
    cleanup();
    throw;
  }
}

void NodeLayout::buildNode(int n) {
  const int other = 3 - n;
  const std::string ns = node(n);
  const std::string ipn = "ip -n " + ns + " ";
  const std::string cidr4 = "10.244." + std::to_string(n) + ".";
  const std::string cidr6 = "fd00:244:" + std::to_string(n) + "::";
  // The pods' bridge, their gateway (as the bridge and Flannel's cni0 are).
  sh(ipn + "link add cni0 address " + bridgeMac(n) +
     " type bridge forward_delay 0 stp_state 0 mcast_snooping 0");
  sh(ipn + "addr add " + cidr4 + "1/24 dev cni0");
  sh(ipn + "-6 addr add " + cidr6 + "1/64 dev cni0 nodad");
  sh(ipn + "link set cni0 up");
  // The overlay, as Flannel's VXLAN backend makes it: VNI 1, UDP 8472, over the uplink.
  sh(ipn + "link add flannel.1 address " + vxlanMac(n) + " mtu 1450 type vxlan id 1 local " +
     nodeV4(n) + " remote " + nodeV4(other) + " dev eth0 dstport 8472 nolearning");
  // No IPv6 address, link-local included, and no router role on it: nothing of its own
  // (MLD reports, router solicitations) is ever sent through the tunnel.
  sh(ipn + "link set flannel.1 addrgenmode none");
  sysctl(ns, "net/ipv6/conf/flannel.1/forwarding", "0");
  sh(ipn + "addr add 10.244." + std::to_string(n) + ".0/32 dev flannel.1");
  sh(ipn + "link set flannel.1 up");
  const std::string other4 = "10.244." + std::to_string(other) + ".";
  const std::string other6 = "fd00:244:" + std::to_string(other) + "::";
  sh(ipn + "route add " + other4 + "0/24 via " + other4 + "0 dev flannel.1 onlink");
  sh(ipn + "neigh replace " + other4 + "0 lladdr " + vxlanMac(other) +
     " dev flannel.1 nud permanent");
  sh(ipn + "-6 route add " + other6 + "/64 via " + vxlanGatewayV6(other) + " dev flannel.1 onlink");
  sh(ipn + "-6 neigh replace " + vxlanGatewayV6(other) + " lladdr " + vxlanMac(other) +
     " dev flannel.1 nud permanent");
}

NodeLayout::~NodeLayout() { cleanup(); }

void NodeLayout::cleanup() {
  for (const auto& p : pods_) shOutput("ip netns del " + p->ns + " 2>/dev/null");
  pods_.clear();
  // Deleting a node's namespace deletes its devices (bridge, VXLAN, uplink end, veth ends).
  for (const std::string& ns : {node1_, node2_}) {
    if (!ns.empty()) shOutput("ip netns del " + ns + " 2>/dev/null");
  }
}

const Pod& NodeLayout::pod(const std::string& name) const {
  for (const auto& p : pods_) {
    if (p->name == name) return *p;
  }
  throw std::runtime_error("no pod " + name);
}

const Pod& NodeLayout::addPod(int n, const std::string& name) {
  auto p = std::make_unique<Pod>();
  p->name = name;
  p->node = n;
  int index = 2;
  for (const auto& q : pods_) {
    if (q->node == n) index = std::max(index, q->index + 1);
  }
  p->index = index;
  p->ns = "ayp" + id_ + name;
  p->veth = "veth" + name + id_;  // a CNI-like name, <= 15 characters
  p->mac = mac(n, 3, index);
  p->v4 = podV4(n, index);
  p->v6 = podV6(n, index);
  const std::string node_ns = node(n);
  const std::string ipn = "ip -n " + node_ns + " ";
  const std::string ipp = "ip -n " + p->ns + " ";
  sh("ip netns add " + p->ns);
  try {
    sh(ipp + "link set lo up");
    sh(ipn + "link add " + p->veth + " mtu 1450 type veth peer name eth0 address " + p->mac +
       " mtu 1450 netns " + p->ns);
    sh(ipn + "link set " + p->veth + " master cni0");
    sh(ipn + "link set " + p->veth + " up");
    sh("bridge -n " + node_ns + " fdb add " + p->mac + " dev " + p->veth + " master static");
    sh(ipp + "addr add " + p->v4 + "/24 dev eth0");
    sh(ipp + "-6 addr add " + p->v6 + "/64 dev eth0 nodad");
    sh(ipp + "link set eth0 up");
    const std::string gw4 = podV4(n, 1), gw6 = podV6(n, 1);
    sh(ipp + "neigh replace " + gw4 + " lladdr " + bridgeMac(n) + " dev eth0 nud permanent");
    sh(ipp + "-6 neigh replace " + gw6 + " lladdr " + bridgeMac(n) + " dev eth0 nud permanent");
    sh(ipp + "route add default via " + gw4);
    sh(ipp + "-6 route add default via " + gw6);
    sh(ipn + "neigh replace " + p->v4 + " lladdr " + p->mac + " dev cni0 nud permanent");
    sh(ipn + "-6 neigh replace " + p->v6 + " lladdr " + p->mac + " dev cni0 nud permanent");
    // Pods of one node reach each other directly on the bridge.
    for (const auto& q : pods_) {
      if (q->node != n) continue;
      const std::string ipq = "ip -n " + q->ns + " ";
      sh(ipp + "neigh replace " + q->v4 + " lladdr " + q->mac + " dev eth0 nud permanent");
      sh(ipp + "-6 neigh replace " + q->v6 + " lladdr " + q->mac + " dev eth0 nud permanent");
      sh(ipq + "neigh replace " + p->v4 + " lladdr " + p->mac + " dev eth0 nud permanent");
      sh(ipq + "-6 neigh replace " + p->v6 + " lladdr " + p->mac + " dev eth0 nud permanent");
    }
  } catch (...) {
    shOutput("ip netns del " + p->ns + " 2>/dev/null");
    throw;
  }
  pods_.push_back(std::move(p));
  return *pods_.back();
}

void NodeLayout::removePod(const std::string& name) {
  for (auto it = pods_.begin(); it != pods_.end(); ++it) {
    if ((*it)->name != name) continue;
    const Pod& p = **it;
    for (const auto& q : pods_) {
      if (q.get() == &p || q->node != p.node) continue;
      shOutput("ip -n " + q->ns + " neigh del " + p.v4 + " dev eth0 2>/dev/null");
      shOutput("ip -n " + q->ns + " -6 neigh del " + p.v6 + " dev eth0 2>/dev/null");
    }
    shOutput("ip -n " + node(p.node) + " neigh del " + p.v4 + " dev cni0 2>/dev/null");
    shOutput("ip -n " + node(p.node) + " -6 neigh del " + p.v6 + " dev cni0 2>/dev/null");
    // Deleting the veth removes both ends at once; the namespace alone would go only when
    // nothing holds it any more (a capture socket inside keeps it, and the veth, alive).
    sh("ip -n " + node(p.node) + " link del " + p.veth);
    sh("ip netns del " + p.ns);
    pods_.erase(it);
    return;
  }
  throw std::runtime_error("no pod " + name);
}

namespace {

using Key = LinkCounter::Key;

std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

/// The 5-tuple and IP length of a TCP/UDP packet at `ip` (no IPv6 extension headers);
/// `l4` gets the transport header's offset. False for anything else.
bool ipTuple(const std::uint8_t* ip, std::size_t n, Key& key, std::uint32_t& len, std::size_t& l4) {
  char text[INET6_ADDRSTRLEN];
  if (n >= 20 && ip[0] >> 4 == 4) {
    key.proto = ip[9];
    len = get16(ip + 2);
    inet_ntop(AF_INET, ip + 12, text, sizeof text);
    key.src = text;
    inet_ntop(AF_INET, ip + 16, text, sizeof text);
    key.dst = text;
    l4 = (ip[0] & 0x0fu) * 4u;
  } else if (n >= 40 && ip[0] >> 4 == 6) {
    key.proto = ip[6];
    len = get16(ip + 4) + 40u;
    inet_ntop(AF_INET6, ip + 8, text, sizeof text);
    key.src = text;
    inet_ntop(AF_INET6, ip + 24, text, sizeof text);
    key.dst = text;
    l4 = 40;
  } else {
    return false;
  }
  if (key.proto == 4 || key.proto == 41) return true;  // IP in IP: the caller looks inside
  if ((key.proto != 6 && key.proto != 17) || n < l4 + 8) return false;
  key.sport = get16(ip + l4);
  key.dport = get16(ip + l4 + 2);
  return true;
}

/// The packet a tunnel carries, if `ip` is a tunnel packet: its start and length.
bool tunnelPayload(const std::uint8_t* ip, std::size_t n, const Key& outer, std::size_t l4,
                   std::size_t& inner_at) {
  if (outer.proto == 4 || outer.proto == 41) {
    inner_at = l4;
    return true;
  }
  if (outer.proto != 17) return false;
  const std::size_t udp_payload = l4 + 8;
  if (outer.dport == 4789 || outer.dport == 8472) {
    if (n < udp_payload + 8 + 14) return false;
    inner_at = udp_payload + 8 + 14;  // VXLAN header, then an Ethernet frame
    return true;
  }
  if (outer.dport == 6081 && n >= udp_payload + 8) {
    const std::size_t options = (ip[udp_payload] & 0x3fu) * 4u;
    const std::uint16_t protocol = get16(ip + udp_payload + 2);
    inner_at = udp_payload + 8 + options;
    if (protocol == 0x6558) inner_at += 14;  // an Ethernet frame
    return inner_at < n;
  }
  return false;
}

}  // namespace

InnerFlowCounter::InnerFlowCounter(const std::string& ns, const std::string& ifname) {
  inNetns(ns, [&] {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0) throw std::runtime_error(std::string("AF_PACKET: ") + std::strerror(errno));
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    if (sll.sll_ifindex == 0 || bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
      const int err = errno;
      close(fd_);
      fd_ = -1;
      throw std::runtime_error("bind AF_PACKET to " + ifname + " in " + ns + ": " +
                               std::strerror(err));
    }
    int size = 8 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  });
  thread_ = std::thread([this] { loop(); });
}

InnerFlowCounter::~InnerFlowCounter() {
  stop();
  if (fd_ >= 0) close(fd_);
}

InnerFlowCounter::Seen InnerFlowCounter::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  return seen_;
}

std::uint64_t InnerFlowCounter::packets(
    const std::map<LinkCounter::Key, LinkCounter::Count>& counts, const std::string& src,
    std::uint16_t sport, const std::string& dst, std::uint16_t dport, std::uint8_t proto) {
  const auto it = counts.find(Key{src, dst, sport, dport, proto});
  return it == counts.end() ? 0 : it->second.packets;
}

void InnerFlowCounter::loop() {
  std::array<std::uint8_t, 65536> buf{};
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 50) == 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) return;
      continue;
    }
    sockaddr_ll from{};
    socklen_t from_len = sizeof from;
    const ssize_t got = recvfrom(fd_, buf.data(), buf.size(), MSG_DONTWAIT,
                                 reinterpret_cast<sockaddr*>(&from), &from_len);
    if (got < 14 + 20) continue;
    const auto n = static_cast<std::size_t>(got);
    const std::uint16_t ethertype = get16(buf.data() + 12);
    if (ethertype != ETH_P_IP && ethertype != ETH_P_IPV6) continue;
    const std::uint8_t* ip = buf.data() + 14;
    std::size_t size = n - 14;
    Key key{};
    std::uint32_t len = 0;
    std::size_t l4 = 0, inner_at = 0;
    if (!ipTuple(ip, size, key, len, l4)) continue;
    bool tunnelled = false;
    if (tunnelPayload(ip, size, key, l4, inner_at)) {
      tunnelled = true;
      ip += inner_at;
      size -= inner_at;
      key = Key{};
      if (!ipTuple(ip, size, key, len, l4) || key.proto == 4 || key.proto == 41) continue;
    } else if (key.proto == 4 || key.proto == 41) {
      continue;
    }
    const bool out = from.sll_pkttype == PACKET_OUTGOING;
    std::lock_guard<std::mutex> lock(mutex_);
    LinkCounter::Count& c = (out ? seen_.out : seen_.in)[key];
    c.packets += 1;
    c.bytes += len;
    if (tunnelled) ++(out ? seen_.tunnelled_out : seen_.tunnelled_in);
  }
}

namespace {

sockaddr_storage socketAddress(const std::string& addr, std::uint16_t port, socklen_t& len) {
  sockaddr_storage ss{};
  if (addr.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
    len = sizeof *a;
  }
  return ss;
}

int tcpSocket(const Endpoint& at) {
  socklen_t len = 0;
  const sockaddr_storage ss = socketAddress(at.addr, at.port, len);
  const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("tcp socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&ss), len) != 0) {
    const int err = errno;
    close(fd);
    throw std::runtime_error("bind tcp " + at.addr + ":" + std::to_string(at.port) + ": " +
                             std::strerror(err));
  }
  return fd;
}

/// Reads exactly `n` bytes (false on EOF or error first).
bool readExactly(int fd, std::size_t n) {
  std::array<char, 4096> buf{};
  while (n > 0) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return false;
    const ssize_t r = recv(fd, buf.data(), std::min(n, buf.size()), 0);
    if (r <= 0) return false;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool waitEof(int fd) {
  std::array<char, 256> buf{};
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return false;
    const ssize_t r = recv(fd, buf.data(), buf.size(), 0);
    if (r == 0) return true;
    if (r < 0) return false;
  }
}

}  // namespace

void udpFlow(const Endpoint& from, const Endpoint& to, int count, std::size_t payload) {
  int receiver = -1, sender = -1;
  inNetns(to.ns, [&] { receiver = udpSocket(to.addr, to.port); });
  try {
    inNetns(from.ns, [&] { sender = udpSocket(from.addr, from.port); });
    for (int i = 0; i < count; ++i) udpSend(sender, to.addr, to.port, payload);
    udpReceive(receiver, count);
  } catch (...) {
    if (sender >= 0) close(sender);
    close(receiver);
    throw;
  }
  close(sender);
  close(receiver);
}

void tcpExchanges(const Endpoint& client, const Endpoint& server, int exchanges,
                  std::size_t request, std::size_t response) {
  int listener = -1, fd = -1;
  inNetns(server.ns, [&] { listener = tcpSocket(server); });
  if (listen(listener, 4) != 0) {
    close(listener);
    throw std::runtime_error("listen");
  }
  std::string server_error;
  std::thread serve([&] {
    pollfd p{listener, POLLIN, 0};
    const int c = poll(&p, 1, 5000) == 1 ? accept(listener, nullptr, nullptr) : -1;
    if (c < 0) {
      server_error = "no connection";
      return;
    }
    const std::string reply(response, 'r');
    for (int i = 0; i < exchanges; ++i) {
      if (!readExactly(c, request) ||
          send(c, reply.data(), reply.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(response)) {
        server_error = "exchange " + std::to_string(i) + " failed";
        break;
      }
    }
    if (server_error.empty() && !waitEof(c)) server_error = "no FIN from the client";
    close(c);  // answers the client's FIN with ours
  });
  std::string error;
  try {
    inNetns(client.ns, [&] { fd = tcpSocket(client); });
    socklen_t len = 0;
    const sockaddr_storage to = socketAddress(server.addr, server.port, len);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&to), len) != 0) {
      throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
    const std::string ask(request, 'q');
    for (int i = 0; i < exchanges; ++i) {
      if (send(fd, ask.data(), ask.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request) ||
          !readExactly(fd, response)) {
        throw std::runtime_error("exchange " + std::to_string(i) + " failed");
      }
    }
    shutdown(fd, SHUT_WR);
    if (!waitEof(fd)) throw std::runtime_error("no FIN from the server");
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (fd >= 0) {
    if (!error.empty()) shutdown(fd, SHUT_RDWR);
    close(fd);
  }
  serve.join();
  close(listener);
  if (!error.empty() || !server_error.empty()) {
    throw std::runtime_error("tcp " + client.addr + " -> " + server.addr + ": " + error + " " +
                             server_error);
  }
}

void sendTunnelled(const std::string& ns, const std::string& outer_dst, Tunnel tunnel,
                   const std::vector<std::uint8_t>& inner, int count) {
  const bool inner_v6 = !inner.empty() && inner[0] >> 4 == 6;
  const bool outer_v6 = outer_dst.find(':') != std::string::npos;
  std::vector<std::uint8_t> data;
  std::uint16_t port = 0;
  int protocol = 0;
  if (tunnel == Tunnel::kIpInIp) {
    data = inner;
    protocol = inner_v6 ? 41 : 4;
  } else {
    // The tunnel header (VNI 42), then an Ethernet header, then the inner packet.
    data.assign(8, 0);
    if (tunnel == Tunnel::kVxlan4789) {
      port = 4789;
      data[0] = 0x08;  // VNI present
    } else {
      port = 6081;
      data[2] = 0x65;  // protocol type: transparent Ethernet bridging
      data[3] = 0x58;
    }
    data[6] = 42;
    const std::array<std::uint8_t, 14> ethernet{0x02, 0xa7, 0x01, 0x00, 0x01, 0x00, 0x02,
                                                0xa7, 0x02, 0x00, 0x01, 0x00, 0x08, 0x00};
    data.insert(data.end(), ethernet.begin(), ethernet.end());
    if (inner_v6) {
      data[data.size() - 2] = 0x86;
      data[data.size() - 1] = 0xdd;
    }
    data.insert(data.end(), inner.begin(), inner.end());
  }
  int fd = -1;
  inNetns(ns, [&] {
    fd = tunnel == Tunnel::kIpInIp
             ? socket(outer_v6 ? AF_INET6 : AF_INET, SOCK_RAW | SOCK_CLOEXEC, protocol)
             : socket(outer_v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  });
  if (fd < 0) throw std::runtime_error(std::string("tunnel socket: ") + std::strerror(errno));
  socklen_t len = 0;
  // A raw socket takes no port (the IPv6 one wants 0 there).
  const sockaddr_storage to = socketAddress(outer_dst, port, len);
  for (int i = 0; i < count; ++i) {
    if (sendto(fd, data.data(), data.size(), 0, reinterpret_cast<const sockaddr*>(&to), len) !=
        static_cast<ssize_t>(data.size())) {
      const int err = errno;
      close(fd);
      throw std::runtime_error("send tunnelled packet to " + outer_dst + ": " + std::strerror(err));
    }
  }
  close(fd);
}

}  // namespace ayaflow::test
