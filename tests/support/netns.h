// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Test network: a network namespace per test with a veth pair whose host
// end stays in the root namespace. Names and addresses are unique per test
// process; everything is removed in the destructor, also when a test fails.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace ayaflow::test {

/// Runs a shell command; throws std::runtime_error with its output on failure.
void sh(const std::string& command);
/// Runs a shell command and returns its stdout (exit status ignored).
std::string shOutput(const std::string& command);

/// One `ethtool -K` setting (an ETHTOOL_S* command and its value) on `dev` in the calling
/// thread's namespace, without the tool; throws std::runtime_error naming it on failure.
void ethtoolSet(const std::string& dev, std::uint32_t command, std::uint32_t value);

/// Runs fn with the calling thread inside network namespace `ns` (a name under /run/netns,
/// as `ip netns add` makes, or an absolute path such as /proc/PID/ns/net), on a helper
/// thread, so the caller's namespace never changes.
/// Sockets created by fn stay in that namespace. Rethrows what fn throws.
void inNetns(const std::string& ns, const std::function<void()>& fn);

/// A veth pair: `host` in the root namespace, `peer` inside namespace `ns`.
/// IPv4 10.213.<n>.1/24 (host) and .2 (peer); IPv6 fd00:213:<n>::1/64 and ::2.
/// TSO is off on both ends (GSO stays on): a TCP sender's egress hook sees GSO
/// super-packets, and the link (and a LinkCounter on it) carries the segments, as on a wire.
class VethPair {
 public:
  explicit VethPair(int n);
  ~VethPair();
  VethPair(const VethPair&) = delete;
  VethPair& operator=(const VethPair&) = delete;

  const std::string& ns() const { return ns_; }
  const std::string& host() const { return host_; }
  const std::string& peer() const { return peer_; }
  std::string hostV4() const;
  std::string peerV4() const;
  std::string hostV6() const;
  std::string peerV6() const;
  int hostIfindex() const;

  /// Runs fn with the calling thread inside the namespace (on a helper
  /// thread, so the caller's namespace never changes). Sockets created by fn
  /// stay in the namespace.
  void inNamespace(const std::function<void()>& fn) const;

 private:
  int n_;
  std::string ns_, host_, peer_;
};

/// Ground truth: an AF_PACKET socket on the peer end counts every TCP/UDP
/// frame crossing the link, both ways, by 5-tuple (addresses as text).
class LinkCounter {
 public:
  struct Key {
    std::string src, dst;
    std::uint16_t sport, dport;
    std::uint8_t proto;
    bool operator<(const Key& o) const {
      return std::tie(src, dst, sport, dport, proto) <
             std::tie(o.src, o.dst, o.sport, o.dport, o.proto);
    }
  };
  struct Count {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;  // IP length, as the agent counts
  };

  LinkCounter(const VethPair& link, bool count_ipv6);
  ~LinkCounter();
  /// Stops capturing (after the traffic) and returns what was seen.
  std::map<Key, Count> stop();

 private:
  void loop();
  int fd_ = -1;
  bool count_ipv6_;
  std::thread thread_;
  std::mutex mutex_;
  bool stop_ = false;
  std::map<Key, Count> counts_;
};

/// A tun device: no link-layer header, the packet starts at the IP header (as on WireGuard
/// or ipip). It lives in the root namespace (a process must hold it open, and the agent
/// attaches there) and is held only by this object: the kernel removes it when the fd
/// closes, also when the test dies. 10.214.<n>.1 with peer .2, fd00:214:<n>::1/64 (the far
/// end is ::2). The test plays the far end: inject() hands the device a packet as received, and
/// readSent() takes what the host sent through it. Both are tallied like LinkCounter.
class TunDevice {
 public:
  /// link_type (ARPHRD_*): give the device another kernel link type and leave it down
  /// without addresses (to test what the agent says about such a device).
  explicit TunDevice(int n, int link_type = -1);
  ~TunDevice();
  TunDevice(const TunDevice&) = delete;
  TunDevice& operator=(const TunDevice&) = delete;

  const std::string& name() const { return name_; }
  std::string localV4() const;
  std::string peerV4() const;
  std::string localV6() const;
  std::string peerV6() const;

  /// Hands `packet` (an IP packet with valid checksums) to the device as received.
  void inject(const std::vector<std::uint8_t>& packet);
  /// Reads what the host sent through the device until `packets` TCP/UDP packets came
  /// out; throws after 5 s.
  void readSent(std::uint64_t packets);
  /// Every TCP/UDP packet injected or read so far, by 5-tuple.
  const std::map<LinkCounter::Key, LinkCounter::Count>& counts() const { return counts_; }

 private:
  void tally(const std::uint8_t* packet, std::size_t n);
  int n_;
  int fd_ = -1;
  std::string name_;
  std::map<LinkCounter::Key, LinkCounter::Count> counts_;
};

/// IPv4 (header checksum) or IPv6 UDP packet with valid checksums and `payload` bytes.
std::vector<std::uint8_t> udpPacket(const std::string& src, std::uint16_t sport,
                                    const std::string& dst, std::uint16_t dport,
                                    std::size_t payload);

/// UDP/TCP sockets bound to an address; helpers for exact traffic.
int udpSocket(const std::string& addr, std::uint16_t port);
void udpSend(int fd, const std::string& to, std::uint16_t port, std::size_t payload);
/// Receives exactly `count` datagrams (or throws after timeout).
void udpReceive(int fd, int count);

/// Sends `n` datagrams of `payload` bytes from the host end (host_port) to
/// the peer (peer_port), then `m` of `payload_back` bytes back; each side
/// receives them all. IPv6 addresses with `v6`.
void udpExchange(const VethPair& link, bool v6, std::uint16_t host_port, std::uint16_t peer_port,
                 int n, std::size_t payload, int m, std::size_t payload_back);

}  // namespace ayaflow::test
