// SPDX-License-Identifier: MIT OR Apache-2.0
// The HTTP server's listener and HttpServer::Impl (bind, threads, graceful stop, stats).
// Asio only: the HTTP sessions are in http_session.cpp, admission in admission.cpp.
// Structure follows boostorg/beast/example/advanced/server/advanced_server.cpp: a listener
// accepting onto a fresh strand per connection.
#include "ayaflow/api/http_server.h"

// Boost 1.74 + C++20: <utility> must come before Asio, or awaitable.hpp misses std::exchange.
#include <utility>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/error.hpp>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "http_session.h"
#include "server_core.h"

namespace ayaflow::api {
namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using detail::Connection;
using detail::HttpSession;
using detail::kReadChunk;
using detail::ServerCore;

/// stop() waits this long for handlers to return before stopping the io_context outright.
constexpr std::chrono::seconds kStopGrace{3};
/// Back-off after a failed accept (EMFILE...), so a persistent failure cannot spin.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};

PeerAddress toPeerAddress(const tcp::endpoint& endpoint) {
  PeerAddress peer;
  peer.port = endpoint.port();
  const auto address = endpoint.address();
  if (address.is_v4()) {
    in_addr v4{};
    v4.s_addr = htonl(address.to_v4().to_uint());
    peer.bytes = common::mapIpv4(v4);
  } else {
    const auto v6 = address.to_v6().to_bytes();
    std::copy(v6.begin(), v6.end(), peer.bytes.begin());
  }
  return peer;
}

std::string endpointText(const std::string& address, std::uint16_t port) {
  const bool v6 = address.find(':') != std::string::npos;
  return (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

/// A denied client's only answer, written at accept without waiting.
constexpr std::string_view kForbidden =
    "HTTP/1.1 403 Forbidden\r\nServer: ayaflow\r\nContent-Type: application/json\r\n"
    "Cache-Control: no-store\r\nContent-Length: 21\r\nConnection: close\r\n\r\n"
    "{\"error\":\"forbidden\"}";

/// Accepts connections on its own strand, applies the allowlist and admission (see the
/// HttpServer comment) and starts an HttpSession for each connection let in.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, ServerCore& core, tcp::acceptor&& acceptor)
      : ioc_(ioc), core_(core), acceptor_(std::move(acceptor)), retry_(acceptor_.get_executor()) {}

  void run() {
    net::dispatch(acceptor_.get_executor(),
                  beast::bind_front_handler(&Listener::doAccept, shared_from_this()));
  }

  /// Any thread: stops accepting.
  void close() {
    net::post(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->acceptor_.close(ec);
      self->retry_.cancel();
    });
  }

 private:
  void doAccept() {
    if (!acceptor_.is_open()) return;
    // Each connection gets its own strand: its handlers never run concurrently.
    acceptor_.async_accept(net::make_strand(ioc_),
                           beast::bind_front_handler(&Listener::onAccept, shared_from_this()));
  }

  void onAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: count, warn once, retry after a pause.
      const bool first = core_.accept_errors.fetch_add(1) == 0;
      core_.log->log(first ? spdlog::level::warn : spdlog::level::debug,
                     "accept failed: {} (retrying)", ec.message());
      retry_.expires_after(kAcceptRetryDelay);
      retry_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
        if (!wait_ec) self->doAccept();
      });
      return;
    }
    admit(std::move(socket));
    doAccept();
  }

  void admit(tcp::socket socket) {
    beast::error_code ec;
    const auto endpoint = socket.remote_endpoint(ec);
    if (ec) return;  // peer already gone: the socket closes here
    const PeerAddress peer = toPeerAddress(endpoint);
    if (!isAllowed(peer)) {
      core_.denied.fetch_add(1, std::memory_order_relaxed);
      return refuse(socket);
    }
    auto session = HttpSession::create(std::move(socket), core_);
    std::shared_ptr<Connection> victim;
    const detail::Pool pool = core_.admission.admit(session.get(), session, peer.bytes, victim);
    if (victim) {
      victim->closeFromServer();
      core_.request_log.log(*core_.log, spdlog::level::warn, "HTTP connections full",
                            "closed the longest-waiting connection to admit a new one");
    }
    switch (pool) {
      case detail::Pool::kGeneral:
        return session->start(pool);
      case detail::Pool::kReserve:
        core_.reserve_admitted.fetch_add(1, std::memory_order_relaxed);
        return session->start(pool);
      case detail::Pool::kRejected:
        core_.rejected.fetch_add(1, std::memory_order_relaxed);
        return session->abandon();
      case detail::Pool::kStopping:
        return session->abandon();
    }
  }

  /// A denied client: one non-blocking attempt at the canned 403, then close. Whatever it
  /// already sent is read first (one non-blocking read) so that the close is less likely
  /// to reset the connection before the client reads the answer.
  void refuse(tcp::socket& socket) {
    beast::error_code ec;
    socket.non_blocking(true, ec);
    std::array<char, kReadChunk> sink;
    socket.read_some(net::buffer(sink), ec);
    ec = {};
    const std::size_t sent = socket.write_some(net::buffer(kForbidden), ec);
    if (!ec && sent == kForbidden.size()) core_.countResponse(403);
    socket.shutdown(tcp::socket::shutdown_send, ec);
    socket.close(ec);
  }

  bool isAllowed(const PeerAddress& peer) {
    const HttpServerOptions& o = core_.options;
    if (!o.allowed_ips.empty() &&
        std::none_of(o.allowed_ips.begin(), o.allowed_ips.end(),
                     [&peer](const common::Cidr& cidr) { return cidr.contains(peer.bytes); })) {
      return false;
    }
    if (!o.accept_filter) return true;
    try {
      return o.accept_filter(peer);
    } catch (const std::exception& e) {
      core_.log->error("accept filter failed: {} (connection denied)", e.what());
      return false;
    }
  }

  net::io_context& ioc_;
  ServerCore& core_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_;
};

}  // namespace

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, const Router& router)
      : core_(std::move(options), router),
        ioc_(static_cast<int>(std::max(1u, core_.options.threads))) {}

  ~Impl() { stop(); }

  void start() {
    {
      std::lock_guard<std::mutex> lock(lifecycle_mutex_);
      if (started_) throw std::logic_error("HttpServer::start() called twice");
      started_ = true;
    }
    const auto& opts = core_.options;
    const std::string where = endpointText(opts.address, opts.port);

    beast::error_code ec;
    const auto address = net::ip::make_address(opts.address, ec);
    if (ec) throw SystemError(EINVAL, "cannot listen on " + where + ": invalid address");
    const tcp::endpoint endpoint(address, opts.port);

    auto fail = [&where](const beast::error_code& error) {
      const int err = error.value();
      const char* hint = (err == EADDRINUSE || err == EACCES) ? " (--port)" : "";
      // what() appends ": <strerror>", e.g. "...:3000 (--port): Address already in use".
      throw SystemError(err, "cannot listen on " + where + hint);
    };
    tcp::acceptor acceptor(net::make_strand(ioc_));
    acceptor.open(endpoint.protocol(), ec);
    if (ec) fail(ec);
    acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (ec) fail(ec);
    if (address.is_v6()) {
      // "::" must take IPv4 clients too, whatever net.ipv6.bindv6only says.
      acceptor.set_option(net::ip::v6_only(false), ec);
      if (ec) core_.log->warn("cannot make {} dual-stack: {}", where, ec.message());
    }
    acceptor.bind(endpoint, ec);
    if (ec) fail(ec);
    acceptor.listen(net::socket_base::max_listen_connections, ec);
    if (ec) fail(ec);
    port_.store(acceptor.local_endpoint(ec).port());

    listener_ = std::make_shared<Listener>(ioc_, core_, std::move(acceptor));
    listener_->run();

    const unsigned count = std::max(1u, opts.threads);
    {
      std::lock_guard<std::mutex> lock(run_mutex_);
      running_ = count;
    }
    threads_.reserve(count);
    for (unsigned i = 0; i < count; ++i) threads_.emplace_back([this] { runThread(); });
    core_.log->info("HTTP server listening on {}", endpointText(opts.address, port_.load()));
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(lifecycle_mutex_);
      if (!started_ || stopped_) return;
      stopped_ = true;
    }
    // 1. No new sessions from now on; collect the live ones.
    core_.admission.setStopping();
    auto sessions = core_.admission.liveSessions();
    // 2. Stop accepting and close every connection on its own strand (WebSockets send a
    //    close frame first, bounded by kWsCloseTimeout). Once their pending operations
    //    complete, the io_context runs out of work and run() returns.
    if (listener_) listener_->close();
    for (auto& session : sessions) session->closeFromServer();
    sessions.clear();
    // 3. Wait for that, with a deadline in case a handler is stuck.
    {
      std::unique_lock<std::mutex> lock(run_mutex_);
      if (!run_cv_.wait_for(lock, kStopGrace, [this] { return running_ == 0; })) {
        core_.log->warn("HTTP server did not drain within {} s; stopping it", kStopGrace.count());
        ioc_.stop();
      }
    }
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    threads_.clear();
    // Worker threads (asynchronous routes) may no longer post into the io_context.
    core_.gate->close();
    // 4. Sessions that outlived the threads (handlers left in a stopped io_context) must
    //    not receive frames from a hub while the io_context is destroyed.
    for (auto& session : core_.admission.liveSessions()) session->detach();
    core_.log->debug("HTTP server stopped");
  }

  std::uint16_t port() const { return port_.load(); }

  HttpServerStats stats() {
    HttpServerStats s;
    s.active_connections = core_.admission.activeCount();
    s.rejected_connections = core_.rejected.load();
    s.denied_connections = core_.denied.load();
    s.evicted_connections = core_.admission.evicted();
    s.reserve_connections = core_.reserve_admitted.load();
    s.reserve_refused = core_.reserve_refused.load();
    s.handler_timeouts = core_.handler_timeouts.load();
    s.responses_shed = core_.responses_shed.load();
    s.response_bytes = core_.response_bytes.load();
    s.accept_errors = core_.accept_errors.load();
    for (std::size_t i = 0; i < s.request_errors.size(); ++i) {
      s.request_errors[i] = core_.request_errors[i].load(std::memory_order_relaxed);
    }
    for (std::size_t i = 0; i < s.responses.size(); ++i) {
      s.responses[i] = core_.responses[i].load(std::memory_order_relaxed);
    }
    return s;
  }

 private:
  void runThread() {
    for (;;) {
      try {
        ioc_.run();
        break;
      } catch (const std::exception& e) {
        // Handlers do not throw by design (the router catches, reads are bounded below
        // Beast's own limits); a bug here is logged (rate-limited) and serving goes on.
        core_.server_log.log(*core_.log, spdlog::level::err, "HTTP server thread", e.what());
      }
    }
    std::lock_guard<std::mutex> lock(run_mutex_);
    --running_;
    run_cv_.notify_all();
  }

  // Declaration order is destruction order in reverse: core_ must outlive ioc_, whose
  // destructor destroys pending handlers and with them the sessions that unregister.
  ServerCore core_;
  net::io_context ioc_;
  std::shared_ptr<Listener> listener_;
  std::vector<std::thread> threads_;
  std::atomic<std::uint16_t> port_{0};

  std::mutex lifecycle_mutex_;
  bool started_ = false;  // guarded by lifecycle_mutex_
  bool stopped_ = false;  // guarded by lifecycle_mutex_

  std::mutex run_mutex_;
  std::condition_variable run_cv_;
  unsigned running_ = 0;  // threads still in run(); guarded by run_mutex_
};

HttpServer::HttpServer(HttpServerOptions options, const Router& router)
    : impl_(std::make_unique<Impl>(std::move(options), router)) {}

HttpServer::~HttpServer() = default;

void HttpServer::start() { impl_->start(); }

std::uint16_t HttpServer::port() const { return impl_->port(); }

void HttpServer::stop() { impl_->stop(); }

HttpServerStats HttpServer::stats() const { return impl_->stats(); }

}  // namespace ayaflow::api
