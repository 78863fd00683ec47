// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_export: a blocking HTTP/1.1 client for ClickHouse's HTTP interface, the
// one place that includes Boost.Beast (and OpenSSL for https), so the sink's code stays free
// of both. Keeps one connection alive between requests.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

namespace ayaflow::exporter::detail {

/// Where requests go, parsed from http://host:port or https://host:port.
struct HttpTarget {
  bool tls = false;
  std::string host;
  std::string port;
  /// Throws std::invalid_argument for anything else (a path, user info, another scheme).
  static HttpTarget parse(const std::string& url);
};

/// What the server answered.
struct HttpAnswer {
  int status = 0;
  std::string body;
};

/// The request could not be completed. `maybe_delivered`: the request was (at least partly)
/// written before the failure, so the server may have acted on it.
class HttpFailure : public std::runtime_error {
 public:
  HttpFailure(const std::string& what, bool maybe_delivered)
      : std::runtime_error(what), maybe_delivered_(maybe_delivered) {}
  bool maybeDelivered() const noexcept { return maybe_delivered_; }

 private:
  bool maybe_delivered_;
};

class HttpPoster {
 public:
  /// `authorization`: the Authorization header's value ("" for none). `ca_file`: https only.
  HttpPoster(HttpTarget target, std::string authorization, std::string ca_file,
             std::chrono::milliseconds timeout);
  ~HttpPoster();
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  /// POSTs `body` to `target` ("/?query=..."), the whole exchange within the timeout.
  /// Throws HttpFailure when no answer came (the connection is then closed).
  HttpAnswer post(const std::string& target, const std::string& body);
  /// Closes the connection (the next post() opens a new one).
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// "Basic base64(user:password)", or "" when both are empty.
std::string basicAuthorization(const std::string& user, const std::string& password);
/// Percent-encodes a query parameter's value.
std::string urlEncode(const std::string& text);

}  // namespace ayaflow::exporter::detail
