// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/flow/packet.h"

#include <arpa/inet.h>

#include <cstring>
#include <type_traits>

#include "ayaflow/abi/event.h"
#include "ayaflow/common/cidr.h"

// C++-side ABI checks (the C-side sizeof/offsetof asserts live in event.h): the
// structs are copied bytewise out of ring-buffer memory and used as hash keys, so they
// must be trivially copyable and free of implicit padding.
static_assert(std::is_trivially_copyable_v<ayaflow_tuple>);
static_assert(std::has_unique_object_representations_v<ayaflow_tuple>);
static_assert(std::is_trivially_copyable_v<ayaflow_packet_event>);
static_assert(std::has_unique_object_representations_v<ayaflow_packet_event>);
static_assert(std::is_trivially_copyable_v<ayaflow_flow_key>);
static_assert(std::has_unique_object_representations_v<ayaflow_flow_key>);
static_assert(std::is_trivially_copyable_v<ayaflow_flow_value>);
static_assert(std::has_unique_object_representations_v<ayaflow_flow_value>);
static_assert(std::is_trivially_copyable_v<ayaflow_stats>);
static_assert(std::has_unique_object_representations_v<ayaflow_stats>);
static_assert(std::is_trivially_copyable_v<ayaflow_stats_key>);
static_assert(std::has_unique_object_representations_v<ayaflow_stats_key>);
static_assert(sizeof(ayaflow_tuple::src_addr) == sizeof(ayaflow::flow::IpAddress));

namespace ayaflow::flow {

bool IpAddress::isV4Mapped() const noexcept {
  static constexpr std::uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(bytes.data(), kPrefix, sizeof kPrefix) == 0;
}

IpAddress IpAddress::fromV4(std::uint32_t host_order) noexcept {
  in_addr v4{};
  v4.s_addr = htonl(host_order);
  return IpAddress{common::mapIpv4(v4)};
}

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress a;
  if (text.find(':') == std::string_view::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, buf, &v4) != 1) return std::nullopt;
    a.bytes = common::mapIpv4(v4);
  } else {
    if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return std::nullopt;
  }
  return a;
}

namespace {

char* appendDecimal(char* out, unsigned v) noexcept {
  if (v >= 100) *out++ = static_cast<char>('0' + v / 100);
  if (v >= 10) *out++ = static_cast<char>('0' + v / 10 % 10);
  *out++ = static_cast<char>('0' + v % 10);
  return out;
}

char* appendHex16(char* out, unsigned v) noexcept {
  static constexpr char kDigits[] = "0123456789abcdef";
  bool started = false;
  for (int shift = 12; shift >= 0; shift -= 4) {
    const unsigned d = (v >> shift) & 0xf;
    if (d != 0 || started || shift == 0) {
      *out++ = kDigits[d];
      started = true;
    }
  }
  return out;
}

}  // namespace

std::size_t formatAddress(const IpAddress& addr, char* buf) noexcept {
  char* out = buf;
  const auto& b = addr.bytes;
  if (addr.isV4Mapped()) {
    for (std::size_t i = 12; i < 16; ++i) {
      if (i != 12) *out++ = '.';
      out = appendDecimal(out, b[i]);
    }
    *out = '\0';
    return static_cast<std::size_t>(out - buf);
  }
  // RFC 5952: lowercase hex, no leading zeros, the longest run (first on a tie) of two
  // or more zero groups becomes "::".
  unsigned words[8];
  for (std::size_t i = 0; i < 8; ++i) {
    words[i] = static_cast<unsigned>(b[2 * i] << 8 | b[2 * i + 1]);
  }
  int best_start = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (words[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && words[j] == 0) ++j;
    if (j - i > best_len) {
      best_start = i;
      best_len = j - i;
    }
    i = j;
  }
  if (best_len < 2) best_start = -1;
  for (int i = 0; i < 8; ++i) {
    if (i == best_start) {
      *out++ = ':';
      *out++ = ':';
      i += best_len - 1;
      continue;
    }
    if (i != 0 && i != best_start + best_len) *out++ = ':';
    out = appendHex16(out, words[i]);
  }
  *out = '\0';
  return static_cast<std::size_t>(out - buf);
}

std::string IpAddress::toString() const {
  char buf[kMaxAddressText];
  const std::size_t n = formatAddress(*this, buf);
  return std::string(buf, n);
}

