// SPDX-License-Identifier: MIT OR Apache-2.0
#include "http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ayaflow::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

int msLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(0, left.count()));
}

/// Waits for `events` on fd; throws on timeout.
void waitFor(int fd, short events, Clock::time_point deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, msLeft(deadline));
    if (rc > 0) return;
    if (rc == 0) throw std::runtime_error(std::string("HTTP client: timeout while ") + what);
    if (errno != EINTR)
      throw std::runtime_error(std::string("HTTP client: poll: ") + strerror(errno));
  }
}

std::string requestText(const std::string& method, const std::string& target,
                        const std::string& host_header, const HeaderList& extra_headers,
                        const std::string& body) {
  bool has_host = false, has_length = false;
  std::string text = method + " " + target + " HTTP/1.1\r\n";
  for (const auto& [name, value] : extra_headers) {
    const auto l = lower(name);
    has_host |= l == "host";
    has_length |= l == "content-length";
    text += name + ": " + value + "\r\n";
  }
  if (!has_host) text += "Host: " + host_header + "\r\n";
  if (!has_length && !body.empty())
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  text += "\r\n";
  text += body;
  return text;
}

}  // namespace

std::string HttpResult::header(const std::string& lower_case_name) const {
  const auto it = headers.find(lower_case_name);
  return it == headers.end() ? std::string{} : it->second;
}

HttpConnection::HttpConnection(const std::string& host, std::uint16_t port,
                               std::chrono::milliseconds timeout, const ConnectOptions& options) {
  const auto deadline = Clock::now() + timeout;
  const bool v6_literal = host.find(':') != std::string::npos;
  host_header_ = (v6_literal ? "[" + host + "]" : host) + ":" + std::to_string(port);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result); rc != 0) {
    throw std::runtime_error("HTTP client: cannot resolve " + host + ": " + gai_strerror(rc));
  }
  addrinfo* source = nullptr;
  if (!options.source_address.empty()) {
    addrinfo source_hints{};
    source_hints.ai_family = AF_UNSPEC;
    source_hints.ai_socktype = SOCK_STREAM;
    source_hints.ai_flags = AI_NUMERICHOST;
    if (const int rc =
            ::getaddrinfo(options.source_address.c_str(), nullptr, &source_hints, &source);
        rc != 0) {
      ::freeaddrinfo(result);
      throw std::runtime_error("HTTP client: bad source address " + options.source_address + ": " +
                               gai_strerror(rc));
    }
  }
  std::string last_error = "no address";
  for (addrinfo* ai = result; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    const int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = strerror(errno);
      continue;
    }
    if (options.receive_buffer > 0) {
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &options.receive_buffer,
                   sizeof options.receive_buffer);
    }
    if (source != nullptr) {
      if (source->ai_family != ai->ai_family ||
          ::bind(fd, source->ai_addr, source->ai_addrlen) != 0) {
        last_error = source->ai_family != ai->ai_family
                         ? std::string("source address family differs")
                         : std::string("bind ") + options.source_address + ": " + strerror(errno);
        ::close(fd);
        continue;
      }
    }
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, msLeft(deadline));
      if (ready == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        if (ready == 0) errno = ETIMEDOUT;
        rc = -1;
      }
    }
    if (rc == 0) {
      fd_ = fd;
    } else {
      last_error = strerror(errno);
      ::close(fd);
    }
  }
  ::freeaddrinfo(result);
  if (source != nullptr) ::freeaddrinfo(source);
  if (fd_ < 0)
    throw std::runtime_error("HTTP client: cannot connect to " + host_header_ + ": " + last_error);
}

HttpConnection::~HttpConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool HttpConnection::sendRaw(std::string_view data, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!data.empty()) {
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      waitFor(fd_, POLLOUT, deadline, "sending");
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;  // EPIPE / ECONNRESET: the server closed; its answer may still be readable
    }
  }
  return true;
}

std::size_t HttpConnection::fill(Clock::time_point deadline) {
  char chunk[16 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return static_cast<std::size_t>(n);
    }
    if (n == 0) return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      waitFor(fd_, POLLIN, deadline, "receiving");
    } else if (errno != EINTR) {
      if (errno == ECONNRESET) return 0;
      throw std::runtime_error(std::string("HTTP client: recv: ") + strerror(errno));
    }
  }
}

