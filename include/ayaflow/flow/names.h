// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ayaflow/flow/packet.h"

namespace ayaflow::flow {

// The one place where directions, protocols and address families get their names. Rows,
// query parameters and metric labels all use these.

/// "ingress" or "egress".
const char* directionName(Direction direction) noexcept;

/// A direction from its name, any case ("Egress"); nullopt for anything else.
std::optional<Direction> parseDirection(std::string_view text) noexcept;

/// Longest protocolColumn() text plus a terminating NUL ("IP(255)").
inline constexpr std::size_t kMaxProtocolText = 8;

/// The protocol as stored in history rows: "TCP" (6), "UDP" (17), otherwise "IP(n)".
/// Writes it NUL-terminated into buf (at least kMaxProtocolText bytes) and returns its length.
/// No allocation.
std::size_t formatProtocol(std::uint8_t protocol, char* buf) noexcept;

/// formatProtocol() as a string.
std::string protocolColumn(std::uint8_t protocol);

/// A protocol from a query parameter: "tcp"/"udp" in any case, or "6"/"17".
std::optional<std::uint8_t> parseProtocol(std::string_view text) noexcept;

/// Metric label values for the kernel's numeric fields: direction 0 "ingress", 1 "egress";
/// protocol 6 "tcp", 17 "udp"; address type 4 "ipv4", 6 "ipv6"; anything else "other".
const char* directionLabel(std::uint8_t direction) noexcept;
const char* protocolLabel(std::uint8_t protocol) noexcept;
const char* familyLabel(std::uint8_t addr_type) noexcept;

}  // namespace ayaflow::flow
