// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <string>

namespace ayaflow::bpf {

/// What a packet starts with at an interface's TC hooks, which decides the program
/// variant attached there.
enum class LinkLayer {
  kEthernet,  // Ethernet header (NICs, veth, bridges, VXLAN/Geneve, macvlan, loopback)
  kIpOnly,    // the IP header itself (tun, WireGuard, ipip/ip6tnl/sit, PPP, raw-IP modems)
};

/// The link layer for a kernel link type (ARPHRD_*, as in /sys/class/net/IF/type).
/// Throws SystemError(EPROTONOSUPPORT) naming `ifname` for types whose TC view is neither
/// (GRE with a header, InfiniBand, CAN, ...): attaching there would count nothing.
LinkLayer linkLayerForType(const std::string& ifname, std::uint16_t arphrd_type);

/// The link layer of an interface in the caller's network namespace (SIOCGIFHWADDR).
/// Throws SystemError if the interface does not exist or its type is unsupported.
LinkLayer linkLayerOf(const std::string& ifname);

}  // namespace ayaflow::bpf
