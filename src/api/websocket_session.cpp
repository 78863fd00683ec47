// SPDX-License-Identifier: MIT OR Apache-2.0
// WebSocket sessions of /api/stream (Boost.Beast websocket): a bounded frame queue per
// client fed by a StreamHub (boostorg/beast/example/websocket/server/chat-multi, bounded).
#include "websocket_session.h"

#include <chrono>
#include <deque>
#include <memory>
#include <string>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

namespace ayaflow::api::detail {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

/// Time to complete the opening handshake; time a graceful close (1001) may take before the
/// socket is closed outright.
constexpr std::chrono::seconds kWsHandshakeTimeout{5};
constexpr std::chrono::seconds kWsCloseTimeout{1};

/// One WebSocket client of a StreamHub (/api/stream). Every member is touched only
/// on the connection's strand, except executor_ (immutable) and deliver(), which only posts.
/// Frames are written one at a time from queue_, which holds at most hub.queueLimit()
/// frames including the one being written; a frame arriving at a full queue closes the
/// connection (a client that stopped reading must not hold memory or slow anyone).
class WebSocketSession : public Connection,
                         public StreamHub::Subscriber,
                         public std::enable_shared_from_this<WebSocketSession> {
 public:
  WebSocketSession(beast::tcp_stream&& stream, ServerCore& core, StreamHub& hub)
      : ws_(std::move(stream)),
        executor_(ws_.get_executor()),
        core_(core),
        hub_(hub),
        close_timer_(executor_) {}

  ~WebSocketSession() override {
    hub_.unsubscribe(this);
    core_.admission.unregisterSession(this);
  }

  /// On the connection's strand, the upgrade request already read: answers 101.
  void start(http::request<http::string_body>&& req, const Connection* from) {
    if (!core_.admission.transfer(from, this, weak_from_this())) return;  // stopping: socket closes
    // The websocket stream enforces its own timeouts; the tcp_stream's must be off.
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = kWsHandshakeTimeout;  // also bounds the closing handshake
    timeouts.idle_timeout = core_.options.idle_timeout;
    timeouts.keep_alive_pings = true;  // ping at idle/2; no answer by idle: closed
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& res) {
      res.set(http::field::server, "ayaflow");
      if (res.result() != http::status::switching_protocols) {
        // Beast's refusals are plain text; every error of this API is JSON.
        res.set(http::field::content_type, "application/json");
        res.body() = jsonError(res.result_int(), "websocket handshake failed").body;
        res.prepare_payload();
      }
    }));
    // Clients only listen: a message above the limit closes the session (1009).
    ws_.read_message_max(core_.options.websocket_message_limit);
    ws_.async_accept(req,
                     beast::bind_front_handler(&WebSocketSession::onAccept, shared_from_this()));
  }

  void closeFromServer() override {
    net::post(executor_, [self = shared_from_this()] { self->doShutdown(); });
  }

  void detach() override { hub_.unsubscribe(this); }

  /// Hub thread, hub mutex held: hand the frame to the strand and return at once.
  void deliver(const std::shared_ptr<const std::string>& frame) override {
    net::post(executor_, [self = shared_from_this(), frame] { self->onFrame(frame); });
  }

 private:
  void onAccept(beast::error_code ec) {
    if (ec) return fail(ec, "websocket handshake");
    core_.countResponse(101);
    if (closing_ || closed_) return hardClose();  // stop() came during the handshake
    open_ = true;
    hub_.subscribe(shared_from_this());  // delivers the latest frame, if any
    doRead();
  }

  // Clients only listen; their messages are read (so pings, pongs and close frames are
  // processed) and discarded.
  void doRead() {
    ws_.async_read(read_buffer_,
                   beast::bind_front_handler(&WebSocketSession::onRead, shared_from_this()));
  }

  void onRead(beast::error_code ec, std::size_t /*bytes*/) {
    if (ec) return fail(ec, "websocket read");  // closed by the client, idle timeout, reset
    read_buffer_.consume(read_buffer_.size());
    doRead();
  }

  void onFrame(const std::shared_ptr<const std::string>& frame) {
    if (!open_ || closing_ || closed_) return;
    if (queue_.size() >= hub_.queueLimit()) {
      hub_.recordDropped();
      core_.log->debug("stream client too slow ({} frames queued): closed", queue_.size());
      return hardClose();
    }
    queue_.push_back(frame);
    if (!writing_) doWrite();
  }

  void doWrite() {
    writing_ = true;
    ws_.text(true);
    ws_.async_write(net::buffer(*queue_.front()),
                    beast::bind_front_handler(&WebSocketSession::onWrite, shared_from_this()));
  }

  void onWrite(beast::error_code ec, std::size_t /*bytes*/) {
    writing_ = false;
    if (ec) return fail(ec, "websocket write");
    queue_.pop_front();
    hub_.recordSent();
    if (closed_) return;
    if (closing_) {
      if (queue_.empty()) doCloseFrame();
      return;
    }
    if (!queue_.empty()) doWrite();
  }

  /// stop(): finish the frame being written, send a close frame (1001 going away), and
  /// close the socket when the peer answers or after kWsCloseTimeout, whichever is first.
  void doShutdown() {
    if (closing_ || closed_) return;
    closing_ = true;
    if (!open_) return hardClose();
    while (queue_.size() > (writing_ ? 1u : 0u)) queue_.pop_back();
    close_timer_.expires_after(kWsCloseTimeout);
    close_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->hardClose();
    });
    if (!writing_) doCloseFrame();
  }

  void doCloseFrame() {
    ws_.async_close(websocket::close_code::going_away,
                    beast::bind_front_handler(&WebSocketSession::onClose, shared_from_this()));
  }

  void onClose(beast::error_code /*ec*/) { hardClose(); }

  void hardClose() {
    if (closed_) return;
    closed_ = true;
    hub_.unsubscribe(this);  // no more frames
    close_timer_.cancel();
    // Cancels the pending read and write; their handlers release the last references.
    // queue_ is left alone: a write in flight still points into its front frame.
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(ws_).close();
  }

  void fail(beast::error_code ec, const char* what) {
    if (ec != net::error::operation_aborted && ec != websocket::error::closed) {
      core_.log->debug("websocket {}: {}", what, ec.message());
    }
    hardClose();
  }

  websocket::stream<beast::tcp_stream> ws_;
  const net::any_io_executor executor_;  // the connection's strand
  ServerCore& core_;
  StreamHub& hub_;
  net::steady_timer close_timer_;
  beast::flat_buffer read_buffer_;
  std::deque<std::shared_ptr<const std::string>> queue_;
  bool open_ = false;     // handshake done, subscribed
  bool writing_ = false;  // an async_write is in flight (on queue_.front())
  bool closing_ = false;  // stop(): close frame pending
  bool closed_ = false;   // socket closed
};

}  // namespace

void startWebSocketSession(beast::tcp_stream&& stream, ServerCore& core, StreamHub& hub,
                           http::request<http::string_body>&& req, const Connection* from) {
  std::make_shared<WebSocketSession>(std::move(stream), core, hub)->start(std::move(req), from);
}

}  // namespace ayaflow::api::detail
