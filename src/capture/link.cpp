// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/link.h"

#include <arpa/inet.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "ayaflow/common/system_error.h"

namespace ayaflow::capture {
namespace {

class NetlinkSocket {
 public:
  NetlinkSocket() : fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)) {
    if (fd_ < 0) AYAFLOW_SYSTEM_ERROR(errno, "list network interfaces: netlink socket");
    // The caller is the capture's event loop: a dump that never ends must not stall it.
    const timeval timeout{2, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  }
  ~NetlinkSocket() { ::close(fd_); }
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// IFLA_INFO_KIND inside a nested IFLA_LINKINFO attribute.
std::string linkKind(const rtattr* linkinfo) {
  int len = static_cast<int>(RTA_PAYLOAD(linkinfo));
  for (const rtattr* a = static_cast<const rtattr*>(RTA_DATA(linkinfo)); RTA_OK(a, len);
       a = RTA_NEXT(a, len)) {
    if (a->rta_type == IFLA_INFO_KIND) {
      const char* s = static_cast<const char*>(RTA_DATA(a));
      return std::string(s, ::strnlen(s, RTA_PAYLOAD(a)));
    }
  }
  return {};
}

void parseLink(const nlmsghdr* h, std::vector<Link>& out) {
  if (h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return;
  const auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(h));
  Link link;
  link.ifindex = info->ifi_index;
  link.loopback = (info->ifi_flags & IFF_LOOPBACK) != 0;
  int len = static_cast<int>(IFLA_PAYLOAD(h));
  for (const rtattr* a = IFLA_RTA(info); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    switch (a->rta_type) {
      case IFLA_IFNAME: {
        const char* s = static_cast<const char*>(RTA_DATA(a));
        link.name.assign(s, ::strnlen(s, RTA_PAYLOAD(a)));
        break;
      }
      case IFLA_MASTER:
        if (RTA_PAYLOAD(a) >= sizeof(std::uint32_t)) {
          std::uint32_t m;
          std::memcpy(&m, RTA_DATA(a), sizeof m);
          link.master = static_cast<int>(m);
        }
        break;
      case IFLA_LINKINFO:
        link.kind = linkKind(a);
        break;
      default:
        break;
    }
  }
  if (link.ifindex > 0 && !link.name.empty()) out.push_back(std::move(link));
}

/// Runs an rtnetlink dump of `type` and hands each answer message to `parse`. Throws
/// SystemError (`what` names the dump) on an error, a timeout or a datagram cut short.
template <typename Header, typename Parse>
void dump(std::uint16_t type, const char* what, Parse parse) {
  NetlinkSocket sock;
  struct {
    nlmsghdr h;
    Header body;
  } request{};
  request.h.nlmsg_len = sizeof(request);
  request.h.nlmsg_type = type;
  request.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.h.nlmsg_seq = 1;
  if (::send(sock.fd(), &request, sizeof(request), 0) < 0) {
    AYAFLOW_SYSTEM_ERROR(errno, std::string(what) + ": netlink request");
  }
  // The kernel sizes a dump's datagrams by the reader's buffer, up to 32 KiB; twice that
  // leaves room, and a datagram cut short anyway is an error, never a lost NLMSG_DONE.
  std::vector<char> buf(65536);
  for (;;) {
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(sock.fd(), &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      AYAFLOW_SYSTEM_ERROR(errno, std::string(what) + ": netlink answer");
    }
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
      AYAFLOW_SYSTEM_ERROR(EMSGSIZE, std::string(what) + ": netlink answer cut short");
    }
    int left = static_cast<int>(n);
    for (const auto* h = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return;
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        AYAFLOW_SYSTEM_ERROR(-e->error, what);
      }
      parse(h);
    }
    if (n == 0) return;
  }
}

void parseAddress(const nlmsghdr* h, std::vector<flow::IpAddress>& out) {
  if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) return;
  const auto* info = static_cast<const ifaddrmsg*>(NLMSG_DATA(h));
  int len = static_cast<int>(IFA_PAYLOAD(h));
  for (const rtattr* a = IFA_RTA(info); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    // IFA_LOCAL is the address itself on point-to-point links (IFA_ADDRESS is the peer);
    // elsewhere they are equal or only IFA_ADDRESS is given.
    if (a->rta_type != IFA_ADDRESS && a->rta_type != IFA_LOCAL) continue;
    flow::IpAddress ip;
    if (info->ifa_family == AF_INET && RTA_PAYLOAD(a) == 4) {
      std::uint32_t v4;
      std::memcpy(&v4, RTA_DATA(a), 4);
      ip = flow::IpAddress::fromV4(ntohl(v4));
    } else if (info->ifa_family == AF_INET6 && RTA_PAYLOAD(a) == 16) {
      std::memcpy(ip.bytes.data(), RTA_DATA(a), 16);
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
  }
}

// Interface names with a default route in the main table (IPv4: destination and mask 0;
// IPv6: ::/0), skipping the kernel's unreachable default on lo.
std::set<std::string> defaultRouteInterfaces() {
  std::set<std::string> out;
  std::ifstream v4("/proc/net/route");
  std::string line;
  std::getline(v4, line);  // header
  while (std::getline(v4, line)) {
    std::istringstream f(line);
    std::string iface, dest, gateway, flags, refcnt, use, metric, mask;
    if (f >> iface >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask &&
        dest == "00000000" && mask == "00000000") {
      out.insert(iface);
    }
  }
  std::ifstream v6("/proc/net/ipv6_route");
  while (std::getline(v6, line)) {
    std::istringstream f(line);
    std::string dest, dest_len, src, src_len, next_hop, metric, refcnt, use, flags, iface;
    if (f >> dest >> dest_len >> src >> src_len >> next_hop >> metric >> refcnt >> use >> flags >>
            iface &&
        dest == std::string(32, '0') && dest_len == "00" && iface != "lo") {
      out.insert(iface);
    }
  }
  return out;
}

}  // namespace

bool isBridgeKind(std::string_view kind) noexcept {
  return kind == "bridge" || kind == "openvswitch" || kind == "vrf";
}

bool isRedeliveryKind(std::string_view kind) noexcept {
  static constexpr std::array<std::string_view, 12> kTunnels = {
      "vxlan",  "geneve", "ipip",      "sit",    "ip6tnl",    "gre",
      "gretap", "ip6gre", "ip6gretap", "erspan", "ip6erspan", "bareudp"};
  return isBridgeKind(kind) || std::find(kTunnels.begin(), kTunnels.end(), kind) != kTunnels.end();
}

std::vector<Link> listLinks() {
  std::vector<Link> links;
  dump<ifinfomsg>(RTM_GETLINK, "list network interfaces", [&](const nlmsghdr* h) {
    if (h->nlmsg_type == RTM_NEWLINK) parseLink(h, links);
  });
  const std::set<std::string> defaults = defaultRouteInterfaces();
  for (Link& link : links) link.default_route = defaults.count(link.name) != 0;
  std::sort(links.begin(), links.end(),
            [](const Link& a, const Link& b) { return a.ifindex < b.ifindex; });
  return links;
}

std::vector<flow::IpAddress> listAddresses() {
  std::vector<flow::IpAddress> out;
  dump<ifaddrmsg>(RTM_GETADDR, "list addresses", [&](const nlmsghdr* h) { parseAddress(h, out); });
  return out;
}

}  // namespace ayaflow::capture
