// SPDX-License-Identifier: MIT OR Apache-2.0
#include "netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace ayaflow::test {

void sh(const std::string& command) {
  std::string out = shOutput(command + " 2>&1; echo \"rc=$?\"");
  const auto pos = out.rfind("rc=");
  if (pos == std::string::npos || out.compare(pos, 5, "rc=0\n") != 0) {
    throw std::runtime_error("command failed: " + command + ": " + out);
  }
}

std::string shOutput(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) {
    throw std::runtime_error("popen failed: " + command);
  }
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) {
    out.append(buf.data(), n);
  }
  pclose(p);
  return out;
}

void ethtoolSet(const std::string& dev, std::uint32_t command, std::uint32_t value) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ethtool_value request_value{command, value};
  ifreq request{};
  std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", dev.c_str());
  request.ifr_data = reinterpret_cast<char*>(&request_value);
  const int rc = fd < 0 ? -1 : ioctl(fd, SIOCETHTOOL, &request);
  const int err = errno;
  if (fd >= 0) close(fd);
  if (rc != 0) {
    throw std::runtime_error("ethtool command " + std::to_string(command) + " on " + dev + ": " +
                             std::strerror(err));
  }
}

namespace {

/// `ethtool -K dev tso off` without the tool: TCP super-packets are then segmented in
/// software (GSO) before the device's capture tap, in the calling thread's namespace.
void tsoOff(const std::string& dev) { ethtoolSet(dev, ETHTOOL_STSO, 0); }

}  // namespace

VethPair::VethPair(int n) : n_(n) {
  const std::string id = std::to_string(getpid() % 100000) + "x" + std::to_string(n);
  ns_ = "ayf" + id;
  host_ = "ayfh" + id;  // <= 15 characters
  peer_ = "ayfp" + id;
  try {
    sh("ip netns add " + ns_);
    sh("ip link add " + host_ + " type veth peer name " + peer_ + " netns " + ns_);
    sh("ip addr add " + hostV4() + "/24 dev " + host_);
    sh("ip -6 addr add " + hostV6() + "/64 dev " + host_ + " nodad");
    sh("ip link set " + host_ + " up");
    sh("ip -n " + ns_ + " addr add " + peerV4() + "/24 dev " + peer_);
    sh("ip -n " + ns_ + " -6 addr add " + peerV6() + "/64 dev " + peer_ + " nodad");
    sh("ip -n " + ns_ + " link set " + peer_ + " up");
    sh("ip -n " + ns_ + " link set lo up");
    // A veth with TSO hands a TCP super-packet to its peer whole, so the capture would see
    // one frame where a NIC would send (and the agent counts) several: with TSO off, both
    // ends segment in software before their tap, and the link carries wire-sized packets.
    tsoOff(host_);
    inNamespace([&] { tsoOff(peer_); });
  } catch (...) {
    shOutput("ip link del " + host_ + " 2>/dev/null; ip netns del " + ns_ + " 2>/dev/null");
    throw;
  }
}

VethPair::~VethPair() {
  // Deleting the namespace deletes the peer, and with it the host end.
  shOutput("ip link del " + host_ + " 2>/dev/null; ip netns del " + ns_ + " 2>/dev/null");
}

std::string VethPair::hostV4() const { return "10.213." + std::to_string(n_) + ".1"; }
std::string VethPair::peerV4() const { return "10.213." + std::to_string(n_) + ".2"; }
std::string VethPair::hostV6() const { return "fd00:213:" + std::to_string(n_) + "::1"; }
std::string VethPair::peerV6() const { return "fd00:213:" + std::to_string(n_) + "::2"; }
int VethPair::hostIfindex() const { return static_cast<int>(if_nametoindex(host_.c_str())); }

void VethPair::inNamespace(const std::function<void()>& fn) const { inNetns(ns_, fn); }

void inNetns(const std::string& ns, const std::function<void()>& fn) {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      // A name under /run/netns, or a path (a pod's /var/run/netns/cni-..., /proc/PID/ns/net).
      const std::string path = ns.rfind('/', 0) == 0 ? ns : "/run/netns/" + ns;
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        const int err = errno;
        if (fd >= 0) close(fd);
        throw std::runtime_error("setns " + path + ": " + std::strerror(err));
      }
      close(fd);
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  });
  t.join();
  if (error) {
    std::rethrow_exception(error);
  }
}

