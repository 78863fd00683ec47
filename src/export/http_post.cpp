// SPDX-License-Identifier: MIT OR Apache-2.0
// HttpPoster: Boost.Beast over a tcp_stream (or an SSL stream on top of it). Every operation
// is asynchronous with the stream's deadline and run to completion on a private io_context,
// so a server that accepts and never answers costs at most the timeout.
#include "http_post.h"

// Boost 1.74 Asio uses std::exchange without including <utility> (C++20).
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>

namespace ayaflow::exporter::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

HttpTarget HttpTarget::parse(const std::string& url) {
  HttpTarget t;
  std::string rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    t.tls = true;
    rest = url.substr(8);
  } else {
    throw std::invalid_argument("'" + url + "' is not an http:// or https:// URL");
  }
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find_first_of("/@?#") != std::string::npos) {
    throw std::invalid_argument("'" + url + "' must be scheme://host[:port] (no path)");
  }
  std::size_t colon = std::string::npos;
  if (rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string::npos) throw std::invalid_argument("'" + url + "': unclosed [");
    t.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') throw std::invalid_argument("'" + url + "': bad port");
      colon = close + 1;
    }
  } else {
    colon = rest.rfind(':');
    t.host = rest.substr(0, colon);
  }
  t.port = colon == std::string::npos ? (t.tls ? "8443" : "8123") : rest.substr(colon + 1);
  if (t.host.empty() || t.port.empty() ||
      t.port.find_first_not_of("0123456789") != std::string::npos) {
    throw std::invalid_argument("'" + url + "': bad host or port");
  }
  return t;
}

struct HttpPoster::Impl {
  HttpTarget target;
  std::string authorization;
  std::chrono::milliseconds timeout;
  asio::io_context io{1};
  std::optional<asio::ssl::context> ssl_ctx;
  // Exactly one of them is open while connected.
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;

  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
  bool connected() const { return plain.has_value() || secure.has_value(); }

  /// Runs the queued operations to completion (each bounded by the stream's deadline).
  void run() {
    io.restart();
    io.run();
  }

  void connect() {
    beast::error_code ec;
    tcp::resolver resolver(io);
    tcp::resolver::results_type endpoints;
    resolver.async_resolve(target.host, target.port,
                           [&](beast::error_code e, tcp::resolver::results_type r) {
                             ec = e;
                             endpoints = std::move(r);
                           });
    run();
    if (ec) throw HttpFailure("resolve " + target.host + ": " + ec.message(), false);
    if (target.tls) {
      secure.emplace(io, *ssl_ctx);
      if (!SSL_set_tlsext_host_name(secure->native_handle(), target.host.c_str())) {
        secure.reset();
        throw HttpFailure("TLS: cannot set the server name", false);
      }
      secure->set_verify_callback(asio::ssl::host_name_verification(target.host));
    } else {
      plain.emplace(io);
    }
    lowest().expires_after(timeout);
    lowest().async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    run();
    if (ec) {
      close();
      throw HttpFailure("connect " + target.host + ":" + target.port + ": " + ec.message(), false);
    }
    if (secure) {
      lowest().expires_after(timeout);
      secure->async_handshake(asio::ssl::stream_base::client, [&](beast::error_code e) { ec = e; });
      run();
      if (ec) {
        close();
        throw HttpFailure("TLS handshake with " + target.host + ": " + ec.message(), false);
      }
    }
  }

  void close() {
    beast::error_code ignored;
    if (plain) plain->socket().shutdown(tcp::socket::shutdown_both, ignored);
    if (secure) beast::get_lowest_layer(*secure).socket().close(ignored);
    plain.reset();
    secure.reset();
    buffer.clear();
  }

  template <typename Stream>
  HttpAnswer exchange(Stream& stream, http::request<http::string_body>& req) {
    beast::error_code ec;
    std::size_t written = 0;
    lowest().expires_after(timeout);
    http::async_write(stream, req, [&](beast::error_code e, std::size_t n) {
      ec = e;
      written = n;
    });
    run();
    if (ec) {
      close();
      // A reused connection the server closed meanwhile fails before anything is taken;
      // still, bytes may have gone out: the caller checks before resending.
      throw HttpFailure("send: " + ec.message(), true);
    }
    http::response<http::string_body> res;
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    lowest().expires_after(timeout);
    http::async_read(stream, buffer, parser, [&](beast::error_code e, std::size_t) { ec = e; });
    run();
    if (ec) {
      close();
      throw HttpFailure("answer: " + ec.message(), written > 0);
    }
    res = parser.release();
    HttpAnswer answer{static_cast<int>(res.result_int()), std::move(res.body())};
    if (!res.keep_alive()) close();
    return answer;
  }
};

HttpPoster::HttpPoster(HttpTarget target, std::string authorization, std::string ca_file,
                       std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
  impl_->target = std::move(target);
  impl_->authorization = std::move(authorization);
  impl_->timeout = timeout;
  if (impl_->target.tls) {
    impl_->ssl_ctx.emplace(asio::ssl::context::tls_client);
    impl_->ssl_ctx->set_verify_mode(asio::ssl::verify_peer);
    if (ca_file.empty()) {
      impl_->ssl_ctx->set_default_verify_paths();
    } else {
      impl_->ssl_ctx->load_verify_file(ca_file);  // throws on a bad file: a start-up error
    }
  }
}

HttpPoster::~HttpPoster() { close(); }

HttpAnswer HttpPoster::post(const std::string& target, const std::string& body) {
  Impl& s = *impl_;
  if (!s.connected()) s.connect();
  http::request<http::string_body> req{http::verb::post, target, 11};
  req.set(http::field::host, s.target.host + ":" + s.target.port);
  req.set(http::field::user_agent, "ayaflow");
  req.set(http::field::content_type, "application/octet-stream");
  if (!s.authorization.empty()) req.set(http::field::authorization, s.authorization);
  req.keep_alive(true);
  req.body() = body;
  req.prepare_payload();
  if (s.secure) return s.exchange(*s.secure, req);
  return s.exchange(*s.plain, req);
}

void HttpPoster::close() { impl_->close(); }

std::string basicAuthorization(const std::string& user, const std::string& password) {
  if (user.empty() && password.empty()) return {};
  const std::string in = (user.empty() ? std::string("default") : user) + ":" + password;
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "Basic ";
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string urlEncode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

}  // namespace ayaflow::exporter::detail
