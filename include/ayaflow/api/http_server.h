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
  std::uint16_t port = 3000;  ///< 0 = ephemeral (read it back with HttpServer::port())
  unsigned threads = 1;       ///< io_context threads (0 is taken as 1)
  /// Request line + headers; above: 431. Capped at 60 KiB (Beast cannot store a field of
  /// 64 KiB or more). The read buffer holds at most this + 4 KiB, which also bounds a chunk
  /// line (size + extensions) and the trailer: 1 KiB..60 KiB.
  std::size_t header_limit = 8 * 1024;
  /// Request body (chunked: decoded bytes); above: 413. No route takes a body today, so it
  /// is small: 1024 connections x (read buffer + headers + body) stays ~30 MiB at worst.
  /// 0..1 MiB.
  std::size_t body_limit = 8 * 1024;
  /// Header fields of a request (trailer fields included); above: 431. 16..1000.
  std::size_t max_header_fields = 100;
  /// Chunk extensions (the ";name=value" after a chunk size), all chunks of a request
  /// together; above: 400. 0..header_limit.
  std::size_t max_chunk_extension_bytes = 1024;
  /// Deadline for a whole request, headers included, from its first byte (from accept for
  /// the first request); a client that is too slow (slowloris) is disconnected.
  std::chrono::seconds read_timeout{10};
  /// Keep-alive: how long a connection may wait for its next request; also bounds each
  /// response write.
  std::chrono::seconds idle_timeout{30};
  /// Open connections, WebSocket sessions and the reserve included. When the general pool
  /// (max_connections - reserve_connections) is full, the connection that has waited
  /// longest for (or in) a request is evicted to make room; if none is waiting, the new
  /// connection goes to the reserve, and when that is full too it is closed at once.
  /// 64..65536; ~10 KiB of user memory each at most (buffers), plus kernel socket buffers.
  std::size_t max_connections = 1024;
  /// Slots kept for /api/health, /metrics and the other reserved_paths when the general
  /// pool is full of busy connections. A reserve connection answers one request within
  /// reserve_timeout and closes; other paths get 503 + Retry-After. 0..max_connections/4.
  std::size_t reserve_connections = 16;
  std::chrono::seconds reserve_timeout{2};  ///< whole request + answer on a reserve slot
  /// Paths a reserve connection may ask for (GET/HEAD).
  std::vector<std::string> reserved_paths = {"/api/health", "/metrics"};
  /// General-pool connections per client address; a client at its cap that opens another
  /// loses its own longest-waiting connection (or gets a reserve slot if all of its are
  /// busy). 0 = no per-client cap. 1..max_connections.
  std::size_t max_connections_per_client = 64;
  /// Response bodies being written at once, all connections together (a client that reads
  /// slowly keeps its answer in memory for up to idle_timeout). An answer over 16 KiB that
  /// would exceed it is replaced by 503 + Retry-After. 4 MiB..1 GiB.
  std::size_t response_memory_limit = 32u << 20;
  /// An asynchronous route (GET /api/history) must answer within this, or the server answers
  /// 504 + Retry-After itself and drops the late answer. 1 s..5 min.
  std::chrono::seconds handler_timeout{30};
  /// Largest WebSocket message a client may send (clients only listen); above: closed with
  /// 1009. 125 B..64 KiB.
  std::size_t websocket_message_limit = 4096;
  /// Request errors, evictions and handshake failures are logged at warn level at most once
  /// per this interval, with the number suppressed meanwhile. 1 s..10 min.
  std::chrono::seconds log_interval{10};
  /// Clients allowed to connect (--allowed-ips); empty: everyone. An IPv4 client on a
  /// dual-stack socket matches IPv4 networks. Applied at accept: a denied client gets one
  /// canned 403 JSON answer if its socket takes it without waiting, then is closed; it
  /// never holds a connection slot.
  std::vector<common::Cidr> allowed_ips;
  /// Called once per accepted connection (on a server thread) that allowed_ips lets in.
  /// false: denied exactly like an address outside allowed_ips. Empty: no further check.
  std::function<bool(const PeerAddress&)> accept_filter;
};

/// Counters for /metrics and tests; monotonic except active_connections.
struct HttpServerStats {
  std::uint64_t active_connections = 0;    ///< open now, WebSocket sessions included
  std::uint64_t rejected_connections = 0;  ///< closed at accept: every pool full
  std::uint64_t denied_connections = 0;    ///< refused at accept by allowed_ips/accept_filter
  std::uint64_t evicted_connections = 0;   ///< idle or slow ones closed to make room
  std::uint64_t reserve_connections = 0;   ///< admitted into the reserve
  std::uint64_t reserve_refused = 0;       ///< reserve requests for other paths (503)
  std::uint64_t handler_timeouts = 0;      ///< async routes past handler_timeout (504)
  std::uint64_t responses_shed = 0;        ///< large answers replaced by 503 (memory budget)
  std::uint64_t response_bytes = 0;        ///< response body bytes being written now
  std::uint64_t accept_errors = 0;         ///< accept() failures (e.g. EMFILE), retried
  /// Responses sent, by status class: [0] 1xx (WebSocket upgrades), [1] 2xx ... [4] 5xx.
  std::array<std::uint64_t, 5> responses{};
  /// Requests refused before routing, by reason: bad_request, header_limit, header_count,
  /// body_limit, chunk_extension, trailer, timeout, websocket_handshake (in that order).
  std::array<std::uint64_t, 8> request_errors{};
};

/// HTTP/1.1 server (Boost.Beast behind a pimpl) that answers every request through a
/// Router: keep-alive, one strand per connection, bounded reads and timeouts.
///
/// Bounds on what a client sends: header bytes (431), header count (431), body (413), chunk
/// extensions (400), trailer (431, it must fit the read buffer), WebSocket messages (1009),
/// and read_timeout for a whole request. Every parser error is answered with a JSON 4xx,
/// counted in request_errors and logged at warn level at most once per log_interval; no
/// exception leaves a handler.
///
/// Admission, at accept and before any byte is read: (1) a client outside allowed_ips or
/// refused by accept_filter is sent a canned 403 if its socket takes it without waiting,
/// and closed: it holds no slot. (2) A client already holding max_connections_per_client
/// connections evicts its own longest-waiting one. (3) When the general pool is full, the
/// connection that has waited longest for (or in) a request is evicted (closed without an
/// answer). (4) When nothing can be evicted (every connection is busy or a WebSocket), the
/// connection gets a reserve slot: one request, only reserved_paths (others 503 with
/// Retry-After), reserve_timeout for all of it. (5) Otherwise it is closed at once.
/// So /api/health and /metrics answer while idle, slow or denied clients hold everything.
///
/// Routes: Router::dispatch() runs synchronous handlers on the connection's strand and
/// asynchronous ones (GET /api/history) wherever they run; their answer is posted back to
/// the strand, or replaced by 504 after handler_timeout. A connection closed meanwhile
/// drops the answer.
///
/// A GET upgrade request on a path registered with Router::addWebSocket() becomes a
/// WebSocket session of that StreamHub after the server has checked the handshake (errors
/// are JSON 400, or 426 with Sec-WebSocket-Version: 13): it receives the hub's frames as
/// text frames, its own messages are read and discarded (at most websocket_message_limit
/// each), it is pinged after idle_timeout / 2 without traffic and closed after
/// idle_timeout without an answer, and stop() sends it a close frame (1001, going away)
/// before closing it. WebSocket sessions keep their connection's slot and are never
/// evicted.
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