namespace {

/// The 5-tuple and IP length of a TCP/UDP packet starting at its IP header (IPv6 only
/// with count_ipv6; tests send no IPv6 extension headers). False for anything else.
bool ipTuple(const std::uint8_t* ip, std::size_t n, bool count_ipv6, LinkCounter::Key& key,
             std::uint32_t& len) {
  char text[INET6_ADDRSTRLEN];
  std::size_t l4 = 0;
  if (n >= 20 && ip[0] >> 4 == 4) {
    key.proto = ip[9];
    len = static_cast<std::uint32_t>(ip[2] << 8 | ip[3]);
    inet_ntop(AF_INET, ip + 12, text, sizeof(text));
    key.src = text;
    inet_ntop(AF_INET, ip + 16, text, sizeof(text));
    key.dst = text;
    l4 = (ip[0] & 0x0f) * 4u;
  } else if (n >= 40 && ip[0] >> 4 == 6 && count_ipv6) {
    key.proto = ip[6];
    len = static_cast<std::uint32_t>((ip[4] << 8 | ip[5]) + 40);
    inet_ntop(AF_INET6, ip + 8, text, sizeof(text));
    key.src = text;
    inet_ntop(AF_INET6, ip + 24, text, sizeof(text));
    key.dst = text;
    l4 = 40;
  } else {
    return false;
  }
  if ((key.proto != 6 && key.proto != 17) || n < l4 + 4) return false;
  key.sport = static_cast<std::uint16_t>(ip[l4] << 8 | ip[l4 + 1]);
  key.dport = static_cast<std::uint16_t>(ip[l4 + 2] << 8 | ip[l4 + 3]);
  return true;
}

}  // namespace

LinkCounter::LinkCounter(const VethPair& link, bool count_ipv6) : count_ipv6_(count_ipv6) {
  link.inNamespace([&] {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd_ < 0) {
      throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
    }
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(if_nametoindex(link.peer().c_str()));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
      throw std::runtime_error(std::string("bind AF_PACKET: ") + std::strerror(errno));
    }
    int size = 8 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
  });
  thread_ = std::thread([this] { loop(); });
}

LinkCounter::~LinkCounter() {
  stop();
  if (fd_ >= 0) {
    close(fd_);
  }
}

std::map<LinkCounter::Key, LinkCounter::Count> LinkCounter::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  return counts_;
}

void LinkCounter::loop() {
  std::array<std::uint8_t, 65536> buf{};
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, 50);
    if (r == 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stop_) {
        return;
      }
      continue;
    }
    const ssize_t n = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 34) {
      continue;
    }
    const std::uint16_t ethertype = static_cast<std::uint16_t>(buf[12] << 8 | buf[13]);
    if (ethertype != 0x0800 && ethertype != 0x86DD) continue;
    Key key{};
    std::uint32_t len = 0;
    if (!ipTuple(buf.data() + 14, static_cast<std::size_t>(n) - 14, count_ipv6_, key, len)) {
      continue;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    Count& c = counts_[key];
    c.packets += 1;
    c.bytes += len;
  }
}

TunDevice::TunDevice(int n, int link_type) : n_(n) {
  name_ = "ayft" + std::to_string(getpid() % 100000) + "x" + std::to_string(n);
  fd_ = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) throw std::runtime_error(std::string("open /dev/net/tun: ") + std::strerror(errno));
  ifreq request{};
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", name_.c_str());
  if (ioctl(fd_, TUNSETIFF, &request) != 0 ||
      (link_type >= 0 && ioctl(fd_, TUNSETLINK, static_cast<unsigned long>(link_type)) != 0)) {
    const int err = errno;
    close(fd_);
    throw std::runtime_error("tun " + name_ + ": " + std::strerror(err));
  }
  if (link_type >= 0) return;
  try {
    sh("ip addr add " + localV4() + " peer " + peerV4() + "/32 dev " + name_);
    sh("ip -6 addr add " + localV6() + "/64 dev " + name_ + " nodad");
    sh("ip link set " + name_ + " up");
    // The far end must be reached through this device and nothing else: traffic for it
    // must never leave by one of the machine's own interfaces.
    for (const std::string& peer : {peerV4(), peerV6()}) {
      const std::string route = shOutput("ip route get " + peer);
      if (route.find(" dev " + name_ + " ") == std::string::npos) {
        throw std::runtime_error("route to " + peer + " is not via " + name_ + ": " + route);
      }
    }
  } catch (...) {
    close(fd_);  // removes the device
    throw;
  }
}

TunDevice::~TunDevice() {
  if (fd_ >= 0) close(fd_);
}

std::string TunDevice::localV4() const { return "10.214." + std::to_string(n_) + ".1"; }
std::string TunDevice::peerV4() const { return "10.214." + std::to_string(n_) + ".2"; }
std::string TunDevice::localV6() const { return "fd00:214:" + std::to_string(n_) + "::1"; }
std::string TunDevice::peerV6() const { return "fd00:214:" + std::to_string(n_) + "::2"; }

void TunDevice::tally(const std::uint8_t* packet, std::size_t n) {
  LinkCounter::Key key{};
  std::uint32_t len = 0;
  if (!ipTuple(packet, n, true, key, len)) return;
  LinkCounter::Count& c = counts_[key];
  c.packets += 1;
  c.bytes += len;
}

void TunDevice::inject(const std::vector<std::uint8_t>& packet) {
  if (write(fd_, packet.data(), packet.size()) != static_cast<ssize_t>(packet.size())) {
    throw std::runtime_error("write to " + name_ + ": " + std::strerror(errno));
  }
  tally(packet.data(), packet.size());
}

