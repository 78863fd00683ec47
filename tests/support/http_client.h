// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ayaflow::test {

using namespace std::chrono_literals;

/// One HTTP response. Header names are lower-cased; a repeated header keeps the last value.
struct HttpResult {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;

  /// Value of header `lower_case_name`, or "" when absent.
  std::string header(const std::string& lower_case_name) const;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

/// How a client socket is set up before connect().
struct ConnectOptions {
  /// Local address to bind before connecting ("127.0.0.2", "::1"); empty: the kernel picks.
  std::string source_address;
  /// SO_RCVBUF in bytes before connect (a small window makes a client that never reads
  /// fill up quickly); 0 keeps the default.
  int receive_buffer = 0;
};

/// One-shot GET with `Connection: close`. Throws std::runtime_error on resolve/connect
/// failure, timeout (the whole exchange), or a malformed response.
HttpResult httpGet(const std::string& host, std::uint16_t port, const std::string& target,
                   std::chrono::milliseconds timeout = 5s);

/// httpGet() from a given local address (ConnectOptions::source_address).
HttpResult httpGetFrom(const std::string& source_address, const std::string& host,
                       std::uint16_t port, const std::string& target,
                       std::chrono::milliseconds timeout = 5s);

/// One-shot request with `Connection: close` (plus Host and, with a body, Content-Length,
/// unless given in `extra_headers`). Same errors as httpGet.
HttpResult httpRequest(const std::string& host, std::uint16_t port, const std::string& method,
                       const std::string& target, const HeaderList& extra_headers = {},
                       const std::string& body = {}, std::chrono::milliseconds timeout = 5s);

/// A blocking client connection (raw POSIX socket) for keep-alive, raw bytes and
/// close-detection tests. Not thread-safe; one per thread. Throws std::runtime_error on
/// connect failure or timeout.
class HttpConnection {
 public:
  HttpConnection(const std::string& host, std::uint16_t port,
                 std::chrono::milliseconds timeout = 5s, const ConnectOptions& options = {});
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  /// Sends bytes as-is. Returns false if the peer has closed or reset the connection.
  bool sendRaw(std::string_view data, std::chrono::milliseconds timeout = 5s);

  /// Sends a request (keep-alive unless `extra_headers` says otherwise) and reads the answer.
  HttpResult request(const std::string& method, const std::string& target,
                     const HeaderList& extra_headers = {}, const std::string& body = {},
                     std::chrono::milliseconds timeout = 5s);

  /// Reads one response. `head_request`: the response has no body whatever its headers say.
  HttpResult readResponse(bool head_request = false, std::chrono::milliseconds timeout = 5s);

  /// Waits until the peer closes (EOF or reset), discarding data. true if closed within
  /// `timeout`.
  bool waitForClose(std::chrono::milliseconds timeout);

  /// The socket (non-blocking), still owned by this object.
  int fd() const { return fd_; }
  /// Bytes received but not consumed by readResponse() (e.g. WebSocket frames that came
  /// right behind a 101); the internal buffer is left empty.
  std::string takeBuffered();

 private:
  std::size_t fill(std::chrono::steady_clock::time_point deadline);  // 0 on EOF
  std::string readLine(std::chrono::steady_clock::time_point deadline);
  std::string readExactly(std::size_t n, std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string host_header_;
  std::string buffer_;  // received, not yet consumed
};

}  // namespace ayaflow::test
