// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ayaflow/abi/event.h"
#include "ayaflow/flow/tcp.h"

namespace ayaflow::flow {

/// Which hook saw the packet; fixed by the attach point.
enum class Direction : std::uint8_t { kIngress = 0, kEgress = 1 };

/// An IP address as 16 bytes in network order. IPv4 is stored IPv4-mapped
/// (::ffff:a.b.c.d), exactly as the kernel side writes it. Trivially copyable,
/// no padding: safe to hash and compare bytewise.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};

  /// True for ::ffff:a.b.c.d.
  bool isV4Mapped() const noexcept;

  /// ::ffff:a.b.c.d from a host-order IPv4 address (0x01020304 is 1.2.3.4).
  static IpAddress fromV4(std::uint32_t host_order) noexcept;

  /// Parses "1.2.3.4" (stored mapped) or IPv6 text ("2001:db8::1"). No zone ids,
  /// no brackets, no surrounding spaces. nullopt on anything else.
  static std::optional<IpAddress> parse(std::string_view text);

  /// "1.2.3.4" for a mapped IPv4 address, RFC 5952 text for IPv6 ("2001:db8::1").
  std::string toString() const;

  friend bool operator==(const IpAddress& a, const IpAddress& b) noexcept {
    return a.bytes == b.bytes;
  }
  friend bool operator!=(const IpAddress& a, const IpAddress& b) noexcept { return !(a == b); }
};

static_assert(sizeof(IpAddress) == 16, "IpAddress is 16 bytes");

/// Longest text toString() produces plus a terminating NUL
/// ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" is 39 characters).
inline constexpr std::size_t kMaxAddressText = 48;

/// Writes toString()'s text into buf (at least kMaxAddressText bytes), NUL-terminated;
/// returns its length. No allocation.
std::size_t formatAddress(const IpAddress& addr, char* buf) noexcept;

/// A decoded ayaflow_packet_event (include/ayaflow/abi/event.h), or a kernel flow-table
/// entry standing for `packets` packets of one directional flow; ports in host order.
struct Packet {
  IpAddress src, dst;
  std::uint16_t src_port = 0, dst_port = 0;
  std::uint8_t protocol = 0;  // 6 TCP, 17 UDP
  Direction direction = Direction::kIngress;
  std::uint8_t flags = 0;      // AYAFLOW_F_*
  std::uint8_t addr_type = 4;  // 4 or 6
  std::uint32_t ifindex = 0;
  std::uint64_t packets = 1;       // packets this record stands for: 1, or a flow-table entry's
  std::uint64_t length = 0;        // bytes: pkt_len, or the sum over `packets`
  std::uint64_t timestamp_ns = 0;  // CLOCK_MONOTONIC; the latest packet's
  std::uint64_t first_timestamp_ns = 0;  // the earliest packet's; 0: same as timestamp_ns
  /// TCP, from the hook (0 for UDP or with the TCP state switch off; see flow/tcp.h): the
  /// packets' flags OR-ed (synthetic SYN-ACK/FIN-ACK/RST-ACK bits included), how many carried
  /// SYN, the time of the latest of those, and of the first with ACK and without SYN.
  std::uint16_t tcp_flags = 0;
  std::uint16_t syns = 0;
  std::uint64_t syn_ns = 0;
  std::uint64_t ack_ns = 0;
  /// Health figures not from the hook: set by the ingest from the kernel's tracing probes
  /// (retransmits, drops: counts since the previous update; srtt_us: the latest sample) and
  /// from the live connection (state and RTT after this packet), for the history.
  std::uint32_t retransmits = 0;
  std::uint32_t drops = 0;
  std::uint32_t srtt_us = 0;
  std::uint32_t rtt_us = 0;
  RttKind rtt_kind = RttKind::kNone;
  TcpState tcp_state = TcpState::kUnknown;
  std::uint16_t drop_reason = 0;  ///< the kernel's reason (enum value) for `drops`

  std::uint64_t firstTimestampNs() const noexcept {
    return first_timestamp_ns != 0 ? first_timestamp_ns : timestamp_ns;
  }
  /// Seen inside VXLAN, Geneve or IP-in-IP and counted as the packet inside
  /// (AYAFLOW_F_TUNNEL): the addresses, ports and bytes are the inner packet's.
  bool tunnelled() const noexcept { return (flags & AYAFLOW_F_TUNNEL) != 0; }
};

/// Copies a kernel tuple's addresses, ports, protocol and family into `out`.
void copyTuple(const ayaflow_tuple& t, Packet& out) noexcept;

enum class DecodeStatus { kOk, kTooShort, kBadVersion, kBadKind, kBadField };

/// Decodes one ring-buffer record. Checks the size (>= sizeof(ayaflow_packet_event);
/// longer records are accepted for forward compatibility), abi_version, kind, direction
/// (0/1), addr_type (4/6) and protocol (6/17); flags are copied as they are (AYAFLOW_F_*
/// bits are informative, none makes a record invalid). Copies the bytes into a local struct, so
/// data may be unaligned. `out` is written only on kOk. No allocation, no logging:
/// callers count failures.
DecodeStatus decodePacketEvent(const void* data, std::size_t size, Packet& out) noexcept;

/// Decodes one kernel flow-table entry (aggregated mode) into a Packet standing for
/// value.packets packets: length is their byte sum, first_timestamp_ns and timestamp_ns the
/// first and latest packet's. Checks direction, addr_type, protocol and a non-zero packet
/// count (kBadField). `out` is written only on kOk. No allocation.
DecodeStatus decodeFlowEntry(const ayaflow_flow_key& key, const ayaflow_flow_value& value,
                             Packet& out) noexcept;

/// Static text for a status ("ok", "too short", ...).
const char* toString(DecodeStatus status) noexcept;

}  // namespace ayaflow::flow
