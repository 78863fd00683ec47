// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ws_client.h"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

namespace ayaflow::test {
namespace {

using Clock = std::chrono::steady_clock;

std::uint32_t rotl(std::uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

std::array<std::uint8_t, 20> sha1(std::string_view data) {
  std::uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::string msg(data);
  const std::uint64_t bit_length = static_cast<std::uint64_t>(data.size()) * 8;
  msg.push_back(static_cast<char>(0x80));
  while (msg.size() % 64 != 56) msg.push_back('\0');
  for (int i = 7; i >= 0; --i) msg.push_back(static_cast<char>((bit_length >> (i * 8)) & 0xff));
  for (std::size_t chunk = 0; chunk < msg.size(); chunk += 64) {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      const auto* p = reinterpret_cast<const unsigned char*>(msg.data() + chunk + 4 * i);
      w[i] = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
             (std::uint32_t{p[2]} << 8) | p[3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      const std::uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rotl(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  std::array<std::uint8_t, 20> out{};
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<std::uint8_t>(h[i] >> (24 - 8 * j));
  }
  return out;
}

std::string base64(const std::uint8_t* data, std::size_t size) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (std::size_t i = 0; i < size; i += 3) {
    std::uint32_t v = std::uint32_t{data[i]} << 16;
    if (i + 1 < size) v |= std::uint32_t{data[i + 1]} << 8;
    if (i + 2 < size) v |= data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < size ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(i + 2 < size ? kAlphabet[v & 63] : '=');
  }
  return out;
}

int msLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(0, left.count()));
}

}  // namespace

std::uint16_t WsMessage::closeCode() const {
  if (payload.size() < 2) return 1005;
  return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                    static_cast<unsigned char>(payload[1]));
}

std::string webSocketAccept(std::string_view key) {
  const auto digest = sha1(std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
  return base64(digest.data(), digest.size());
}

WsClient::WsClient(const std::string& host, std::uint16_t port, const std::string& target,
                   std::chrono::milliseconds timeout, const ConnectOptions& options) {
  const auto deadline = Clock::now() + timeout;
  connection_ = std::make_unique<HttpConnection>(host, port, timeout, options);
  std::array<std::uint8_t, 16> nonce{};
  std::random_device random;
  for (auto& b : nonce) b = static_cast<std::uint8_t>(random());
  const std::string key = base64(nonce.data(), nonce.size());
  const bool v6 = host.find(':') != std::string::npos;
  const std::string request = "GET " + target +
                              " HTTP/1.1\r\nHost: " + (v6 ? "[" + host + "]" : host) + ":" +
                              std::to_string(port) +
                              "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: " +
                              key + "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  connection_->sendRaw(request, timeout);
  handshake_ = connection_->readResponse(false, std::chrono::milliseconds(msLeft(deadline)));
  if (handshake_.status != 101) return;
  if (handshake_.header("sec-websocket-accept") != webSocketAccept(key)) {
    throw std::runtime_error("WebSocket client: bad Sec-WebSocket-Accept");
  }
  in_ = connection_->takeBuffered();
  parse();
}

bool WsClient::pump() {
  if (eof_) return false;
  char chunk[16 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd(), chunk, sizeof chunk, 0);
    if (n > 0) {
      in_.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      eof_ = true;  // EOF or reset
      break;
    }
    if (errno != EINTR) break;  // drained
  }
  parse();
  return !eof_;
}

void WsClient::parse() {
  for (;;) {
    if (in_.size() < 2) return;
    const auto* p = reinterpret_cast<const unsigned char*>(in_.data());
    const bool fin = (p[0] & 0x80) != 0;
    const int opcode = p[0] & 0x0f;
    if ((p[0] & 0x70) != 0) throw std::runtime_error("WebSocket client: RSV bits set");
    if ((p[1] & 0x80) != 0) throw std::runtime_error("WebSocket client: server frame masked");
    std::uint64_t length = p[1] & 0x7f;
    std::size_t header = 2;
    if (length == 126) {
      if (in_.size() < 4) return;
      length = (std::uint64_t{p[2]} << 8) | p[3];
      header = 4;
    } else if (length == 127) {
      if (in_.size() < 10) return;
      length = 0;
      for (int i = 0; i < 8; ++i) length = (length << 8) | p[2 + i];
      header = 10;
    }
    if (in_.size() < header + length) return;
    std::string payload = in_.substr(header, static_cast<std::size_t>(length));
    in_.erase(0, header + static_cast<std::size_t>(length));

    switch (opcode) {
      case 0x9:  // ping
        sendFrame(0xA, payload);
        break;
      case 0xA:  // pong
        break;
      case 0x8:  // close: answer once, as RFC 6455 §5.5.1 asks
        if (!close_sent_) {
          close_sent_ = true;
          sendFrame(0x8, payload.substr(0, 2));
        }
        messages_.push_back({0x8, std::move(payload)});
        break;
      case 0x0:  // continuation
        fragment_ += payload;
        if (fin) {
          messages_.push_back({fragment_opcode_, std::move(fragment_)});
          fragment_.clear();
        }
        break;
      case 0x1:
      case 0x2:
        if (fin) {
          messages_.push_back({opcode, std::move(payload)});
        } else {
          fragment_opcode_ = opcode;
          fragment_ = std::move(payload);
        }
        break;
      default:
        throw std::runtime_error("WebSocket client: unknown opcode " + std::to_string(opcode));
    }
  }
}

std::optional<WsMessage> WsClient::next() {
  if (messages_.empty()) return std::nullopt;
  WsMessage m = std::move(messages_.front());
  messages_.pop_front();
  return m;
}

std::optional<WsMessage> WsClient::read(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (auto m = next()) return m;
    if (!pump()) return next();
    if (auto m = next()) return m;
    pollfd p{fd(), POLLIN, 0};
    const int rc = ::poll(&p, 1, msLeft(deadline));
    if (rc == 0) return std::nullopt;
    if (rc < 0 && errno != EINTR) throw std::runtime_error("WebSocket client: poll failed");
  }
}

bool WsClient::waitForEof(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (pump()) {
    pollfd p{fd(), POLLIN, 0};
    if (::poll(&p, 1, msLeft(deadline)) == 0) return false;
  }
  return true;
}

void WsClient::sendText(std::string_view text) { sendFrame(0x1, text); }

void WsClient::sendClose(std::uint16_t code) {
  close_sent_ = true;
  const char payload[2] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  sendFrame(0x8, std::string_view(payload, 2));
}

void WsClient::sendFrame(int opcode, std::string_view payload) {
  std::string frame;
  frame.push_back(static_cast<char>(0x80 | opcode));
  if (payload.size() < 126) {
    frame.push_back(static_cast<char>(0x80 | payload.size()));
  } else if (payload.size() <= 0xffff) {
    frame.push_back(static_cast<char>(0x80 | 126));
    frame.push_back(static_cast<char>(payload.size() >> 8));
    frame.push_back(static_cast<char>(payload.size() & 0xff));
  } else {
    frame.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) {
      frame.push_back(
          static_cast<char>((static_cast<std::uint64_t>(payload.size()) >> (8 * i)) & 0xff));
    }
  }
  const std::array<char, 4> mask = {0x1b, 0x2c, 0x3d, 0x4e};  // clients must mask; any key
  frame.append(mask.data(), mask.size());
  for (std::size_t i = 0; i < payload.size(); ++i) frame.push_back(payload[i] ^ mask[i % 4]);
  connection_->sendRaw(frame);  // a closed peer is found by the next pump()
}

}  // namespace ayaflow::test
