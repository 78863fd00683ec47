// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// The store benchmarks' pre-generated packet stream, shared so that their figures describe
// the same traffic.

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "ayaflow/flow/packet.h"

namespace ayaflow::bench {

/// 20 000 local/remote hosts (1 in 8 IPv6), web-ish ports, both directions, 40..1500 bytes,
/// on interface `ifindex`. Fixed seed.
inline std::vector<flow::Packet> storePackets(std::size_t n, std::uint32_t ifindex) {
  using flow::IpAddress;
  std::mt19937_64 rng(42);
  std::vector<flow::Packet> out(n);
  for (auto& p : out) {
    const std::uint64_t r = rng();
    const std::uint32_t host = static_cast<std::uint32_t>(r % 20000);
    if (host % 8 == 0) {
      p.src = *IpAddress::parse("2001:db8::1");
      p.src.bytes[14] = static_cast<std::uint8_t>(host >> 8);
      p.src.bytes[15] = static_cast<std::uint8_t>(host);
      p.dst = *IpAddress::parse("2001:db8:1::53");
      p.addr_type = 6;
    } else {
      p.src = IpAddress::fromV4(0x0a000000u | host);
      p.dst = IpAddress::fromV4(0xc0a80001u + static_cast<std::uint32_t>((r >> 20) % 50));
      p.addr_type = 4;
    }
    static constexpr std::uint16_t kPorts[] = {443, 443, 443, 80, 53, 8080, 22, 5432};
    p.src_port = static_cast<std::uint16_t>(32768 + (r >> 32) % 28000);
    p.dst_port = kPorts[(r >> 40) % 8];
    p.protocol = p.dst_port == 53 ? 17 : 6;
    p.direction = (r >> 44) & 1 ? flow::Direction::kEgress : flow::Direction::kIngress;
    p.length = static_cast<std::uint32_t>(40 + (r >> 48) % 1461);
    p.ifindex = ifindex;
  }
  return out;
}

}  // namespace ayaflow::bench
