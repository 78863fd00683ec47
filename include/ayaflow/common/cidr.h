// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ayaflow::common {

/// An IPv4 or IPv6 network (address + prefix), used by the HTTP allowlist.
///
/// Everything lives in the 128-bit IPv6 space: an IPv4 network is stored IPv4-mapped
/// (::ffff:a.b.c.d) with prefix_len = IPv4 prefix + 96, so an IPv4 peer seen through a dual-stack
/// IPv6 socket (as ::ffff:a.b.c.d) matches IPv4 CIDRs. Consequences: "0.0.0.0/0" matches every
/// IPv4 peer and no IPv6 peer; "::/0" matches every peer, IPv4-mapped ones included.
///
/// A plain value type: copyable, immutable in use, safe to share between threads. parse() reports
/// bad text by returning nullopt; nothing throws.
struct Cidr {
  std::array<std::uint8_t, 16> network{};  // host bits zero; IPv4 stored as ::ffff:a.b.c.d
  std::uint8_t prefix_len = 0;             // in the 128-bit space (IPv4 /8 is stored as 104)
  bool v4 = false;                         // written as IPv4 (affects toString() only)

  /// Parses "10.0.0.0/8", "192.168.1.5" (= /32), "2001:db8::/32", "::1" (= /128), "::/0".
  /// Strict: no whitespace, no empty parts, prefix is decimal without sign or leading zeros
  /// ("/08" is rejected, "/0" is fine), at most 32 (IPv4) or 128 (IPv6); IPv4 octets follow
  /// inet_pton (exactly four, no leading zeros). Host bits are masked, not rejected:
  /// "10.1.2.3/8" yields 10.0.0.0/8. IPv4-mapped IPv6 text ("::ffff:10.0.0.0/104") is kept as an
  /// IPv6 network; it matches the same peers as 10.0.0.0/8.
  static std::optional<Cidr> parse(std::string_view text);

  /// True if addr (an IPv6 address, or an IPv4 address in IPv4-mapped form) is inside.
  bool contains(const std::array<std::uint8_t, 16>& addr) const noexcept;
  /// IPv4 peer (network byte order, as from sockaddr_in); mapped to ::ffff:a.b.c.d first.
  bool contains(const in_addr& addr) const noexcept;
  /// IPv6 peer (may be IPv4-mapped, as from a dual-stack socket).
  bool contains(const in6_addr& addr) const noexcept;

  /// Canonical text with the prefix always written: "10.0.0.0/8", "192.168.1.5/32",
  /// "2001:db8::/32". parse(toString()) == *this.
  std::string toString() const;

  friend bool operator==(const Cidr& a, const Cidr& b) noexcept {
    return a.network == b.network && a.prefix_len == b.prefix_len && a.v4 == b.v4;
  }
  friend bool operator!=(const Cidr& a, const Cidr& b) noexcept { return !(a == b); }
};

/// Maps an IPv4 address (network byte order) to its IPv4-mapped IPv6 form ::ffff:a.b.c.d:
/// the one place userspace builds that form (flow::IpAddress, the HTTP peer, CIDRs).
std::array<std::uint8_t, 16> mapIpv4(const in_addr& addr) noexcept;

}  // namespace ayaflow::common
