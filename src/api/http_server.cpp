// SPDX-License-Identifier: MIT OR Apache-2.0
// The HTTP side of the server, one of the two translation units that include Boost.Beast
// (slow to compile; websocket_session.cpp is the other). Structure follows
// boostorg/beast/example/advanced/server/advanced_server.cpp: a listener accepting onto a
// fresh strand per connection, and one Session per connection whose async steps are
// doX()/onX() pairs, each bounded by a tcp_stream deadline. An upgrade request on a
// WebSocket path hands the connection to a WebSocket session (websocket_session.h).
#include "ayaflow/api/http_server.h"

// Boost 1.74 + C++20: <utility> must come before Asio, or awaitable.hpp misses std::exchange.
#include <utility>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "ayaflow/api/stream_hub.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "server_core.h"
#include "websocket_session.h"

namespace ayaflow::api {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using detail::Connection;
using detail::ServerCore;

/// After an error answer the rest of the request is still in flight; reading (and
/// discarding) it before closing avoids a TCP reset that would destroy the answer in the
/// client's receive buffer. Bounded in bytes and time.
constexpr std::size_t kLingerMaxBytes = 1 << 20;
constexpr std::chrono::seconds kLingerTimeout{2};
/// stop() waits this long for handlers to return before stopping the io_context outright.
constexpr std::chrono::seconds kStopGrace{3};
/// Back-off after a failed accept (EMFILE...), so a persistent failure cannot spin.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
constexpr std::size_t kReadChunk = 4096;

std::string_view toStd(beast::string_view s) { return {s.data(), s.size()}; }

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

bool isHttpParseError(const beast::error_code& ec) {
  return &ec.category() == &http::make_error_code(http::error::bad_method).category();
}

/// What stop() needs from every live connection, plain HTTP or WebSocket.
/// One HTTP/1.1 connection. Every member is touched only on the connection's strand
/// (stream_'s executor); the session lives as long as an async operation holds it.
class Session : public Connection, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ServerCore& core, bool denied)
      : stream_(std::move(socket)), core_(core), denied_(denied) {}

  ~Session() override { core_.unregisterSession(this); }

  /// Called on the listener's strand right after accept.
  void start() {
    if (!core_.registerSession(this, weak_from_this())) return;  // stopping: socket closes
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::doRead, shared_from_this()));
  }

  /// Called by stop() from any thread: closes on the session's own strand.
  void closeFromServer() override {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->doClose(); });
  }

 private:
  void doRead() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(
        static_cast<std::uint32_t>(std::min<std::size_t>(core_.options.header_limit, UINT32_MAX)));
    parser_->body_limit(core_.options.body_limit);
    if (first_request_ || buffer_.size() != 0) {
      doReadRequest();
      return;
    }
    // Keep-alive: wait for the next request's first bytes under the idle timeout, then
    // give the whole request read_timeout.
    stream_.expires_after(core_.options.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            beast::bind_front_handler(&Session::onIdleRead, shared_from_this()));
  }

  void onIdleRead(beast::error_code ec, std::size_t bytes) {
    if (ec) return fail(ec, "idle read");
    buffer_.commit(bytes);
    doReadRequest();
  }

  void doReadRequest() {
    first_request_ = false;
    // One deadline for the whole request, headers included: a slowloris client that
    // trickles bytes is still cut off.
    stream_.expires_after(core_.options.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::onRead, shared_from_this()));
  }

  void onRead(beast::error_code ec, std::size_t /*bytes*/) {
    if (ec == http::error::end_of_stream) return doClose();    // client closed between requests
    if (ec == http::error::partial_message) return doClose();  // EOF mid-request
    // A denied client learns nothing but 403, however malformed or large its request.
    if (ec && denied_ && isHttpParseError(ec)) return sendError(403, "forbidden");
    if (ec == http::error::header_limit) return sendError(431, "request header fields too large");
    if (ec == http::error::body_limit) return sendError(413, "payload too large");
    if (ec && isHttpParseError(ec)) return sendError(400, "bad request");
    if (ec) return fail(ec, "read");  // timeout, reset, closed by stop()
    handleRequest(parser_->release());
  }

  void handleRequest(http::request<http::string_body>&& req) {
    const std::string_view target = toStd(req.target());
    Response answer;
    if (denied_) {
      answer = jsonError(403, "forbidden");
    } else if (auto request = parseTarget(std::string(toStd(req.method_string())), target,
                                          std::move(req.body()))) {
      if (websocket::is_upgrade(req)) {
        if (StreamHub* hub = core_.router.webSocket(request->path)) {
          return upgrade(std::move(req), *hub);
        }
      }
      answer = core_.router.route(*request);
    } else {
      answer = jsonError(400, "bad request target");
    }
    const bool keep_alive = req.keep_alive() && !denied_;
    const bool is_api = target.rfind("/api/", 0) == 0;
    prepareResponse(std::move(answer), req.version(), keep_alive, req.method() == http::verb::head,
                    is_api);
    doWrite(keep_alive ? AfterWrite::kNextRequest : AfterWrite::kClose);
  }

  /// Hands the connection to a WebSocketSession. Bytes the client sent after the upgrade
  /// request, before our 101, are dropped (a client must wait for the 101 anyway).
  void upgrade(http::request<http::string_body>&& req, StreamHub& hub) {
    closed_ = true;  // stream_ is moved out: doClose() must not touch it any more
    // One connection, counted once: leave the registry before the WebSocket session joins
    // it (this Session may outlive the hand-off by a moment on another thread).
    core_.unregisterSession(this);
    detail::startWebSocketSession(std::move(stream_), core_, hub, std::move(req));
  }

  /// Answers a request that could not be parsed, then closes (the parser state is lost).
  void sendError(unsigned status, std::string_view message) {
    prepareResponse(jsonError(status, message), 11, false, false, false);
    doWrite(AfterWrite::kLingerClose);
  }

  void prepareResponse(Response&& answer, unsigned version, bool keep_alive, bool head,
                       bool is_api) {
    res_ = {};
    res_.version(version);
    res_.result(answer.status);
    res_.set(http::field::server, "ayaflow");
    res_.set(http::field::content_type, answer.content_type);
    if (is_api) res_.set(http::field::cache_control, "no-store");
    for (const auto& [name, value] : answer.headers) res_.set(name, value);
    res_.body() = std::move(answer.body);
    res_.content_length(res_.body().size());
    if (head) res_.body().clear();  // HEAD: same headers, Content-Length kept, no body
    res_.keep_alive(keep_alive);
  }

  enum class AfterWrite { kNextRequest, kClose, kLingerClose };

  void doWrite(AfterWrite after) {
    // A client that does not read its answer is bounded too.
    stream_.expires_after(core_.options.idle_timeout);
    http::async_write(stream_, res_,
                      beast::bind_front_handler(&Session::onWrite, shared_from_this(), after));
  }

  void onWrite(AfterWrite after, beast::error_code ec, std::size_t /*bytes*/) {
    if (ec) return fail(ec, "write");
    core_.countResponse(res_.result_int());
    switch (after) {
      case AfterWrite::kNextRequest:
        return doRead();
      case AfterWrite::kClose:
        return doClose();
      case AfterWrite::kLingerClose:
        return doLingerClose();
    }
  }

  void doLingerClose() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    buffer_.consume(buffer_.size());
    stream_.expires_after(
        std::min<std::chrono::seconds>(kLingerTimeout, core_.options.read_timeout));
    doLingerRead();
  }

  void doLingerRead() {
    stream_.async_read_some(buffer_.prepare(kReadChunk),
                            beast::bind_front_handler(&Session::onLingerRead, shared_from_this()));
  }

  void onLingerRead(beast::error_code ec, std::size_t bytes) {
    lingered_ += bytes;
    if (ec || lingered_ > kLingerMaxBytes) return doClose();  // EOF is the normal end
    doLingerRead();
  }

  void doClose() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    // close() also cancels pending operations (needed when stop() closes an idle session).
    stream_.close();
  }

  void fail(beast::error_code ec, const char* what) {
    // Peers vanishing and deadlines expiring are routine; never log them above debug.
    if (ec != net::error::operation_aborted) {
      core_.log->debug("connection {}: {}", what, ec.message());
    }
    doClose();
  }

  beast::tcp_stream stream_;
  ServerCore& core_;
  const bool denied_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  bool first_request_ = true;
  bool closed_ = false;
  std::size_t lingered_ = 0;
};

