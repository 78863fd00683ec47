// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/flow/names.h"

#include <cctype>
#include <cstdio>
#include <cstring>

namespace ayaflow::flow {
namespace {

bool equalsIgnoringCase(std::string_view text, const char* word) noexcept {
  const std::size_t n = std::strlen(word);
  if (text.size() != n) return false;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::tolower(static_cast<unsigned char>(text[i])) != word[i]) return false;
  }
  return true;
}

}  // namespace

const char* directionName(Direction direction) noexcept {
  return direction == Direction::kEgress ? "egress" : "ingress";
}

std::optional<Direction> parseDirection(std::string_view text) noexcept {
  if (equalsIgnoringCase(text, "ingress")) return Direction::kIngress;
  if (equalsIgnoringCase(text, "egress")) return Direction::kEgress;
  return std::nullopt;
}

std::size_t formatProtocol(std::uint8_t protocol, char* buf) noexcept {
  switch (protocol) {
    case 6:
      std::memcpy(buf, "TCP", 4);
      return 3;
    case 17:
      std::memcpy(buf, "UDP", 4);
      return 3;
    default:
      return static_cast<std::size_t>(
          std::snprintf(buf, kMaxProtocolText, "IP(%u)", static_cast<unsigned>(protocol)));
  }
}

std::string protocolColumn(std::uint8_t protocol) {
  char buf[kMaxProtocolText];
  return std::string(buf, formatProtocol(protocol, buf));
}

std::optional<std::uint8_t> parseProtocol(std::string_view text) noexcept {
  if (equalsIgnoringCase(text, "tcp") || text == "6") return 6;
  if (equalsIgnoringCase(text, "udp") || text == "17") return 17;
  return std::nullopt;
}

const char* directionLabel(std::uint8_t direction) noexcept {
  switch (direction) {
    case AYAFLOW_DIR_INGRESS:
      return "ingress";
    case AYAFLOW_DIR_EGRESS:
      return "egress";
    default:
      return "other";
  }
}

const char* protocolLabel(std::uint8_t protocol) noexcept {
  switch (protocol) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    default:
      return "other";
  }
}

const char* familyLabel(std::uint8_t addr_type) noexcept {
  switch (addr_type) {
    case 4:
      return "ipv4";
    case 6:
      return "ipv6";
    default:
      return "other";
  }
}

}  // namespace ayaflow::flow
