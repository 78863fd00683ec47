// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Small helpers shared by the traffic generators in bench/.

#include <arpa/inet.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace ayaflow::bench {

/// Parses a decimal unsigned integer <= max; false on junk, sign or overflow.
inline bool parseUnsigned(const char* text, std::uint64_t max, std::uint64_t& out) {
  if (*text < '0' || *text > '9') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return false;
  out = v;
  return true;
}

/// Parses the generators' first two arguments, "SRC_ADDR" and "DST_ADDR:PORT" (IPv4).
/// Returns nullptr on success, else what is wrong (for the usage message).
inline const char* parseEndpoints(const char* src_text, const char* dst_text, in_addr& src,
                                  in_addr& dst, std::uint64_t& port) {
  if (inet_pton(AF_INET, src_text, &src) != 1) return "SRC_ADDR: not an IPv4 address";
  const std::string dest = dst_text;
  const auto colon = dest.rfind(':');
  if (colon == std::string::npos) return "DST_ADDR:PORT: missing ':PORT'";
  if (inet_pton(AF_INET, dest.substr(0, colon).c_str(), &dst) != 1) {
    return "DST_ADDR: not an IPv4 address";
  }
  if (!parseUnsigned(dest.c_str() + colon + 1, 65535, port) || port == 0) {
    return "PORT: not a port (1-65535)";
  }
  return nullptr;
}

/// CLOCK_MONOTONIC in nanoseconds.
inline std::uint64_t nowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Sleeps until nowNs() reaches `t` (CLOCK_MONOTONIC), through signals.
inline void sleepUntilNs(std::uint64_t t) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(t / 1000000000ULL);
  ts.tv_nsec = static_cast<long>(t % 1000000000ULL);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

}  // namespace ayaflow::bench
