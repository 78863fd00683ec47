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

using namespace std::chrono_literals;
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

/// A denied client's only answer, written at accept without waiting.
constexpr std::string_view kForbidden =
    "HTTP/1.1 403 Forbidden\r\nServer: ayaflow\r\nContent-Type: application/json\r\n"
    "Cache-Control: no-store\r\nContent-Length: 21\r\nConnection: close\r\n\r\n"
    "{\"error\":\"forbidden\"}";
/// Beast stores a header or trailer field in 16-bit offsets and throws std::length_error on
/// a field of 64 KiB or more (inside async_read, where nothing can catch it per session):
/// the read buffer must never hold that much.
constexpr std::size_t kMaxHeaderLimit = 60 * 1024;
constexpr std::size_t kMinHeaderLimit = 1024;

std::size_t headerLimit(const HttpServerOptions& o) {
  return std::clamp(o.header_limit, kMinHeaderLimit, kMaxHeaderLimit);
}

/// The read buffer's maximum: one header block plus one read. A chunk line (size and
/// extensions) or a trailer that does not fit ends the request with buffer_overflow.
std::size_t readBufferLimit(const HttpServerOptions& o) { return headerLimit(o) + kReadChunk; }

/// True when `s` (the unparsed input after a chunk's data) starts with the last chunk
/// ("0", maybe with extensions, then CRLF): what follows is the trailer.
bool atLastChunk(std::string_view s) {
  if (s.substr(0, 2) == "\r\n") s.remove_prefix(2);
  const auto eol = s.find("\r\n");
  if (eol == std::string_view::npos) return false;
  const auto size_end = s.find_first_of("; \t\r");
  const std::string_view size = s.substr(0, size_end);
  return !size.empty() && size.find_first_not_of('0') == std::string_view::npos;
}

/// Checks a WebSocket opening handshake as Beast's accept would, so that every refusal is
/// our JSON answer rather than Beast's plain text. nullopt: acceptable.
std::optional<Response> checkHandshake(const http::request<http::string_body>& req) {
  if (req.version() != 11) return jsonError(400, "websocket handshake: HTTP/1.1 required");
  if (req.find(http::field::host) == req.end()) {
    return jsonError(400, "websocket handshake: missing Host");
  }
  const auto key = req.find(http::field::sec_websocket_key);
  if (key == req.end()) return jsonError(400, "websocket handshake: missing Sec-WebSocket-Key");
  const std::string_view key_text = toStd(key->value());
  if (key_text.size() != 24 ||
      key_text.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                                 "=") != std::string_view::npos) {
    return jsonError(400, "websocket handshake: malformed Sec-WebSocket-Key");
  }
  const auto version = req.find(http::field::sec_websocket_version);
  if (version == req.end() || toStd(version->value()) != "13") {
    Response r = jsonError(426, "websocket handshake: Sec-WebSocket-Version 13 required");
    r.headers.emplace_back("Sec-WebSocket-Version", "13");
    return r;
  }
  return std::nullopt;
}

Response busy(std::string_view message, std::chrono::seconds retry_after) {
  Response r = jsonError(503, message);
  r.headers.emplace_back("Retry-After", std::to_string(retry_after.count()));
  return r;
}

