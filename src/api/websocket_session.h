// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_api: the hand-off of an upgraded HTTP connection to a WebSocket
// session. Included by the two Beast translation units only (http_session.cpp and
// websocket_session.cpp).
#pragma once

// Boost 1.74 + C++20: <utility> must come before Asio, or awaitable.hpp misses std::exchange.
#include <utility>

#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "ayaflow/api/stream_hub.h"
#include "server_core.h"

namespace ayaflow::api::detail {

/// On the connection's strand, with the upgrade request already read: answers 101 and makes
/// the connection a subscriber of `hub` (see WebSocketSession in websocket_session.cpp).
/// The session takes over the connection slot `from` (the HTTP session's) in `core` and keeps
/// itself alive while it runs. The handshake has been checked (checkHandshake in
/// http_session.cpp); should Beast refuse it anyway, its answer is JSON too.
void startWebSocketSession(boost::beast::tcp_stream&& stream, ServerCore& core, StreamHub& hub,
                           boost::beast::http::request<boost::beast::http::string_body>&& req,
                           const Connection* from);

}  // namespace ayaflow::api::detail
