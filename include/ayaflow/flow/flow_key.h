// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "ayaflow/flow/packet.h"

namespace ayaflow::flow {

/// One key per bidirectional connection: the local end is the source of
/// egress packets and the destination of ingress packets. Binary, no strings, and no
/// implicit padding (`pad` is explicit and always zero), so it is hashed and compared
/// bytewise. Plain value type.
struct FlowKey {
  IpAddress local, remote;
  std::uint16_t local_port = 0, remote_port = 0;
  std::uint8_t protocol = 0;
  std::uint8_t pad[3] = {};

  /// Orients the packet: egress src -> local, ingress dst -> local.
  static FlowKey fromPacket(const Packet& p) noexcept;

  bool operator==(const FlowKey& o) const noexcept {
    return std::memcmp(this, &o, sizeof(FlowKey)) == 0;
  }
  bool operator!=(const FlowKey& o) const noexcept { return !(*this == o); }
};

inline FlowKey FlowKey::fromPacket(const Packet& p) noexcept {
  FlowKey k;
  const bool egress = p.direction == Direction::kEgress;
  k.local = egress ? p.src : p.dst;
  k.remote = egress ? p.dst : p.src;
  k.local_port = egress ? p.src_port : p.dst_port;
  k.remote_port = egress ? p.dst_port : p.src_port;
  k.protocol = p.protocol;
  return k;
}

static_assert(sizeof(FlowKey) == 40, "FlowKey is 40 bytes");
static_assert(std::is_trivially_copyable_v<FlowKey>, "FlowKey is copied bytewise");
static_assert(std::has_unique_object_representations_v<FlowKey>,
              "FlowKey must have no implicit padding: it is hashed and compared bytewise");

namespace detail {

__extension__ typedef unsigned __int128 Uint128;

inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) noexcept {
  const Uint128 r = static_cast<Uint128>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

inline std::uint64_t load64(const unsigned char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace detail

/// 64-bit hash of the key's 40 bytes: wyhash-style 128-bit multiply-fold rounds over
/// five 8-byte words. All 64 bits are well mixed (ConnectionMap takes the shard from the
/// high bits and the slot from the low bits). Tables fed by remote peers should use a
/// random seed (randomHashSeed()) so colliding keys cannot be precomputed.
inline std::uint64_t hashFlowKey(const FlowKey& k, std::uint64_t seed_in = 0) noexcept {
  constexpr std::uint64_t kS0 = 0xa0761d6478bd642full;
  constexpr std::uint64_t kS1 = 0xe7037ed1a0b428dbull;
  constexpr std::uint64_t kS2 = 0x8ebc6af09c88c6e3ull;
  constexpr std::uint64_t kS3 = 0x589965cc75374cc3ull;
  const auto* b = reinterpret_cast<const unsigned char*>(&k);
  std::uint64_t seed = seed_in ^ kS0;
  seed = detail::mum(detail::load64(b) ^ kS1, detail::load64(b + 8) ^ seed);
  seed = detail::mum(detail::load64(b + 16) ^ kS2, detail::load64(b + 24) ^ seed);
  const std::uint64_t a = detail::load64(b + 32) ^ kS3;
  return detail::mum(detail::mum(a, seed ^ kS1) ^ kS0 ^ sizeof(FlowKey), seed ^ kS2);
}

/// A random 64-bit seed (std::random_device; falls back to time and address entropy).
std::uint64_t randomHashSeed() noexcept;

/// Hash functor for unordered containers. Deterministic by default; pass
/// FlowKeyHash{randomHashSeed()} to the container for keys that come off the wire.
struct FlowKeyHash {
  std::uint64_t seed = 0;
  std::size_t operator()(const FlowKey& k) const noexcept {
    return static_cast<std::size_t>(hashFlowKey(k, seed));
  }
};

/// "1.2.3.4:80" for (mapped) IPv4, "[2001:db8::1]:443" for IPv6.
std::string formatEndpoint(const IpAddress& addr, std::uint16_t port);

/// "local_ip:local_port -> remote_ip:remote_port", as /api/live shows a connection.
std::string formatConnection(const FlowKey& key);

}  // namespace ayaflow::flow
