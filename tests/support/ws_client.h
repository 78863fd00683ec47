// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "http_client.h"

namespace ayaflow::test {

/// One WebSocket message as a client sees it.
struct WsMessage {
  int opcode = 0;  ///< 1 text, 2 binary, 8 close
  std::string payload;
  /// For a close frame: the status code (1001 going away...), 1005 when none was sent.
  std::uint16_t closeCode() const;
};

/// A minimal RFC 6455 client on a raw socket (independent of Beast, so it checks the
/// server's wire format): opening handshake with Sec-WebSocket-Accept verified, unmasked
/// server frames (fragmented ones reassembled), masked client frames, pings answered with
/// pongs and a close frame answered with a close frame. Not thread-safe; non-blocking
/// socket, so many clients can share one poll() loop (fd() + pump()). Throws
/// std::runtime_error on connect failure, a protocol violation or timeout.
class WsClient {
 public:
  /// Connects and sends the upgrade request for `target`; reads the answer. When the
  /// server refuses (403, 426...), handshake() holds that answer and isOpen() is false.
  WsClient(const std::string& host, std::uint16_t port, const std::string& target = "/api/stream",
           std::chrono::milliseconds timeout = 5s, const ConnectOptions& options = {});

  const HttpResult& handshake() const { return handshake_; }
  bool isOpen() const { return handshake_.status == 101; }
  int fd() const { return connection_->fd(); }

  /// Reads whatever is available without blocking and parses it. Returns false once the
  /// server has closed the TCP connection (EOF or reset).
  bool pump();
  /// The next complete message received, if any (after pump()).
  std::optional<WsMessage> next();
  /// Waits up to `timeout` for the next message; nullopt on timeout or EOF.
  std::optional<WsMessage> read(std::chrono::milliseconds timeout);
  /// True once the server closed the TCP connection.
  bool eof() const { return eof_; }
  /// Waits up to `timeout` for EOF, reading (and answering) everything before it.
  bool waitForEof(std::chrono::milliseconds timeout);

  void sendText(std::string_view text);
  void sendClose(std::uint16_t code = 1000);

 private:
  void sendFrame(int opcode, std::string_view payload);
  void parse();

  std::unique_ptr<HttpConnection> connection_;
  HttpResult handshake_;
  std::string in_;        // received, not parsed yet
  std::string fragment_;  // payload of an unfinished fragmented message
  int fragment_opcode_ = 0;
  std::deque<WsMessage> messages_;
  bool eof_ = false;
  bool close_sent_ = false;
};

/// base64(SHA-1(key + RFC 6455 GUID)): the Sec-WebSocket-Accept value for `key`.
std::string webSocketAccept(std::string_view key);

}  // namespace ayaflow::test
