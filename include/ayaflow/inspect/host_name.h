// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace ayaflow::inspect {

/// Longest host name text accepted (RFC 1035: 255 wire bytes = 253 text characters).
inline constexpr std::size_t kMaxHostNameLength = 253;
/// Longest label (RFC 1035).
inline constexpr std::size_t kMaxLabelLength = 63;

/// True for the bytes a host name label may hold here: ASCII letters, digits, '-' and '_'
/// ('_' appears in real names such as _dmarc or SRV owners). Everything else (controls,
/// spaces, '.', '*', quotes, bytes >= 0x80) is rejected, so an accepted name is safe to log,
/// put in JSON and store as text.
constexpr bool isHostNameByte(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

/// Validates a dotted host name (as carried by a TLS server_name) and writes it lower-cased,
/// without a trailing dot, to `out`. Rules: one optional trailing dot is dropped; then 1 to
/// kMaxHostNameLength characters, labels of 1 to 63 isHostNameByte() bytes separated by single
/// dots, and a last label that is not all digits (so "10.0.0.1", an address literal, is not a
/// name). Hyphen placement is not policed (real names break that rule). Returns false, leaving
/// `out` unspecified, on anything else. No exceptions other than std::bad_alloc.
bool normalizeHostName(std::string_view in, std::string& out);

}  // namespace ayaflow::inspect
