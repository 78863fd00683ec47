// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/cidr.h"

#include <arpa/inet.h>

#include <cstring>

namespace ayaflow::common {
namespace {

constexpr std::uint8_t kV4MappedPrefix = 96;

/// Parses a decimal prefix length: 1-3 digits, no sign, no leading zero (except "0").
std::optional<unsigned> parsePrefix(std::string_view text) {
  if (text.empty() || text.size() > 3) return std::nullopt;
  if (text.size() > 1 && text[0] == '0') return std::nullopt;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value;
}

/// Zeroes every bit after the first prefix_len bits.
void maskHostBits(std::array<std::uint8_t, 16>& bytes, unsigned prefix_len) {
  for (unsigned i = 0; i < bytes.size(); ++i) {
    const unsigned first_bit = i * 8;
    if (first_bit >= prefix_len) {
      bytes[i] = 0;
    } else if (prefix_len - first_bit < 8) {
      bytes[i] &= static_cast<std::uint8_t>(0xFFu << (8 - (prefix_len - first_bit)));
    }
  }
}

}  // namespace

std::array<std::uint8_t, 16> mapIpv4(const in_addr& addr) noexcept {
  std::array<std::uint8_t, 16> out{};
  out[10] = 0xFF;
  out[11] = 0xFF;
  std::memcpy(out.data() + 12, &addr.s_addr, 4);  // s_addr is already network byte order
  return out;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  // Longest valid text: a full IPv6 address with embedded IPv4 (45 chars) + "/128".
  if (text.empty() || text.size() > 64) return std::nullopt;

  std::string_view addr_text = text;
  std::optional<unsigned> prefix;
  if (const auto slash = text.find('/'); slash != std::string_view::npos) {
    addr_text = text.substr(0, slash);
    prefix = parsePrefix(text.substr(slash + 1));
    if (!prefix) return std::nullopt;
  }
  // inet_pton needs a NUL-terminated string, so an embedded NUL would cut the text short.
  // inet_pton itself rejects whitespace, empty input and IPv4 octets with leading zeros.
  if (addr_text.find('\0') != std::string_view::npos) return std::nullopt;
  const std::string addr(addr_text);

  Cidr cidr;
  if (addr.find(':') != std::string::npos) {
    in6_addr a6{};
    if (inet_pton(AF_INET6, addr.c_str(), &a6) != 1) return std::nullopt;
    const unsigned len = prefix.value_or(128);
    if (len > 128) return std::nullopt;
    std::memcpy(cidr.network.data(), &a6, 16);
    cidr.prefix_len = static_cast<std::uint8_t>(len);
  } else {
    in_addr a4{};
    if (inet_pton(AF_INET, addr.c_str(), &a4) != 1) return std::nullopt;
    const unsigned len = prefix.value_or(32);
    if (len > 32) return std::nullopt;
    cidr.network = mapIpv4(a4);
    cidr.prefix_len = static_cast<std::uint8_t>(len + kV4MappedPrefix);
    cidr.v4 = true;
  }
  maskHostBits(cidr.network, cidr.prefix_len);
  return cidr;
}

bool Cidr::contains(const std::array<std::uint8_t, 16>& addr) const noexcept {
  const unsigned full_bytes = prefix_len / 8;
  if (std::memcmp(addr.data(), network.data(), full_bytes) != 0) return false;
  const unsigned rest = prefix_len % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xFFu << (8 - rest));
  return (addr[full_bytes] & mask) == network[full_bytes];
}

bool Cidr::contains(const in_addr& addr) const noexcept { return contains(mapIpv4(addr)); }

bool Cidr::contains(const in6_addr& addr) const noexcept {
  std::array<std::uint8_t, 16> bytes;
  std::memcpy(bytes.data(), &addr, 16);
  return contains(bytes);
}

std::string Cidr::toString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (v4) {
    in_addr a4{};
    std::memcpy(&a4.s_addr, network.data() + 12, 4);
    inet_ntop(AF_INET, &a4, buf, sizeof buf);
    return std::string(buf) + "/" + std::to_string(prefix_len - kV4MappedPrefix);
  }
  in6_addr a6{};
  std::memcpy(&a6, network.data(), 16);
  inet_ntop(AF_INET6, &a6, buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix_len);
}

}  // namespace ayaflow::common
