// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Two Kubernetes-like nodes built from kernel objects, for node-mode tests: the layout of a
// Flannel (or Calico/Cilium VXLAN) cluster.
//
//   node1 (netns)                                   node2 (netns)
//   pod a --veth-- cni0 (bridge) ---+               +--- cni0 --veth-- pod c
//   pod b --veth--/                 |               |
//                  flannel.1 (VXLAN id 1, UDP 8472) over eth0 <==veth==> eth0
//
// Each node and pod is a network namespace; interface names are per namespace, so both
// nodes have an uplink called `eth0`, a bridge `cni0` and a VXLAN device `flannel.1`, and
// each pod an `eth0`. Pod host ends are `veth<pod><pid>` inside the node. node k has the pod
// CIDRs 10.244.k.0/24 and fd00:244:k::/64 (the bridge is .1 / ::1), its uplink
// 192.168.50.k/24 and fd00:50::k/64, and a default route via the other node (so node1's
// uplink is the interface carrying its default route). The other node's pod CIDRs are
// routed through flannel.1, as Flannel does.
//
// The network is quiet: every neighbour and bridge forwarding entry is static (no ARP,
// neighbour discovery or flooding), and flannel.1 has no IPv6 address of its own, so it never
// sends MLD reports or router solicitations: the only TCP/UDP packets are the test's own.
// Everything is removed in the destructor, also when a test fails.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "netns.h"

namespace ayaflow::test {

/// A pod: its own network namespace with `eth0`, whose peer sits on its node's bridge.
struct Pod {
  std::string name;    ///< "a", "b", ... (unique in the layout)
  int node = 0;        ///< 1 or 2
  int index = 0;       ///< host part of its addresses (2, 3, ...)
  std::string ns;      ///< the pod's network namespace
  std::string veth;    ///< host end, inside the node's namespace
  std::string mac;     ///< of the pod's eth0
  std::string v4, v6;  ///< the pod's addresses

  const std::string& addr(bool ipv6) const { return ipv6 ? v6 : v4; }
  /// Runs fn on a thread inside the pod's namespace.
  void run(const std::function<void()>& fn) const { inNetns(ns, fn); }
};

class NodeLayout {
 public:
  static constexpr const char* kUplink = "eth0";
  static constexpr const char* kBridge = "cni0";
  static constexpr const char* kVxlan = "flannel.1";
  static constexpr std::uint16_t kVxlanPort = 8472;

  /// node1 with pods a and b, node2 with pod c.
  NodeLayout();
  ~NodeLayout();
  NodeLayout(const NodeLayout&) = delete;
  NodeLayout& operator=(const NodeLayout&) = delete;

  /// The namespace of node 1 or 2.
  const std::string& node(int n) const { return n == 1 ? node1_ : node2_; }
  /// Runs fn on a thread inside node n's namespace.
  void inNode(int n, const std::function<void()>& fn) const { inNetns(node(n), fn); }
  /// node n's own (uplink) addresses.
  static std::string nodeV4(int n) { return "192.168.50." + std::to_string(n); }
  static std::string nodeV6(int n) { return "fd00:50::" + std::to_string(n); }
  static std::string nodeAddr(int n, bool ipv6) { return ipv6 ? nodeV6(n) : nodeV4(n); }
  /// node n's address on its pods' bridge (their gateway), also the node's own.
  static std::string bridgeAddr(int n, bool ipv6) {
    return ipv6 ? "fd00:244:" + std::to_string(n) + "::1" : "10.244." + std::to_string(n) + ".1";
  }

  const Pod& pod(const std::string& name) const;
  /// Adds a pod on node n (e.g. while an agent runs): its namespace, veth pair on the
  /// bridge, addresses, routes and static neighbours.
  const Pod& addPod(int n, const std::string& name);
  /// Deletes a pod: its veth (both ends) and its namespace.
  void removePod(const std::string& name);

 private:
  void buildNode(int n);
  void cleanup();
  std::string id_;
  std::string node1_, node2_;
  std::vector<std::unique_ptr<Pod>> pods_;
};

/// Ground truth on one interface of a namespace: an AF_PACKET socket counts every TCP/UDP
/// frame, both ways, by 5-tuple. Tunnelled frames are counted by their inner packet, as
/// the agent must count them: VXLAN (UDP 4789 and 8472), Geneve (UDP 6081 carrying Ethernet)
/// and IPv4/IPv6-in-IP (IP protocols 4 and 41), over IPv4 or IPv6. Bytes are IP lengths (of
/// the inner packet when tunnelled).
class InnerFlowCounter {
 public:
  struct Seen {
    std::map<LinkCounter::Key, LinkCounter::Count> in, out;  ///< received / sent by the interface
    std::uint64_t tunnelled_in = 0, tunnelled_out = 0;       ///< frames decapsulated
  };

  InnerFlowCounter(const std::string& ns, const std::string& ifname);
  ~InnerFlowCounter();
  InnerFlowCounter(const InnerFlowCounter&) = delete;
  InnerFlowCounter& operator=(const InnerFlowCounter&) = delete;
  /// Stops capturing (after the traffic: what is queued is read first) and returns it.
  Seen stop();

  /// Packets of one 5-tuple in `counts` (0 if absent).
  static std::uint64_t packets(const std::map<LinkCounter::Key, LinkCounter::Count>& counts,
                               const std::string& src, std::uint16_t sport, const std::string& dst,
                               std::uint16_t dport, std::uint8_t proto);

 private:
  void loop();
  int fd_ = -1;
  std::thread thread_;
  std::mutex mutex_;
  bool stop_ = false;
  Seen seen_;
};

/// One end of test traffic: an address in a namespace (a pod's or a node's).
struct Endpoint {
  std::string ns;
  std::string addr;
  std::uint16_t port = 0;
};

/// Sends `count` UDP datagrams of `payload` bytes from `from` to `to`; `to` receives them all
/// (throws otherwise).
void udpFlow(const Endpoint& from, const Endpoint& to, int count, std::size_t payload);

/// A TCP connection from `client` to `server` (listening in its namespace) with `exchanges`
/// request/response rounds of `request` and `response` bytes (each below one segment), then
/// an orderly close from the client. Returns once the client has seen the server's FIN.
void tcpExchanges(const Endpoint& client, const Endpoint& server, int exchanges,
                  std::size_t request, std::size_t response);

/// Encapsulations for sendTunnelled().
enum class Tunnel { kVxlan4789, kGeneve, kIpInIp };

/// From namespace `ns`, sends `count` copies of the inner IP packet `inner` (udpPacket())
/// tunnelled to `outer_dst` (IPv4 or IPv6): VXLAN or Geneve as a UDP datagram (an Ethernet
/// frame inside), or as a raw IP packet of protocol 4 (IPv4 inside) or 41 (IPv6 inside).
void sendTunnelled(const std::string& ns, const std::string& outer_dst, Tunnel tunnel,
                   const std::vector<std::uint8_t>& inner, int count);

}  // namespace ayaflow::test