namespace {

// A tuple as the kernel writes it: TCP or UDP, IPv4 or IPv6.
bool validTuple(const ayaflow_tuple& t) noexcept {
  return (t.addr_type == 4 || t.addr_type == 6) && (t.protocol == 6 || t.protocol == 17);
}

// The checks and fields an event and a flow-table key share (same member names).
template <typename Record>
bool validFlowFields(const Record& r) noexcept {
  return (r.direction == AYAFLOW_DIR_INGRESS || r.direction == AYAFLOW_DIR_EGRESS) &&
         validTuple(r.tuple);
}

template <typename Record>
void copyFlowFields(const Record& r, Packet& out) noexcept {
  copyTuple(r.tuple, out);
  out.direction = r.direction == AYAFLOW_DIR_EGRESS ? Direction::kEgress : Direction::kIngress;
  out.flags = r.flags;
  out.ifindex = r.ifindex;
}

}  // namespace

void copyTuple(const ayaflow_tuple& t, Packet& out) noexcept {
  std::memcpy(out.src.bytes.data(), t.src_addr, sizeof t.src_addr);
  std::memcpy(out.dst.bytes.data(), t.dst_addr, sizeof t.dst_addr);
  out.src_port = t.src_port;
  out.dst_port = t.dst_port;
  out.protocol = t.protocol;
  out.addr_type = t.addr_type;
}

DecodeStatus decodePacketEvent(const void* data, std::size_t size, Packet& out) noexcept {
  if (data == nullptr || size < sizeof(ayaflow_packet_event)) return DecodeStatus::kTooShort;
  // Ring-buffer memory is neither ours nor necessarily aligned for the struct: copy it.
  ayaflow_packet_event ev;
  std::memcpy(&ev, data, sizeof ev);
  if (ev.abi_version != AYAFLOW_ABI_VERSION) return DecodeStatus::kBadVersion;
  if (ev.kind != AYAFLOW_EVENT_PACKET) return DecodeStatus::kBadKind;
  if (!validFlowFields(ev)) return DecodeStatus::kBadField;

  copyFlowFields(ev, out);
  // A GSO/GRO skb stands for segs wire packets; pkt_len already sums their IP bytes.
  out.packets = ev.segs > 1 ? ev.segs : 1;
  out.length = ev.pkt_len;
  out.timestamp_ns = ev.timestamp_ns;
  out.first_timestamp_ns = 0;
  if (ev.tuple.protocol == 6 && ev.tcp_flags != 0) {
    out.tcp_flags = tcp_flags::fromHeader(ev.tcp_flags);
    if (ev.tcp_flags & tcp_flags::kSyn) {
      out.syns = 1;
      out.syn_ns = ev.timestamp_ns;
    } else if (ev.tcp_flags & tcp_flags::kAck) {
      out.ack_ns = ev.timestamp_ns;
    }
  }
  return DecodeStatus::kOk;
}

DecodeStatus decodeFlowEntry(const ayaflow_flow_key& key, const ayaflow_flow_value& value,
                             Packet& out) noexcept {
  if (!validFlowFields(key) || value.packets == 0) return DecodeStatus::kBadField;

  copyFlowFields(key, out);
  out.packets = value.packets;
  out.length = value.bytes;
  // Another CPU may set last_ns a little before first_ns: keep the pair ordered.
  out.first_timestamp_ns = value.first_ns;
  out.timestamp_ns = value.last_ns > value.first_ns ? value.last_ns : value.first_ns;
  if (key.tuple.protocol == 6) {
    out.tcp_flags = static_cast<std::uint16_t>(value.tcp_flags & 0x7ff);
    out.syns = static_cast<std::uint16_t>(value.syns > 0xffff ? 0xffff : value.syns);
    out.syn_ns = value.syn_ns;
    out.ack_ns = value.ack_ns;
  }
  return DecodeStatus::kOk;
}

const char* toString(DecodeStatus status) noexcept {
  switch (status) {
    case DecodeStatus::kOk:
      return "ok";
    case DecodeStatus::kTooShort:
      return "too short";
    case DecodeStatus::kBadVersion:
      return "bad abi version";
    case DecodeStatus::kBadKind:
      return "bad kind";
    case DecodeStatus::kBadField:
      return "bad field";
  }
  return "unknown";
}

}  // namespace ayaflow::flow
