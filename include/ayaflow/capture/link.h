// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ayaflow/flow/packet.h"

namespace ayaflow::capture {

/// A network interface of the agent's network namespace, as rtnetlink lists it, with what
/// interface selection and the once-per-node counting rule need to know about it.
struct Link {
  Link() = default;
  Link(int index, std::string link_name, std::string link_kind = {}, int link_master = 0,
       bool has_default_route = false)
      : ifindex(index),
        name(std::move(link_name)),
        kind(std::move(link_kind)),
        master(link_master),
        default_route(has_default_route) {}

  int ifindex = 0;
  std::string name;
  std::string kind;       ///< rtnetlink IFLA_INFO_KIND ("veth", "bridge", "vxlan"); "" for a NIC
  int master = 0;         ///< ifindex of the bridge (or bond, VRF) it is a port of; 0 if none
  bool loopback = false;  ///< IFF_LOOPBACK
  bool default_route = false;  ///< carries an IPv4 or IPv6 default route of the main table
};

/// True for devices that pass on packets which entered the node elsewhere: bridges (and
/// Open vSwitch, VRF) and tunnel devices (VXLAN, Geneve, IP-in-IP, SIT, ip6tnl, GRE).
bool isRedeliveryKind(std::string_view kind) noexcept;
/// True for the bridge-like kinds among them (their ports carry the packets first).
bool isBridgeKind(std::string_view kind) noexcept;

/// Every interface of the caller's network namespace, by ifindex (an RTM_GETLINK dump), with
/// the default routes of /proc/net/route and /proc/net/ipv6_route. Throws SystemError if the
/// interfaces cannot be listed; a missing route table only leaves default_route false.
std::vector<Link> listLinks();

/// Every IPv4 and IPv6 address of the caller's network namespace (an RTM_GETADDR dump: no
/// link details, so cheap however many pod interfaces the node has). Throws SystemError.
std::vector<flow::IpAddress> listAddresses();

}  // namespace ayaflow::capture
