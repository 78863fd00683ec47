// SPDX-License-Identifier: MIT OR Apache-2.0
// The HTTP session: one of the two translation units that include Boost.Beast's HTTP and
// WebSocket parts (slow to compile; websocket_session.cpp is the other). Structure follows
// boostorg/beast/example/advanced/server/advanced_server.cpp: one Session per connection whose
// async steps are doX()/onX() pairs, each bounded by a tcp_stream deadline. An upgrade request
// on a WebSocket path hands the connection to a WebSocket session (websocket_session.h).
#include "http_session.h"

// Boost 1.74 + C++20: <utility> must come before Asio, or awaitable.hpp misses std::exchange.
#include <utility>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "ayaflow/api/stream_hub.h"
#include "ayaflow/common/logging.h"
#include "websocket_session.h"

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using detail::kReadChunk;
using detail::ServerCore;

/// After an error answer the rest of the request is still in flight; reading (and
/// discarding) it before closing avoids a TCP reset that would destroy the answer in the
/// client's receive buffer. Bounded in bytes and time.
constexpr std::size_t kLingerMaxBytes = 1 << 20;
constexpr std::chrono::seconds kLingerTimeout{2};

std::string_view toStd(beast::string_view s) { return {s.data(), s.size()}; }

bool isHttpParseError(const beast::error_code& ec) {
  return &ec.category() == &http::make_error_code(http::error::bad_method).category();
}

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
class Session final : public detail::HttpSession, public std::enable_shared_from_this<Session> {
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

  void start(detail::Pool pool) override {
    reserve_ = pool == detail::Pool::kReserve;
    if (reserve_) deadline_ = detail::Clock::now() + core_.options.reserve_timeout;
    net::dispatch(executor_, beast::bind_front_handler(&Session::doRead, shared_from_this()));
  }

  void abandon() override {
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

}  // namespace

std::shared_ptr<detail::HttpSession> detail::HttpSession::create(tcp::socket&& socket,
                                                                 ServerCore& core) {
  return std::make_shared<Session>(std::move(socket), core);
}

}  // namespace ayaflow::api
