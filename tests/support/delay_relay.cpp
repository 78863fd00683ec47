// SPDX-License-Identifier: MIT OR Apache-2.0
#include "delay_relay.h"

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "netns.h"

namespace ayaflow::test {

namespace {

std::atomic<int> next_link{0};

std::int64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

/// An AF_PACKET socket on `dev` that does not see what it (or anything else) sends there:
/// without PACKET_IGNORE_OUTGOING the relay would read back its own injected frames.
int relaySocket(const std::string& dev) {
  const int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd < 0) {
    throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
  }
  const int one = 1;
  int size = 16 << 20;
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = static_cast<int>(if_nametoindex(dev.c_str()));
  if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof(sll)) != 0) {
    const int err = errno;
    close(fd);
    throw std::runtime_error("relay socket on " + dev + ": " + std::strerror(err));
  }
  return fd;
}

std::string macOf(const std::string& ns, const std::string& dev) {
  std::string mac = shOutput("ip netns exec " + ns + " cat /sys/class/net/" + dev + "/address");
  while (!mac.empty() && (mac.back() == '\n' || mac.back() == ' ')) mac.pop_back();
  if (mac.size() != 17) throw std::runtime_error("no MAC address for " + dev + ": " + mac);
  return mac;
}

}  // namespace

DelayedLink::DelayedLink(std::chrono::microseconds delay_each_way)
    : n_(next_link++ % 250 + 1), delay_(delay_each_way) {
  const std::string id = std::to_string(getpid() % 100000) + "x" + std::to_string(n_);
  ns_a_ = "aydA" + id;
  ns_b_ = "aydB" + id;
  ns_r_ = "aydR" + id;
  dev_a_ = "ayva" + id;  // <= 15 characters
  dev_b_ = "ayvb" + id;
  relay_a_ = "ayra" + id;
  relay_b_ = "ayrb" + id;
  try {
    sh("ip netns add " + ns_a_);
    sh("ip netns add " + ns_b_);
    sh("ip netns add " + ns_r_);
    // The relay namespace only forwards: no IPv6 of its own (no router solicitations or
    // MLD reports mixed into the test's traffic).
    sh("ip netns exec " + ns_r_ + " sysctl -qw net.ipv6.conf.all.disable_ipv6=1");
    sh("ip netns exec " + ns_r_ + " sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
    sh("ip link add " + dev_a_ + " netns " + ns_a_ + " type veth peer name " + relay_a_ +
       " netns " + ns_r_);
    sh("ip link add " + dev_b_ + " netns " + ns_b_ + " type veth peer name " + relay_b_ +
       " netns " + ns_r_);
    const std::string a = "ip -n " + ns_a_ + " ";
    const std::string b = "ip -n " + ns_b_ + " ";
    sh(a + "addr add " + v4A() + "/24 dev " + dev_a_);
    sh(a + "-6 addr add " + v6A() + "/64 dev " + dev_a_ + " nodad");
    sh(b + "addr add " + v4B() + "/24 dev " + dev_b_);
    sh(b + "-6 addr add " + v6B() + "/64 dev " + dev_b_ + " nodad");
    // Checksums complete in software before the frame leaves a or b (the relay re-injects
    // it as a new frame, which the receiver verifies). Turning tx checksumming off also
    // turns TSO off, so TCP is segmented to the MTU before it reaches the relay.
    inA([&] { ethtoolSet(dev_a_, ETHTOOL_STXCSUM, 0); });
    inB([&] { ethtoolSet(dev_b_, ETHTOOL_STXCSUM, 0); });
    for (const auto& [ns, dev] : {std::pair{ns_a_, dev_a_}, std::pair{ns_b_, dev_b_},
                                  std::pair{ns_r_, relay_a_}, std::pair{ns_r_, relay_b_}}) {
      sh("ip -n " + ns + " link set " + dev + " up");
      sh("ip -n " + ns + " link set lo up");
    }
    // Permanent neighbour entries: the first packet of a test is not held back for an ARP or
    // neighbour discovery round trip through the relay (which would show as one RTT sample
    // of twice the delay and take many samples to smooth away).
    const std::string mac_a = macOf(ns_a_, dev_a_);
    const std::string mac_b = macOf(ns_b_, dev_b_);
    sh(a + "neigh replace " + v4B() + " lladdr " + mac_b + " nud permanent dev " + dev_a_);
    sh(a + "-6 neigh replace " + v6B() + " lladdr " + mac_b + " nud permanent dev " + dev_a_);
    sh(b + "neigh replace " + v4A() + " lladdr " + mac_a + " nud permanent dev " + dev_b_);
    sh(b + "-6 neigh replace " + v6A() + " lladdr " + mac_a + " nud permanent dev " + dev_b_);
    inNetns(ns_r_, [&] {
      fd_[0] = relaySocket(relay_a_);
      fd_[1] = relaySocket(relay_b_);
    });
    stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (stop_fd_ < 0) throw std::runtime_error("eventfd");
    thread_ = std::thread([this] { relay(); });
    // Real-time priority where allowed: a relay thread waiting for a CPU behind a busy
    // machine's other work would add its wait to the delay. Best effort (root only).
    sched_param param{};
    param.sched_priority = 1;
    pthread_setschedparam(thread_.native_handle(), SCHED_FIFO, &param);
  } catch (...) {
    for (int& fd : fd_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
    if (stop_fd_ >= 0) close(stop_fd_);
    shOutput("ip netns del " + ns_a_ + " 2>/dev/null; ip netns del " + ns_b_ +
             " 2>/dev/null; ip netns del " + ns_r_ + " 2>/dev/null");
    throw;
  }
}

DelayedLink::~DelayedLink() {
  const std::uint64_t one = 1;
  if (write(stop_fd_, &one, sizeof(one)) < 0) {
    // The relay also stops when its sockets fail; nothing else to do here.
  }
  if (thread_.joinable()) thread_.join();
  for (int fd : fd_) {
    if (fd >= 0) close(fd);
  }
  close(stop_fd_);
  // Deleting a namespace deletes its veth ends, and with them their peers.
  shOutput("ip netns del " + ns_a_ + " 2>/dev/null; ip netns del " + ns_b_ +
           " 2>/dev/null; ip netns del " + ns_r_ + " 2>/dev/null");
}

std::string DelayedLink::v4A() const { return "10.216." + std::to_string(n_) + ".1"; }
std::string DelayedLink::v4B() const { return "10.216." + std::to_string(n_) + ".2"; }
std::string DelayedLink::v6A() const { return "fd00:216:" + std::to_string(n_) + "::1"; }
std::string DelayedLink::v6B() const { return "fd00:216:" + std::to_string(n_) + "::2"; }

void DelayedLink::inA(const std::function<void()>& fn) const { inNetns(ns_a_, fn); }
void DelayedLink::inB(const std::function<void()>& fn) const { inNetns(ns_b_, fn); }

void DelayedLink::relay() {
  // One FIFO per direction: with a constant delay, frames leave in the order they came, so
  // the head of each queue is always the next one due.
  struct Frame {
    std::int64_t due_ns;
    std::vector<std::uint8_t> data;
  };
  std::deque<Frame> queue[2];
  std::vector<std::vector<std::uint8_t>> spare;  // buffers reused, not reallocated
  const std::int64_t delay_ns = static_cast<std::int64_t>(delay_.count()) * 1000;
  for (;;) {
    const std::int64_t now = monotonicNs();
    std::int64_t next_due = -1;
    for (int dir = 0; dir < 2; ++dir) {
      while (!queue[dir].empty() && queue[dir].front().due_ns <= now) {
        Frame& f = queue[dir].front();
        // dir 0 came in on ra (from a) and leaves on rb (to b).
        if (send(fd_[1 - dir], f.data.data(), f.data.size(), 0) >= 0) {
          forwarded_[dir].fetch_add(1);
        }
        spare.push_back(std::move(f.data));
        queue[dir].pop_front();
      }
      if (!queue[dir].empty() && (next_due < 0 || queue[dir].front().due_ns < next_due)) {
        next_due = queue[dir].front().due_ns;
      }
    }
    pollfd fds[3] = {{fd_[0], POLLIN, 0}, {fd_[1], POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    timespec wait{};
    timespec* timeout = nullptr;
    if (next_due >= 0) {
      const std::int64_t left = next_due > now ? next_due - now : 0;
      wait.tv_sec = left / 1000000000;
      wait.tv_nsec = left % 1000000000;
      timeout = &wait;
    }
    if (ppoll(fds, 3, timeout, nullptr) < 0 && errno != EINTR) return;
    if (fds[2].revents != 0) return;
    for (int dir = 0; dir < 2; ++dir) {
      if ((fds[dir].revents & (POLLERR | POLLNVAL)) != 0) return;
      if ((fds[dir].revents & POLLIN) == 0) continue;
      for (;;) {  // drain: every frame read now is due delay_ns from now
        std::vector<std::uint8_t> buf;
        if (!spare.empty()) {
          buf = std::move(spare.back());
          spare.pop_back();
        }
        buf.resize(65536);
        const ssize_t n = recv(fd_[dir], buf.data(), buf.size(), 0);
        if (n <= 0) {
          spare.push_back(std::move(buf));
          break;
        }
        buf.resize(static_cast<std::size_t>(n));
        queue[dir].push_back(Frame{monotonicNs() + delay_ns, std::move(buf)});
      }
    }
  }
}

std::uint64_t snmpCounter(const std::string& ns, const std::string& section,
                          const std::string& field) {
  std::string text;
  inNetns(ns, [&] {
    // thread-self: /proc/self/net would show the main thread's namespace, not this one's.
    std::ifstream in("/proc/thread-self/net/snmp");
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  });
  // Pairs of lines: "Tcp: Name1 Name2 ..." then "Tcp: value1 value2 ...".
  std::istringstream lines(text);
  std::string names, values;
  const std::string prefix = section + ":";
  while (std::getline(lines, names)) {
    if (names.rfind(prefix, 0) != 0 || !std::getline(lines, values)) continue;
    std::istringstream n(names.substr(prefix.size())), v(values.substr(prefix.size()));
    std::string name, value;
    while (n >> name && v >> value) {
      if (name == field) return std::stoull(value);
    }
  }
  throw std::runtime_error("no " + section + " " + field + " in /proc/net/snmp of " + ns);
}

namespace {

socklen_t socketAddress(const std::string& addr, std::uint16_t port, sockaddr_storage& ss) {
  ss = sockaddr_storage{};
  if (addr.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
    return sizeof(*a);
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
  return sizeof(*a);
}

}  // namespace

int tcpListen(const std::string& addr, std::uint16_t port) {
  sockaddr_storage ss;
  const socklen_t len = socketAddress(addr, port, ss);
  const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 16) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    throw std::runtime_error("listen on " + addr + ":" + std::to_string(port) + ": " +
                             std::strerror(err));
  }
  return fd;
}

int tcpConnect(const std::string& addr, std::uint16_t port) {
  sockaddr_storage ss;
  const socklen_t len = socketAddress(addr, port, ss);
  const int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const int err = errno;
    if (fd >= 0) close(fd);
    throw std::runtime_error("connect to " + addr + ":" + std::to_string(port) + ": " +
                             std::strerror(err));
  }
  return fd;
}

std::uint16_t localPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

void nftIn(const std::string& ns, const std::string& script) {
  char path[] = "/tmp/ayaflow-nft-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp");
  const bool ok = write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size());
  close(fd);
  try {
    if (!ok) throw std::runtime_error("write nft script");
    sh("ip netns exec " + ns + " nft -f " + path);
  } catch (...) {
    unlink(path);
    throw;
  }
  unlink(path);
}

std::uint64_t nftCounterPackets(const std::string& ns, const std::string& table,
                                const std::string& counter) {
  const std::string out =
      shOutput("ip netns exec " + ns + " nft list counter inet " + table + " " + counter);
  const auto pos = out.find("packets ");
  if (pos == std::string::npos) throw std::runtime_error("no counter " + counter + ": " + out);
  return std::stoull(out.substr(pos + 8));
}

}  // namespace ayaflow::test
