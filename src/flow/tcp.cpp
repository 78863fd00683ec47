// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/flow/tcp.h"

#include <utility>

namespace ayaflow::flow {

std::string_view toString(TcpState s) noexcept {
  switch (s) {
    case TcpState::kUnknown:
      return "";
    case TcpState::kOpening:
      return "opening";
    case TcpState::kEstablished:
      return "established";
    case TcpState::kClosed:
      return "closed";
    case TcpState::kReset:
      return "reset";
    case TcpState::kRefused:
      return "refused";
    case TcpState::kUnanswered:
      return "unanswered";
  }
  return "";
}

std::string_view toString(RttKind k) noexcept {
  switch (k) {
    case RttKind::kNone:
      return "";
    case RttKind::kHandshake:
      return "handshake";
    case RttKind::kSmoothed:
      return "smoothed";
  }
  return "";
}

namespace {

using namespace tcp_flags;

// Microseconds of CLOCK_MONOTONIC modulo 2^32, never 0 (0 means "not yet").
std::uint32_t stampUs(std::uint64_t ns) noexcept {
  const auto us = static_cast<std::uint32_t>(ns / 1000);
  return us != 0 ? us : 1;
}

// A handshake takes less than this; a longer gap means the stamps do not belong together.
constexpr std::int64_t kMaxHandshakeUs = 120LL * 1000 * 1000;

bool initiated(std::uint16_t flags) noexcept { return (flags & kSyn) && !(flags & kSynAck); }

}  // namespace

TcpState deriveState(const ConnectionHealth& h) noexcept {
  const std::uint16_t all = h.flags_sent | h.flags_received;
  if (all == 0) return TcpState::kUnknown;
  const bool local_opened = initiated(h.flags_sent);
  const bool remote_opened = initiated(h.flags_received);
  if (local_opened || remote_opened) {
    const std::uint16_t responder = local_opened ? h.flags_received : h.flags_sent;
    const std::uint8_t syns = local_opened ? h.syns_sent : h.syns_received;
    if (!(responder & kSynAck)) {
      if (responder & kRst) return TcpState::kRefused;
      if (all & kRst) return TcpState::kReset;  // the opening end gave up
      return syns >= 2 ? TcpState::kUnanswered : TcpState::kOpening;
    }
  }
  // Answered, or seen mid-stream (the agent started after the handshake).
  if (all & kRst) return TcpState::kReset;
  if (all & kFin) return TcpState::kClosed;
  return TcpState::kEstablished;
}

std::uint8_t updateTcp(ConnectionHealth& h, bool sent, std::uint16_t flags, std::uint16_t syns,
                       std::uint64_t syn_ns, std::uint64_t ack_ns) noexcept {
  auto add_syns = [syns](std::uint8_t& n) {
    const unsigned total = n + static_cast<unsigned>(syns);
    n = static_cast<std::uint8_t>(total > 255 ? 255 : total);
  };
  // A later stamp replaces an earlier one (wrapping comparison: entries may come out of order).
  auto latest = [](std::uint32_t& at, std::uint64_t ns) {
    const std::uint32_t s = stampUs(ns);
    if (at == 0 || static_cast<std::int32_t>(s - at) > 0) at = s;
  };
  if (sent) {
    h.flags_sent |= flags;
    add_syns(h.syns_sent);
    if (syns != 0 && syn_ns != 0) latest(h.hs_sent_us, syn_ns);  // our SYN, or SYN-ACK
  } else {
    h.flags_received |= flags;
    add_syns(h.syns_received);
    if ((flags & kSynAck) && syn_ns != 0) {
      // We opened (whether or not our SYN was recorded yet): the answer is the SYN-ACK.
      latest(h.hs_received_us, syn_ns);
    } else if (initiated(h.flags_received)) {
      // The peer opened: the answer to our SYN-ACK is its first ACK without SYN.
      if (ack_ns != 0 && h.hs_received_us == 0) h.hs_received_us = stampUs(ack_ns);
    }
  }
  if (h.handshake_rtt_us == 0 && h.hs_sent_us != 0 && h.hs_received_us != 0) {
    const bool local_opened = initiated(h.flags_sent) && (h.flags_received & kSynAck);
    const bool remote_opened = initiated(h.flags_received) && (h.flags_sent & kSynAck);
    const std::int64_t d = static_cast<std::int32_t>(h.hs_received_us - h.hs_sent_us);
    if ((local_opened || remote_opened) && d > 0 && d < kMaxHandshakeUs) {
      h.handshake_rtt_us = static_cast<std::uint32_t>(d);
    }
  }
  h.state = deriveState(h);

  // Results, each once. A state read from one direction alone may still change its name
  // when the other direction's entry comes (an RST collected before the SYN it answers looks
  // like a reset): only refused and unanswered, which the opening end's packets and their
  // answer settle, count before both directions were seen.
  std::uint8_t reached = 0;
  const bool both = h.flags_sent != 0 && h.flags_received != 0;
  const bool handshake = (initiated(h.flags_sent) && (h.flags_received & kSynAck)) ||
                         (initiated(h.flags_received) && (h.flags_sent & kSynAck));
  if (handshake && both) reached |= resultBit(TcpState::kEstablished);
  switch (h.state) {
    case TcpState::kRefused:
    case TcpState::kUnanswered:
      reached |= resultBit(h.state);
      break;
    case TcpState::kClosed:
    case TcpState::kReset:
      if (both) reached |= resultBit(h.state);
      break;
    default:
      break;
  }
  reached &= static_cast<std::uint8_t>(~h.results);
  h.results |= reached;
  return reached;
}

std::string tcpFlagsText(std::uint16_t flags) {
  static constexpr std::pair<std::uint16_t, const char*> kNames[] = {
      {kFin, "FIN"},        {kSyn, "SYN"},        {kRst, "RST"},       {kPsh, "PSH"},
      {kAck, "ACK"},        {kUrg, "URG"},        {kEce, "ECE"},       {kCwr, "CWR"},
      {kSynAck, "SYN-ACK"}, {kFinAck, "FIN-ACK"}, {kRstAck, "RST-ACK"}};
  std::string out;
  for (const auto& [bit, name] : kNames) {
    if (!(flags & bit)) continue;
    if (!out.empty()) out += '|';
    out += name;
  }
  return out;
}

std::optional<TcpState> parseTcpState(std::string_view text) noexcept {
  for (int i = 1; i <= static_cast<int>(TcpState::kUnanswered); ++i) {
    const auto s = static_cast<TcpState>(i);
    if (toString(s) == text) return s;
  }
  return std::nullopt;
}

}  // namespace ayaflow::flow
