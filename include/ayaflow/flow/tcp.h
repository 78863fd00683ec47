// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ayaflow::flow {

/// TCP flags as the TC hook reports them: the header's eight bits (FIN 0x01 .. CWR 0x80) plus three
/// synthetic bits for packets that carry ACK together with SYN, FIN or RST, so that OR-ing the
/// flags of many packets still tells a SYN from a SYN-ACK.
namespace tcp_flags {
inline constexpr std::uint16_t kFin = 0x01;
inline constexpr std::uint16_t kSyn = 0x02;
inline constexpr std::uint16_t kRst = 0x04;
inline constexpr std::uint16_t kPsh = 0x08;
inline constexpr std::uint16_t kAck = 0x10;
inline constexpr std::uint16_t kUrg = 0x20;
inline constexpr std::uint16_t kEce = 0x40;
inline constexpr std::uint16_t kCwr = 0x80;
inline constexpr std::uint16_t kSynAck = 0x100;
inline constexpr std::uint16_t kFinAck = 0x200;
inline constexpr std::uint16_t kRstAck = 0x400;

/// The header's flags plus the synthetic bits they imply.
constexpr std::uint16_t fromHeader(std::uint8_t header) noexcept {
  std::uint16_t f = header;
  if (header & kAck) {
    if (header & kSyn) f |= kSynAck;
    if (header & kFin) f |= kFinAck;
    if (header & kRst) f |= kRstAck;
  }
  return f;
}
}  // namespace tcp_flags

/// What a user reads about a TCP connection, from the flags seen in both directions.
enum class TcpState : std::uint8_t {
  kUnknown = 0,      ///< not TCP, or nothing telling seen yet
  kOpening = 1,      ///< SYN sent, no answer yet
  kEstablished = 2,  ///< answered (SYN-ACK), or seen mid-stream without FIN/RST
  kClosed = 3,       ///< FIN seen
  kReset = 4,        ///< RST after the connection was established (or mid-stream)
  kRefused = 5,      ///< RST in answer to a SYN
  kUnanswered = 6,   ///< SYN retried without any answer
};

/// Which round-trip time a figure is.
enum class RttKind : std::uint8_t {
  kNone = 0,
  kHandshake = 1,  ///< measured at the hook: SYN -> SYN-ACK (outgoing), SYN-ACK -> ACK (incoming)
  kSmoothed = 2,   ///< the kernel's smoothed RTT (tcp_sock srtt) of a socket on this node
};

/// "opening", "established", ... ("" for kUnknown).
std::string_view toString(TcpState s) noexcept;
/// "handshake", "smoothed" ("" for kNone).
std::string_view toString(RttKind k) noexcept;
/// The state named by `text` (exact, lower case), if any.
std::optional<TcpState> parseTcpState(std::string_view text) noexcept;

}  // namespace ayaflow::flow
