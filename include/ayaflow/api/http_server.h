// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ayaflow/api/router.h"
#include "ayaflow/common/cidr.h"

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::api {

/// A client's address as the accept filter sees it: always 16 bytes, IPv4 clients in
/// IPv4-mapped form (::ffff:a.b.c.d), whether they came over an IPv4 or a dual-stack socket.
struct PeerAddress {
  std::array<std::uint8_t, 16> bytes{};
  std::uint16_t port = 0;  ///< host order
};

struct HttpServerOptions {
  /// Listen address: an IPv4 or IPv6 literal. "::" listens dual-stack (IPv4 too).
  std::string address = "0.0.0.0";
  std::uint16_t port = 3000;            ///< 0 = ephemeral (read it back with HttpServer::port())
  unsigned threads = 1;                 ///< io_context threads (0 is taken as 1)
  std::size_t header_limit = 8 * 1024;  ///< request line + headers; above: 431
  std::size_t body_limit = 64 * 1024;   ///< request body; above: 413
  /// Deadline for a whole request, headers included, from its first byte (from accept for
  /// the first request); a client that is too slow (slowloris) is disconnected.
  std::chrono::seconds read_timeout{10};
  /// Keep-alive: how long a connection may wait for its next request; also bounds each
  /// response write.
  std::chrono::seconds idle_timeout{30};
  /// Open connections above this are accepted and closed at once, and counted.
  std::size_t max_connections = 1024;
  /// Clients allowed to connect (--allowed-ips); empty: everyone. An IPv4 client on a
  /// dual-stack socket matches IPv4 networks.
  std::vector<common::Cidr> allowed_ips;
  /// Called once per accepted connection (on a server thread) that allowed_ips lets in.
  /// false: every request on that connection is answered 403 JSON and the connection
  /// closed. Empty: no further check.
  std::function<bool(const PeerAddress&)> accept_filter;
};

/// Counters for /metrics and tests; monotonic except active_connections.
struct HttpServerStats {
  std::uint64_t active_connections = 0;    ///< open now, WebSocket sessions included
  std::uint64_t rejected_connections = 0;  ///< closed at accept: over max_connections
  std::uint64_t denied_connections = 0;    ///< refused by accept_filter (answered 403)
  std::uint64_t accept_errors = 0;         ///< accept() failures (e.g. EMFILE), retried
  /// Responses sent, by status class: [0] 1xx (WebSocket upgrades), [1] 2xx ... [4] 5xx.
  std::array<std::uint64_t, 5> responses{};
};

/// HTTP/1.1 server (Boost.Beast behind a pimpl) that answers every request through a
/// Router: keep-alive, one strand per connection, header/body limits and timeouts.
///
/// The accept filter runs once per connection right after accept, before any byte of it is
/// read; a denied connection gets 403 JSON for its first request, whatever the route (the
/// WebSocket and /metrics included), and is closed. A GET upgrade request on a path
/// registered with Router::addWebSocket() becomes a WebSocket session of that StreamHub:
/// it receives the hub's frames as text frames, its own messages are read and discarded
/// (at most 4 KiB each), it is pinged after idle_timeout / 2 without traffic and closed
/// after idle_timeout without an answer, and stop() sends it a close frame (1001, going
/// away) before closing it. WebSocket sessions count towards max_connections.
///
/// Ownership: owns its io_context and threads; borrows `router`, which must outlive it.
/// Threads: start() and stop() may be called from any thread except the server's own
/// (stop() joins them); port() and stats() from any thread, handlers included (/metrics
/// reads stats() on a server thread). Errors: start() throws ayaflow::SystemError with a
/// one-line message naming the address and port; at run time, client and socket errors
/// close the affected connection and are never thrown.
/// The ayaflow_http_* families of `stats`.
std::vector<prometheus::MetricFamily> httpServerFamilies(const HttpServerStats& stats);

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, const Router& router);
  /// Runs stop().
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds, listens and starts the threads. Throws SystemError when the address is invalid
  /// or the port cannot be bound; std::logic_error when called twice.
  void start();

  /// The bound port (useful with port 0); 0 before start().
  std::uint16_t port() const;

  /// Stops accepting, closes every connection and joins the threads. Idempotent. In-flight
  /// responses are abandoned; if handlers do not return within a few seconds the
  /// io_context is stopped outright.
  void stop();

  HttpServerStats stats() const;

  /// ayaflow_http_* families, from stats() at every scrape.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::api
