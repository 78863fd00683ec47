// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <functional>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace ayaflow::bpf {

/// Tells when network interfaces come, go or change (rtnetlink link notifications, in the
/// caller's network namespace), so the agent can follow an interface that is deleted and
/// created again (a WireGuard or VPN link restarted, a re-plugged NIC). The messages are
/// not parsed: each burst of them (or a lost one, ENOBUFS) calls `on_change` once, on the
/// io_context's thread, and the caller looks at the interfaces it cares about. Owned and
/// used by the io_context's thread only. Throws SystemError if the socket cannot be made.
class LinkWatcher {
 public:
  LinkWatcher(boost::asio::io_context& io, std::function<void()> on_change);
  ~LinkWatcher();
  LinkWatcher(const LinkWatcher&) = delete;
  LinkWatcher& operator=(const LinkWatcher&) = delete;

  /// Starts waiting for notifications.
  void start();
  /// Cancels the wait; on_change is not called any more.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::bpf
