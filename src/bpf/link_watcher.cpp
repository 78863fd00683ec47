// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/bpf/link_watcher.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

// Boost 1.74 Asio uses std::exchange without including <utility> (C++20).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"

namespace asio = boost::asio;

namespace ayaflow::bpf {

struct LinkWatcher::Impl {
  Impl(asio::io_context& io, std::function<void()> f) : on_change(std::move(f)), descriptor(io) {}

  void doWait() {
    descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                          [this](const boost::system::error_code& ec) { onWait(ec); });
  }

  void onWait(const boost::system::error_code& ec) {
    if (ec || stopped) return;  // operation_aborted on stop()
    // Empty the socket: one look at the interfaces covers the whole burst.
    std::array<char, 16384> buf;
    for (;;) {
      const ssize_t n = ::recv(descriptor.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n >= 0) continue;
      if (errno == EINTR || errno == ENOBUFS) continue;  // ENOBUFS: some were lost; we look
      if (errno != EAGAIN && errno != EWOULDBLOCK && !error_logged) {
        logger("bpf")->warn("link notifications: {}", std::strerror(errno));
        error_logged = true;
      }
      break;
    }
    on_change();
    doWait();
  }

  std::function<void()> on_change;
  asio::posix::stream_descriptor descriptor;
  bool stopped = false;
  bool error_logged = false;
};

LinkWatcher::LinkWatcher(asio::io_context& io, std::function<void()> on_change)
    : impl_(std::make_unique<Impl>(io, std::move(on_change))) {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) AYAFLOW_SYSTEM_ERROR(errno, "link notifications: netlink socket");
  sockaddr_nl address{};
  address.nl_family = AF_NETLINK;
  // Routes too: `--interface auto` follows the default route (the uplink).
  address.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int err = errno;
    ::close(fd);
    AYAFLOW_SYSTEM_ERROR(err, "link notifications: bind the link and route groups");
  }
  impl_->descriptor.assign(fd);
}

LinkWatcher::~LinkWatcher() = default;

void LinkWatcher::start() {
  impl_->stopped = false;
  impl_->doWait();
}

void LinkWatcher::stop() {
  impl_->stopped = true;
  boost::system::error_code ignored;
  impl_->descriptor.cancel(ignored);
}

}  // namespace ayaflow::bpf
