// SPDX-License-Identifier: MIT OR Apache-2.0
#include "netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
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

void VethPair::inNamespace(const std::function<void()>& fn) const {
  std::exception_ptr error;
  std::thread t([&] {
    try {
      const std::string path = "/run/netns/" + ns_;
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        throw std::runtime_error("setns " + path + ": " + std::strerror(errno));
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
    const std::uint8_t* f = buf.data();
    const std::uint16_t ethertype = static_cast<std::uint16_t>(f[12] << 8 | f[13]);
    Key key{};
    std::uint32_t len = 0;
    std::size_t l4 = 0;
    char text[INET6_ADDRSTRLEN];
    if (ethertype == 0x0800) {
      const std::size_t ihl = (f[14] & 0x0f) * 4u;
      key.proto = f[14 + 9];
      len = static_cast<std::uint32_t>(f[16] << 8 | f[17]);
      inet_ntop(AF_INET, f + 26, text, sizeof(text));
      key.src = text;
      inet_ntop(AF_INET, f + 30, text, sizeof(text));
      key.dst = text;
      l4 = 14 + ihl;
    } else if (ethertype == 0x86DD && count_ipv6_ && n >= 54) {
      key.proto = f[14 + 6];
      len = static_cast<std::uint32_t>((f[18] << 8 | f[19]) + 40);
      inet_ntop(AF_INET6, f + 22, text, sizeof(text));
      key.src = text;
      inet_ntop(AF_INET6, f + 38, text, sizeof(text));
      key.dst = text;
      l4 = 54;  // tests send no extension headers
    } else {
      continue;
    }
    if ((key.proto != 6 && key.proto != 17) || static_cast<std::size_t>(n) < l4 + 4) {
      continue;
    }
    key.sport = static_cast<std::uint16_t>(f[l4] << 8 | f[l4 + 1]);
    key.dport = static_cast<std::uint16_t>(f[l4 + 2] << 8 | f[l4 + 3]);
    std::lock_guard<std::mutex> lock(mutex_);
    Count& c = counts_[key];
    c.packets += 1;
    c.bytes += len;
  }
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
