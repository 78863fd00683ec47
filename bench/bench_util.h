// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Small helpers shared by the traffic generators in bench/.

#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

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

/// CLOCK_MONOTONIC in nanoseconds.
inline std::uint64_t nowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace ayaflow::bench