void TunDevice::readSent(std::uint64_t packets) {
  std::array<std::uint8_t, 65536> buf{};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::uint64_t seen = 0;
  while (seen < packets) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1) {
      throw std::runtime_error("read from " + name_ + " timed out after " + std::to_string(seen) +
                               " of " + std::to_string(packets));
    }
    const ssize_t n = read(fd_, buf.data(), buf.size());
    if (n <= 0) continue;
    LinkCounter::Key key{};
    std::uint32_t len = 0;
    if (ipTuple(buf.data(), static_cast<std::size_t>(n), true, key, len)) ++seen;
    tally(buf.data(), static_cast<std::size_t>(n));
  }
}

namespace {

std::uint32_t checksumAdd(std::uint32_t sum, const std::uint8_t* p, std::size_t n) {
  for (std::size_t i = 0; i + 1 < n; i += 2)
    sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2 == 1) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
  return sum;
}

std::uint16_t checksumFold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

void put16At(std::vector<std::uint8_t>& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}

}  // namespace

std::vector<std::uint8_t> udpPacket(const std::string& src, std::uint16_t sport,
                                    const std::string& dst, std::uint16_t dport,
                                    std::size_t payload) {
  const bool v6 = src.find(':') != std::string::npos;
  const std::size_t ip_len = v6 ? 40 : 20;
  const std::size_t udp_len = 8 + payload;
  std::vector<std::uint8_t> b(ip_len + udp_len, 0);
  if (v6) {
    b[0] = 0x60;
    put16At(b, 4, static_cast<std::uint16_t>(udp_len));
    b[6] = 17;
    b[7] = 64;
    inet_pton(AF_INET6, src.c_str(), b.data() + 8);
    inet_pton(AF_INET6, dst.c_str(), b.data() + 24);
  } else {
    b[0] = 0x45;
    put16At(b, 2, static_cast<std::uint16_t>(b.size()));
    b[8] = 64;
    b[9] = 17;
    inet_pton(AF_INET, src.c_str(), b.data() + 12);
    inet_pton(AF_INET, dst.c_str(), b.data() + 16);
    put16At(b, 10, checksumFold(checksumAdd(0, b.data(), 20)));
  }
  put16At(b, ip_len, sport);
  put16At(b, ip_len + 2, dport);
  put16At(b, ip_len + 4, static_cast<std::uint16_t>(udp_len));
  std::fill(b.begin() + static_cast<std::ptrdiff_t>(ip_len + 8), b.end(), 'x');
  // Pseudo-header: addresses, protocol, UDP length; then the UDP header and payload.
  const std::size_t addr_at = v6 ? 8 : 12, addr_len = v6 ? 32 : 8;
  std::uint32_t sum = checksumAdd(0, b.data() + addr_at, addr_len);
  sum += 17 + static_cast<std::uint32_t>(udp_len);
  sum = checksumAdd(sum, b.data() + ip_len, udp_len);
  std::uint16_t udp_sum = checksumFold(sum);
  put16At(b, ip_len + 6, udp_sum == 0 ? 0xffff : udp_sum);
  return b;
}

int udpSocket(const std::string& addr, std::uint16_t port) {
  const bool v6 = addr.find(':') != std::string::npos;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw std::runtime_error("udp socket");
  }
  int size = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    throw std::runtime_error("bind udp " + addr + ":" + std::to_string(port) + ": " +
                             std::strerror(errno));
  }
  return fd;
}

void udpSend(int fd, const std::string& to, std::uint16_t port, std::size_t payload) {
  std::string data(payload, 'x');
  sockaddr_storage ss{};
  socklen_t len;
  if (to.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, to.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, to.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  if (sendto(fd, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) !=
      static_cast<ssize_t>(data.size())) {
    throw std::runtime_error(std::string("sendto ") + to + ": " + std::strerror(errno));
  }
}

void udpReceive(int fd, int count) {
  std::array<char, 65536> buf{};
  for (int i = 0; i < count; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) {
      throw std::runtime_error("udp receive timed out after " + std::to_string(i) + " of " +
                               std::to_string(count));
    }
    recv(fd, buf.data(), buf.size(), 0);
  }
}

void udpExchange(const VethPair& link, bool v6, std::uint16_t host_port, std::uint16_t peer_port,
                 int n, std::size_t payload, int m, std::size_t payload_back) {
  const std::string host = v6 ? link.hostV6() : link.hostV4();
  const std::string peer = v6 ? link.peerV6() : link.peerV4();
  int peer_fd = -1;
  link.inNamespace([&] { peer_fd = udpSocket(peer, peer_port); });
  const int host_fd = udpSocket(host, host_port);
  for (int i = 0; i < n; ++i) udpSend(host_fd, peer, peer_port, payload);
  udpReceive(peer_fd, n);
  for (int i = 0; i < m; ++i) udpSend(peer_fd, host, host_port, payload_back);
  udpReceive(host_fd, m);
  close(host_fd);
  close(peer_fd);
}

}  // namespace ayaflow::test
