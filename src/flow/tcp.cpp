// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/flow/tcp.h"

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

std::optional<TcpState> parseTcpState(std::string_view text) noexcept {
  for (int i = 1; i <= static_cast<int>(TcpState::kUnanswered); ++i) {
    const auto s = static_cast<TcpState>(i);
    if (toString(s) == text) return s;
  }
  return std::nullopt;
}

}  // namespace ayaflow::flow