/// Accepts connections on its own strand and starts a Session for each.
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

    if (core_.activeCount() >= core_.options.max_connections) {
      core_.rejected.fetch_add(1);
      beast::error_code ignored;
      socket.close(ignored);
    } else {
      const bool allowed = isAllowed(socket);
      if (!allowed) core_.denied.fetch_add(1);
      std::make_shared<Session>(std::move(socket), core_, !allowed)->start();
    }
    doAccept();
  }

  bool isAllowed(const tcp::socket& socket) {
    const HttpServerOptions& o = core_.options;
    if (o.allowed_ips.empty() && !o.accept_filter) return true;
    beast::error_code ec;
    const auto endpoint = socket.remote_endpoint(ec);
    if (ec) return false;  // peer already gone; the session will find out
    const PeerAddress peer = toPeerAddress(endpoint);
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
    {
      std::lock_guard<std::mutex> lock(core_.mutex);
      core_.stopping = true;
    }
    auto sessions = core_.liveSessions();
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
    // 4. Sessions that outlived the threads (handlers left in a stopped io_context) must
    //    not receive frames from a hub while the io_context is destroyed.
    for (auto& session : core_.liveSessions()) session->detach();
    core_.log->debug("HTTP server stopped");
  }

  std::uint16_t port() const { return port_.load(); }

  HttpServerStats stats() {
    HttpServerStats s;
    s.active_connections = core_.activeCount();
    s.rejected_connections = core_.rejected.load();
    s.denied_connections = core_.denied.load();
    s.accept_errors = core_.accept_errors.load();
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
        // Handlers do not throw by design (the router catches); log and keep serving.
        core_.log->error("HTTP server thread: {}", e.what());
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
