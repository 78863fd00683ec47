// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <string>
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

/// TCP health of one live connection, kept in its ConnectionMap entry (36 bytes). "Sent" is
/// the direction from the connection's local end. Drops and the smoothed RTT come from the
/// kernel's tracing probes and apply to UDP too (drops) or to local sockets only (srtt).
struct ConnectionHealth {
  std::uint16_t flags_sent = 0, flags_received = 0;  ///< tcp_flags::* OR-ed per direction
  std::uint8_t syns_sent = 0, syns_received = 0;     ///< packets with SYN (stops at 255)
  TcpState state = TcpState::kUnknown;
  std::uint8_t results = 0;       ///< resultBit()s of the results already reached (counted once)
  std::uint16_t drop_reason = 0;  ///< the kernel's reason for the latest drop (enum value)
  std::uint16_t pad2 = 0;
  std::uint32_t handshake_rtt_us = 0;  ///< 0: not measured (no handshake seen at the hook)
  std::uint32_t srtt_us = 0;           ///< the latest kernel sample; 0: none
  std::uint32_t retransmits = 0;       ///< segments the local socket retransmitted
  std::uint32_t drops = 0;             ///< packets of the connection the kernel dropped
  /// The handshake's two ends, microseconds of CLOCK_MONOTONIC modulo 2^32 (0: not yet): the
  /// latest SYN (or SYN-ACK) sent, and the SYN-ACK (or first ACK) that answers it.
  std::uint32_t hs_sent_us = 0, hs_received_us = 0;

  /// The RTT a user should read first: the kernel's smoothed RTT when sampled, else the
  /// handshake's.
  RttKind rttKind() const noexcept {
    return srtt_us != 0 ? RttKind::kSmoothed
                        : (handshake_rtt_us != 0 ? RttKind::kHandshake : RttKind::kNone);
  }
  std::uint32_t rttUs() const noexcept { return srtt_us != 0 ? srtt_us : handshake_rtt_us; }
};

/// The bit of a result in ConnectionHealth::results.
constexpr std::uint8_t resultBit(TcpState s) noexcept {
  return static_cast<std::uint8_t>(1u << static_cast<unsigned>(s));
}

/// The state the flags of both directions say (see TcpState).
TcpState deriveState(const ConnectionHealth& h) noexcept;

/// Adds a packet's (or flow-table entry's) TCP flags, SYN count and handshake times to `h`,
/// `sent` when it travels from the local end; measures the handshake RTT once both of its
/// ends are known; updates h.state. Entries of one connection may come in any order.
/// Returns the resultBit()s the connection reached with this update, each once in its life:
/// established (the handshake completed), closed, reset, refused, unanswered. A result that
/// needs both directions (all but unanswered and refused) waits until both were seen, so
/// that flow-table entries collected in either order count the same.
std::uint8_t updateTcp(ConnectionHealth& h, bool sent, std::uint16_t flags, std::uint16_t syns,
                       std::uint64_t syn_ns, std::uint64_t ack_ns) noexcept;

/// The flags as text, e.g. "SYN|ACK|SYN-ACK|FIN" ("" for none): header bits first, in header order.
std::string tcpFlagsText(std::uint16_t flags);

/// "opening", "established", ... ("" for kUnknown).
std::string_view toString(TcpState s) noexcept;
/// "handshake", "smoothed" ("" for kNone).
std::string_view toString(RttKind k) noexcept;
/// The state named by `text` (exact, lower case), if any.
std::optional<TcpState> parseTcpState(std::string_view text) noexcept;

}  // namespace ayaflow::flow