std::string HttpConnection::readLine(Clock::time_point deadline) {
  for (;;) {
    const auto pos = buffer_.find("\r\n");
    if (pos != std::string::npos) {
      std::string line = buffer_.substr(0, pos);
      buffer_.erase(0, pos + 2);
      return line;
    }
    if (fill(deadline) == 0)
      throw std::runtime_error("HTTP client: connection closed mid-response");
  }
}

std::string HttpConnection::readExactly(std::size_t n, Clock::time_point deadline) {
  while (buffer_.size() < n) {
    if (fill(deadline) == 0) throw std::runtime_error("HTTP client: connection closed mid-body");
  }
  std::string out = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return out;
}

HttpResult HttpConnection::readResponse(bool head_request, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  HttpResult result;
  const std::string status_line = readLine(deadline);
  // "HTTP/1.1 200 OK"
  if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12) {
    throw std::runtime_error("HTTP client: bad status line: " + status_line);
  }
  try {
    result.status = std::stoi(status_line.substr(9, 3));
  } catch (const std::exception&) {
    throw std::runtime_error("HTTP client: bad status line: " + status_line);
  }
  for (;;) {
    const std::string line = readLine(deadline);
    if (line.empty()) break;
    const auto colon = line.find(':');
    if (colon == std::string::npos) throw std::runtime_error("HTTP client: bad header: " + line);
    result.headers[lower(line.substr(0, colon))] = trim(std::string_view(line).substr(colon + 1));
  }

  const bool no_body =
      head_request || result.status / 100 == 1 || result.status == 204 || result.status == 304;
  if (no_body) return result;
  if (lower(result.header("transfer-encoding")).find("chunked") != std::string::npos) {
    for (;;) {
      const std::string size_line = readLine(deadline);
      const std::size_t size = std::stoul(size_line, nullptr, 16);
      if (size == 0) {
        while (!readLine(deadline).empty()) {  // trailers
        }
        break;
      }
      result.body += readExactly(size, deadline);
      readLine(deadline);
    }
  } else if (const auto length = result.headers.find("content-length");
             length != result.headers.end()) {
    result.body = readExactly(std::stoul(length->second), deadline);
  } else {
    while (fill(deadline) != 0) {
    }
    result.body = std::move(buffer_);
    buffer_.clear();
  }
  return result;
}

HttpResult HttpConnection::request(const std::string& method, const std::string& target,
                                   const HeaderList& extra_headers, const std::string& body,
                                   std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  // A failed send (server closed early, e.g. after a 413) still leaves its answer readable.
  sendRaw(requestText(method, target, host_header_, extra_headers, body), timeout);
  return readResponse(method == "HEAD", std::chrono::duration_cast<std::chrono::milliseconds>(
                                            deadline - Clock::now()));
}

bool HttpConnection::waitForClose(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  try {
    while (fill(deadline) != 0) buffer_.clear();
    return true;
  } catch (const std::runtime_error&) {
    return false;  // timeout
  }
}

std::string HttpConnection::takeBuffered() {
  std::string out = std::move(buffer_);
  buffer_.clear();
  return out;
}

HttpResult httpRequest(const std::string& host, std::uint16_t port, const std::string& method,
                       const std::string& target, const HeaderList& extra_headers,
                       const std::string& body, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  HttpConnection connection(host, port, timeout);
  const auto left = [&] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  };
  HeaderList headers = extra_headers;
  const bool has_connection = std::any_of(
      headers.begin(), headers.end(), [](const auto& h) { return lower(h.first) == "connection"; });
  if (!has_connection) headers.emplace_back("Connection", "close");
  return connection.request(method, target, headers, body, left());
}

HttpResult httpGet(const std::string& host, std::uint16_t port, const std::string& target,
                   std::chrono::milliseconds timeout) {
  return httpRequest(host, port, "GET", target, {}, {}, timeout);
}

HttpResult httpGetFrom(const std::string& source_address, const std::string& host,
                       std::uint16_t port, const std::string& target,
                       std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  ConnectOptions options;
  options.source_address = source_address;
  HttpConnection connection(host, port, timeout, options);
  const auto left =
      std::max(std::chrono::milliseconds(0),
               std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  return connection.request("GET", target, {{"Connection", "close"}}, {}, left);
}

}  // namespace ayaflow::test