/// One HTTP/1.1 connection. Every member is touched only on the connection's strand
/// (executor_), except executor_ itself (immutable); the session lives as long as an async
/// operation or a pending handler timer holds it.
class Session : public Connection, public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ServerCore& core)
      : stream_(std::move(socket)),
        executor_(stream_.get_executor()),
        core_(core),
        buffer_(readBufferLimit(core.options)),
        handler_timer_(executor_) {
    on_chunk_header_ = [this](std::uint64_t /*size*/, beast::string_view extensions,
                              beast::error_code& ec) {
      chunk_extension_bytes_ += extensions.size();
      if (chunk_extension_bytes_ > core_.options.max_chunk_extension_bytes) {
        chunk_extension_over_ = true;
        ec = http::error::bad_chunk_extension;
      }
    };
  }

  ~Session() override {
    core_.releaseResponseBytes(held_bytes_);
    core_.admission.unregisterSession(this);
  }

  /// On the listener's strand, right after admission into `pool`.
  void start(detail::Pool pool) {
    reserve_ = pool == detail::Pool::kReserve;
    if (reserve_) deadline_ = detail::Clock::now() + core_.options.reserve_timeout;
    net::dispatch(executor_, beast::bind_front_handler(&Session::doRead, shared_from_this()));
  }

  /// On the listener's strand: the connection was not admitted; nothing was started.
  void abandon() {
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }

  /// Called by stop() and eviction from any thread: closes on the session's own strand.
  void closeFromServer() override {
    net::post(executor_, [self = shared_from_this()] { self->doClose(); });
  }

 private:
  void setDeadline(std::chrono::seconds timeout) {
    if (reserve_) {
      stream_.expires_at(deadline_);  // one deadline for everything a reserve slot does
    } else {
      stream_.expires_after(timeout);
    }
  }

  void doRead() {
    if (closed_) return;
    core_.admission.setState(this, detail::ConnState::kWaiting);
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(headerLimit(core_.options)));
    parser_->body_limit(core_.options.body_limit);
    parser_->on_chunk_header(on_chunk_header_);
    chunk_extension_bytes_ = 0;
    chunk_extension_over_ = false;
    if (first_request_ || buffer_.size() != 0) {
      doReadRequest();
      return;
    }
    // Keep-alive: wait for the next request's first bytes under the idle timeout, then
    // give the whole request read_timeout.
    setDeadline(core_.options.idle_timeout);
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
    setDeadline(core_.options.read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::onRead, shared_from_this()));
  }

  void onRead(beast::error_code ec, std::size_t /*bytes*/) {
    using detail::RequestError;
    if (ec == http::error::end_of_stream) return doClose();    // client closed between requests
    if (ec == http::error::partial_message) return doClose();  // EOF mid-request
    if (ec == beast::error::timeout) {
      core_.countRequestError(RequestError::kTimeout);
      return fail(ec, "read");
    }
    if (ec == http::error::header_limit) {
      return reject(RequestError::kHeaderLimit, 431, "request header fields too large");
    }
    if (ec == http::error::body_limit) {
      return reject(RequestError::kBodyLimit, 413, "payload too large");
    }
    if (ec == http::error::buffer_overflow) return onBufferFull();
    if (ec == http::error::bad_chunk_extension && chunk_extension_over_) {
      return reject(RequestError::kChunkExtension, 400, "chunk extensions too long");
    }
    if (ec && isHttpParseError(ec)) {
      return reject(RequestError::kBadRequest, 400, "bad request", ec.message());
    }
    if (ec) return fail(ec, "read");  // reset, closed by stop() or eviction
    const auto& fields = parser_->get();
    if (static_cast<std::size_t>(std::distance(fields.begin(), fields.end())) >
        core_.options.max_header_fields) {
      return reject(RequestError::kHeaderCount, 431, "too many header fields");
    }
    handleRequest(parser_->release());
  }

  /// The read buffer filled up without the parser finding the end of what it reads: a
  /// header block (431), a trailer (431) or a chunk line with huge extensions (400).
  void onBufferFull() {
    using detail::RequestError;
    if (!parser_->is_header_done()) {
      return reject(RequestError::kHeaderLimit, 431, "request header fields too large");
    }
    const auto data = buffer_.cdata();
    if (atLastChunk({static_cast<const char*>(data.data()), data.size()})) {
      return reject(RequestError::kTrailer, 431, "trailer fields too large");
    }
    return reject(RequestError::kChunkExtension, 400, "chunk line too long");
  }

  /// A request refused before routing: counted, logged (rate-limited), answered, closed.
  void reject(detail::RequestError reason, unsigned status, std::string_view message,
              std::string_view detail = {}) {
    core_.countRequestError(reason);
    std::string what = std::to_string(status) + " " + std::string(message);
    if (!detail.empty()) what += " (" + std::string(detail) + ")";
    core_.request_log.log(*core_.log, spdlog::level::warn, "HTTP request refused", what);
    sendError(status, message);
  }

  void handleRequest(http::request<http::string_body>&& req) {
    core_.admission.setState(this, detail::ConnState::kBusy);
    const std::string_view target = toStd(req.target());
    reply_version_ = req.version();
    reply_keep_alive_ = req.keep_alive() && !reserve_;
    reply_head_ = req.method() == http::verb::head;
    reply_api_ = target.rfind("/api/", 0) == 0;

    auto request =
        parseTarget(std::string(toStd(req.method_string())), target, std::move(req.body()));
    if (!request) {
      core_.countRequestError(detail::RequestError::kBadRequest);
      return answer(jsonError(400, "bad request target"));
    }
    if (reserve_ && !reservedRequest(*request)) {
      core_.reserve_refused.fetch_add(1, std::memory_order_relaxed);
      return answer(busy("server busy: only health and metrics are served now", 1s));
    }
    if (websocket::is_upgrade(req)) {
      if (StreamHub* hub = core_.router.webSocket(request->path)) {
        if (auto refusal = checkHandshake(req)) {
          core_.countRequestError(detail::RequestError::kWebSocket);
          core_.request_log.log(*core_.log, spdlog::level::warn, "WebSocket handshake refused",
                                refusal->body);
          return answer(std::move(*refusal));
        }
        return upgrade(std::move(req), *hub);
      }
    }

    // The answer may come now (synchronous routes) or from another thread later (history):
    // either way it is posted back to this strand. `pending` makes it count once, whether
    // it or the handler timeout comes first.
    const std::uint64_t seq = ++seq_;
    awaiting_ = true;
    auto pending = std::make_shared<std::atomic<bool>>(false);
    pending_ = pending;
    Respond respond = [weak = weak_from_this(), gate = core_.gate, pending,
                       seq](Response response) {
      if (pending->exchange(true)) return;
      gate->run([&] {
        if (auto self = weak.lock()) {
          net::post(self->executor_, [self, seq, response = std::move(response)]() mutable {
            self->onAnswer(seq, std::move(response));
          });
        }
      });
    };
    core_.router.dispatch(*request, std::move(respond));
    if (!pending->load()) {
      // Still running elsewhere: the timer keeps this session alive until it answers.
      handler_timer_.expires_after(core_.options.handler_timeout);
      handler_timer_.async_wait(
          beast::bind_front_handler(&Session::onHandlerTimeout, shared_from_this(), seq));
    }
  }

  bool reservedRequest(const Request& request) const {
    if (request.method != "GET" && request.method != "HEAD") return false;
    const auto& paths = core_.options.reserved_paths;
    return std::find(paths.begin(), paths.end(), request.path) != paths.end();
  }

  void onAnswer(std::uint64_t seq, Response&& response) {
    if (closed_ || !awaiting_ || seq != seq_) return;  // closed meanwhile, or timed out
    awaiting_ = false;
    handler_timer_.cancel();
    answer(std::move(response));
  }

  void onHandlerTimeout(std::uint64_t seq, beast::error_code ec) {
    if (ec || closed_ || !awaiting_ || seq != seq_) return;
    if (pending_->exchange(true)) return;  // the answer is on its way to onAnswer()
    awaiting_ = false;
    core_.handler_timeouts.fetch_add(1, std::memory_order_relaxed);
    Response r = jsonError(504, "request took too long");
    r.headers.emplace_back("Retry-After", "5");
    answer(std::move(r));
  }

  /// Writes `response` to the request being served, then reads the next one or closes.
  void answer(Response&& response) {
    // Large answers to clients that read slowly must not pile up in memory: past the
    // server-wide budget the answer becomes a small 503.
    const std::size_t size = reply_head_ ? 0 : response.body.size();
    if (!core_.acquireResponseBytes(size)) {
      core_.responses_shed.fetch_add(1, std::memory_order_relaxed);
      response = busy("server busy: too many large answers being sent", 1s);
      core_.acquireResponseBytes(response.body.size());  // small: always granted
      held_bytes_ = response.body.size();
    } else {
      held_bytes_ = size;
    }
    prepareResponse(std::move(response), reply_version_, reply_keep_alive_, reply_head_,
                    reply_api_);
    doWrite(reply_keep_alive_ ? AfterWrite::kNextRequest : AfterWrite::kClose);
  }

  /// Hands the connection to a WebSocketSession, which takes over this connection's slot.
  /// Bytes the client sent after the upgrade request, before our 101, are dropped (a client
  /// must wait for the 101 anyway).
  void upgrade(http::request<http::string_body>&& req, StreamHub& hub) {
    closed_ = true;  // stream_ is moved out: doClose() must not touch it any more
    detail::startWebSocketSession(std::move(stream_), core_, hub, std::move(req), this);
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
    setDeadline(core_.options.idle_timeout);
    http::async_write(stream_, res_,
                      beast::bind_front_handler(&Session::onWrite, shared_from_this(), after));
  }

  void onWrite(AfterWrite after, beast::error_code ec, std::size_t /*bytes*/) {
    core_.releaseResponseBytes(held_bytes_);
    held_bytes_ = 0;
    res_.body() = {};  // the memory goes with the accounting
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
    handler_timer_.cancel();  // releases a session waiting for an asynchronous answer
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
  const net::any_io_executor executor_;  // the connection's strand
  ServerCore& core_;
  beast::flat_buffer buffer_;  // bounded: readBufferLimit()
  std::optional<http::request_parser<http::string_body>> parser_;
  std::function<void(std::uint64_t, beast::string_view, beast::error_code&)> on_chunk_header_;
  std::size_t chunk_extension_bytes_ = 0;
  bool chunk_extension_over_ = false;
  http::response<http::string_body> res_;
  net::steady_timer handler_timer_;             // handler_timeout of an asynchronous route
  std::uint64_t seq_ = 0;                       // requests dispatched so far
  bool awaiting_ = false;                       // request seq_ dispatched, not answered yet
  std::shared_ptr<std::atomic<bool>> pending_;  // request seq_ answered (or timed out)
  unsigned reply_version_ = 11;
  bool reply_keep_alive_ = false;
  bool reply_head_ = false;
  bool reply_api_ = false;
  std::size_t held_bytes_ = 0;          // response body bytes counted in core_'s budget
  bool reserve_ = false;                // admitted into the reserve: one request, reserved paths
  detail::Clock::time_point deadline_;  // a reserve connection's whole deadline
  bool first_request_ = true;
  bool closed_ = false;
  std::size_t lingered_ = 0;
};

/// Accepts connections on its own strand, applies the allowlist and admission (see the
/// HttpServer comment) and starts a Session for each connection let in.
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
    auto session = std::make_shared<Session>(std::move(socket), core_);
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
