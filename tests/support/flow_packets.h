// SPDX-License-Identifier: MIT OR Apache-2.0
// Packets and clocks for tests of the flow, pipeline and store rooms.
#pragma once

#include <time.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

#include "ayaflow/flow/packet.h"

namespace ayaflow::test {

inline std::uint64_t monotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

inline std::int64_t realtimeNowMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

/// The CLOCK_MONOTONIC timestamp (ns) that the pipeline converts to about `unix_ms`.
inline std::uint64_t monotonicForUnixMs(std::int64_t unix_ms) {
  const std::int64_t offset_ms =
      realtimeNowMs() - static_cast<std::int64_t>(monotonicNowNs() / 1000000);
  return static_cast<std::uint64_t>(unix_ms - offset_ms) * 1000000ULL;
}

/// An IPv4 TCP/UDP packet 10.0.<a>.<b> -> 192.168.0.1.
inline flow::Packet makePacket(std::uint32_t src_host, std::uint16_t src_port,
                               std::uint16_t dst_port, std::uint8_t protocol = 6,
                               flow::Direction direction = flow::Direction::kEgress,
                               std::uint32_t length = 100, std::uint64_t timestamp_ns = 0) {
  flow::Packet p;
  p.src = flow::IpAddress::fromV4(0x0a000000u | (src_host & 0xffffu));
  p.dst = flow::IpAddress::fromV4(0xc0a80001u);
  p.src_port = src_port;
  p.dst_port = dst_port;
  p.protocol = protocol;
  p.direction = direction;
  p.addr_type = 4;
  p.ifindex = 1;
  p.length = length;
  p.timestamp_ns = timestamp_ns != 0 ? timestamp_ns : monotonicNowNs();
  return p;
}

/// Polls `done` every 10 ms for up to `limit`; true once it holds. For conditions that
/// depend on a timer: the test checks the outcome, never how long it took.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace ayaflow::test
