// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Builds exact Ethernet frames for BPF_PROG_TEST_RUN parser tests.

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <vector>

namespace ayaflow::test {

using Bytes = std::vector<std::uint8_t>;

inline void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v & 0xff));
}

inline void putBytes(Bytes& b, const std::uint8_t* p, std::size_t n) {
  b.insert(b.end(), p, p + n);
}

/// Ethernet header with optional VLAN tags (outer first), then ethertype.
inline Bytes ethernet(std::uint16_t ethertype, std::vector<std::uint16_t> tag_tpids = {}) {
  Bytes b = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2};
  for (std::uint16_t tpid : tag_tpids) {
    put16(b, tpid);
    put16(b, 0x0064);  // VLAN id 100
  }
  put16(b, ethertype);
  return b;
}

/// L4 header: TCP (20 bytes) or UDP (8 bytes) with the given ports, then payload.
inline Bytes l4(std::uint8_t proto, std::uint16_t sport, std::uint16_t dport,
                std::size_t payload_len) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  if (proto == 6) {
    Bytes rest(16, 0);
    rest[8] = 0x50;  // data offset 5
    rest[9] = 0x18;  // PSH|ACK
    b.insert(b.end(), rest.begin(), rest.end());
  } else {
    put16(b, static_cast<std::uint16_t>(8 + payload_len));
    put16(b, 0);
  }
  b.insert(b.end(), payload_len, 0xab);
  return b;
}

/// IPv4 header with `options_words` 4-byte words of options (NOP), then body.
inline Bytes ipv4(std::uint8_t proto, const char* src, const char* dst, const Bytes& body,
                  unsigned options_words = 0, std::uint16_t frag_field = 0) {
  Bytes b;
  const unsigned ihl = 5 + options_words;
  b.push_back(static_cast<std::uint8_t>(0x40 | ihl));
  b.push_back(0);
  put16(b, static_cast<std::uint16_t>(ihl * 4 + body.size()));
  put16(b, 0x1234);
  put16(b, frag_field);
  b.push_back(64);
  b.push_back(proto);
  put16(b, 0);
  in_addr a{};
  inet_pton(AF_INET, src, &a);
  putBytes(b, reinterpret_cast<const std::uint8_t*>(&a), 4);
  inet_pton(AF_INET, dst, &a);
  putBytes(b, reinterpret_cast<const std::uint8_t*>(&a), 4);
  b.insert(b.end(), options_words * 4, 0x01);
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

/// One IPv6 extension header: {next header, raw bytes including its own
/// next-header/length fields}.
struct Ipv6Ext {
  std::uint8_t type;  // 0, 43, 44, 51, 60
  Bytes bytes;        // whole header; first byte (next header) is patched in
};

inline Ipv6Ext hopByHop() { return {0, Bytes{0, 0, 1, 4, 0, 0, 0, 0}}; }  // 8 bytes, PadN
inline Ipv6Ext destOpts16() {                                             // 16 bytes
  Bytes b{0, 1, 1, 12};
  b.resize(16, 0);
  return {60, b};
}
inline Ipv6Ext routing() { return {43, Bytes{0, 0, 0, 0, 0, 0, 0, 0}}; }
inline Ipv6Ext fragment(std::uint16_t offset_units, bool more) {
  const std::uint16_t v = static_cast<std::uint16_t>((offset_units << 3) | (more ? 1 : 0));
  return {44,
          Bytes{0, 0, static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v), 0, 0, 0, 1}};
}
inline Ipv6Ext authHeader() {  // AH: length in 4-byte units minus 2: 16 bytes
  Bytes b{0, 2};
  b.resize(16, 0);
  return {51, b};
}

inline Bytes ipv6(std::uint8_t l4_proto, const char* src, const char* dst, const Bytes& body,
                  std::vector<Ipv6Ext> exts = {}) {
  Bytes chain;
  for (std::size_t i = 0; i < exts.size(); ++i) {
    Bytes h = exts[i].bytes;
    h[0] = i + 1 < exts.size() ? exts[i + 1].type : l4_proto;
    chain.insert(chain.end(), h.begin(), h.end());
  }
  Bytes b = {0x60, 0, 0, 0};
  put16(b, static_cast<std::uint16_t>(chain.size() + body.size()));
  b.push_back(exts.empty() ? l4_proto : exts[0].type);
  b.push_back(64);
  in6_addr a{};
  inet_pton(AF_INET6, src, &a);
  putBytes(b, reinterpret_cast<const std::uint8_t*>(&a), 16);
  inet_pton(AF_INET6, dst, &a);
  putBytes(b, reinterpret_cast<const std::uint8_t*>(&a), 16);
  b.insert(b.end(), chain.begin(), chain.end());
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

/// TCP header (20 bytes) with sequence number and flags, then `payload`.
inline Bytes tcp(std::uint16_t sport, std::uint16_t dport, std::uint32_t seq, std::uint8_t flags,
                 const Bytes& payload) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, static_cast<std::uint16_t>(seq >> 16));
  put16(b, static_cast<std::uint16_t>(seq & 0xffff));
  b.insert(b.end(), 4, 0);  // ack
  b.push_back(0x50);        // data offset 5
  b.push_back(flags);
  b.insert(b.end(), 6, 0);  // window, checksum, urgent
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

/// UDP header with the given ports and a length that covers `body`, then `body`.
inline Bytes udp(std::uint16_t sport, std::uint16_t dport, const Bytes& body) {
  Bytes b;
  put16(b, sport);
  put16(b, dport);
  put16(b, static_cast<std::uint16_t>(8 + body.size()));
  put16(b, 0);
  b.insert(b.end(), body.begin(), body.end());
  return b;
}

/// VXLAN header (RFC 7348: flags, 24 reserved bits, 24-bit VNI, 8 reserved bits), then the
/// inner Ethernet frame. flags 0x08 is the I bit (VNI valid).
inline Bytes vxlan(std::uint32_t vni, const Bytes& inner_frame, std::uint8_t flags = 0x08) {
  Bytes b = {flags,
             0,
             0,
             0,
             static_cast<std::uint8_t>(vni >> 16),
             static_cast<std::uint8_t>(vni >> 8),
             static_cast<std::uint8_t>(vni),
             0};
  b.insert(b.end(), inner_frame.begin(), inner_frame.end());
  return b;
}

/// Geneve header (RFC 8926): version and options length, flags, protocol type (0x6558: an
/// Ethernet frame follows; 0x0800 / 0x86DD: an IP packet), 24-bit VNI; then `option_words`
/// 4-byte words of options (one option whose data fills them) and `inner`.
inline Bytes geneve(std::uint16_t protocol, const Bytes& inner, unsigned option_words = 0,
                    std::uint8_t version = 0) {
  Bytes b = {static_cast<std::uint8_t>((version << 6) | (option_words & 0x3f)), 0};
  put16(b, protocol);
  b.insert(b.end(), {0, 0x12, 0x34, 0});  // VNI 0x1234
  if (option_words > 0) {
    put16(b, 0x0102);                                          // option class
    b.push_back(0x01);                                         // option type
    b.push_back(static_cast<std::uint8_t>(option_words - 1));  // data length in words
    b.insert(b.end(), (option_words - 1) * 4, 0x5a);
  }
  b.insert(b.end(), inner.begin(), inner.end());
  return b;
}

inline Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace ayaflow::test
