// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// A link with a fixed one-way delay, for tests that need a real round-trip time on a kernel
// without the netem qdisc. Namespaces `a` and `b` are joined at layer 2 through a third
// (`relay`): a's veth end va pairs with ra in the relay namespace, b's vb with rb, and a thread
// forwards every frame between ra and rb through AF_PACKET sockets after `delay` each way.
// Transmit checksum offload is off on va and vb, so the frames read in the relay carry full
// checksums and can be injected unchanged (and TCP super-packets are segmented before they
// leave a or b, so every frame fits the MTU). Everything is removed in the destructor, also
// when a test fails.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

namespace ayaflow::test {

class DelayedLink {
 public:
  /// Creates the namespaces, veths and addresses and starts the relay thread.
  explicit DelayedLink(std::chrono::microseconds delay_each_way);
  ~DelayedLink();
  DelayedLink(const DelayedLink&) = delete;
  DelayedLink& operator=(const DelayedLink&) = delete;

  /// Namespace names (under /run/netns), for inNetns() and `ip netns exec`.
  const std::string& nsA() const { return ns_a_; }
  const std::string& nsB() const { return ns_b_; }
  const std::string& nsRelay() const { return ns_r_; }
  /// The end veths (in a and in b): where an agent would attach to see the traffic.
  const std::string& devA() const { return dev_a_; }
  const std::string& devB() const { return dev_b_; }
  /// The relay's veths (in the relay namespace).
  const std::string& relayA() const { return relay_a_; }
  const std::string& relayB() const { return relay_b_; }
  /// 10.216.<n>.1/24 in a, .2 in b; fd00:216:<n>::1/64 in a, ::2 in b. <n> only makes
  /// addresses of links in one process distinct; namespaces keep them off the machine.
  std::string v4A() const;
  std::string v4B() const;
  std::string v6A() const;
  std::string v6B() const;

  /// Runs fn on a helper thread inside a (or b); sockets it creates stay there.
  void inA(const std::function<void()>& fn) const;
  void inB(const std::function<void()>& fn) const;

  /// Frames the relay forwarded a->b and b->a so far.
  std::uint64_t forwardedAtoB() const { return forwarded_[0].load(); }
  std::uint64_t forwardedBtoA() const { return forwarded_[1].load(); }

 private:
  void relay();
  int n_;
  std::chrono::microseconds delay_;
  std::string ns_a_, ns_b_, ns_r_, dev_a_, dev_b_, relay_a_, relay_b_;
  int fd_[2] = {-1, -1};  // AF_PACKET on ra, rb
  int stop_fd_ = -1;      // eventfd: wakes the relay to stop
  std::atomic<std::uint64_t> forwarded_[2] = {0, 0};
  std::thread thread_;
};

/// A counter of /proc/net/snmp (e.g. "Tcp", "RetransSegs"; "Udp", "RcvbufErrors") as seen in
/// namespace `ns`. Throws if the section or field is missing.
std::uint64_t snmpCounter(const std::string& ns, const std::string& section,
                          const std::string& field);

/// A listening TCP socket bound to addr:port (IPv4 or IPv6 by the address's text), in the
/// calling thread's namespace. Throws on failure.
int tcpListen(const std::string& addr, std::uint16_t port);
/// A TCP socket connected to addr:port (blocking connect). Throws on failure.
int tcpConnect(const std::string& addr, std::uint16_t port);
/// The local and remote port of a connected socket.
std::uint16_t localPort(int fd);

/// Runs an nft script (several commands, newline-separated) inside namespace `ns`.
void nftIn(const std::string& ns, const std::string& script);

/// The packets of the named counter of table `inet <table>` in namespace `ns`. Throws if absent.
std::uint64_t nftCounterPackets(const std::string& ns, const std::string& table,
                                const std::string& counter);

}  // namespace ayaflow::test
