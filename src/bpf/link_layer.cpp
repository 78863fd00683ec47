// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/bpf/link_layer.h"

#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ayaflow/common/system_error.h"

namespace ayaflow::bpf {

LinkLayer linkLayerForType(const std::string& ifname, std::uint16_t arphrd_type) {
  switch (arphrd_type) {
    case ARPHRD_ETHER:
    case ARPHRD_LOOPBACK:  // eth_header_ops: an all-zero Ethernet header
      return LinkLayer::kEthernet;
    case ARPHRD_NONE:     // tun, WireGuard
    case ARPHRD_RAWIP:    // raw-IP modems (rmnet, qmi_wwan)
    case ARPHRD_PPP:      // ppp
    case ARPHRD_TUNNEL:   // ipip
    case ARPHRD_TUNNEL6:  // ip6tnl
    case ARPHRD_SIT:      // sit
      return LinkLayer::kIpOnly;
    default:
      throw SystemError(EPROTONOSUPPORT,
                        "--interface " + ifname + ": link type " + std::to_string(arphrd_type) +
                            " is neither Ethernet nor IP-only (tun, WireGuard, ipip, PPP); "
                            "ayaflow cannot parse its packets");
  }
}

LinkLayer linkLayerOf(const std::string& ifname) {
  ifreq request{};
  if (ifname.empty() || ifname.size() >= sizeof request.ifr_name) {
    AYAFLOW_SYSTEM_ERROR(ENODEV, "--interface: no interface named '" + ifname + "'");
  }
  std::memcpy(request.ifr_name, ifname.data(), ifname.size());
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) AYAFLOW_SYSTEM_ERROR(errno, "link type of " + ifname + ": socket");
  const int rc = ::ioctl(fd, SIOCGIFHWADDR, &request);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    if (err == ENODEV) {
      AYAFLOW_SYSTEM_ERROR(err, "--interface: no interface named '" + ifname + "'");
    }
    AYAFLOW_SYSTEM_ERROR(err, "link type of " + ifname + ": SIOCGIFHWADDR");
  }
  return linkLayerForType(ifname, request.ifr_hwaddr.sa_family);
}

}  // namespace ayaflow::bpf
