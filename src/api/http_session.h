// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_api: one HTTP/1.1 connection as the listener sees it. The session
// itself (reading, limits, routing, answers, the WebSocket upgrade) is in http_session.cpp,
// a Beast translation unit; this header needs Asio's socket type only, no Beast.
#pragma once

// Boost 1.74 + C++20: <utility> must come before Asio, or awaitable.hpp misses std::exchange.
#include <utility>

#include <cstddef>
#include <memory>

#include <boost/asio/ip/tcp.hpp>

#include "server_core.h"

namespace ayaflow::api::detail {

/// Bytes asked of the socket per read (also the listener's one read from a denied client).
inline constexpr std::size_t kReadChunk = 4096;

/// One HTTP/1.1 connection, admitted by the listener (see the Session class in
/// http_session.cpp). Keeps itself alive while an operation is pending; unregisters from
/// core.admission when destroyed.
class HttpSession : public Connection {
 public:
  /// The session of an accepted socket; nothing runs before start().
  static std::shared_ptr<HttpSession> create(boost::asio::ip::tcp::socket&& socket,
                                             ServerCore& core);

  /// On the listener's strand, right after admission into `pool`.
  virtual void start(Pool pool) = 0;

  /// On the listener's strand: the connection was not admitted; nothing was started.
  virtual void abandon() = 0;
};

}  // namespace ayaflow::api::detail
