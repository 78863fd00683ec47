// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Small helpers shared by the api-tier tests.

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/api/http_server.h"
#include "ayaflow/common/cidr.h"

namespace ayaflow::api::test_util {

/// Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit); returns the new
/// soft limit.
inline rlim_t raiseFdLimit(rlim_t want) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < want) {
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? want : std::min(want, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

/// Resident set size of this process (server and test clients together), in bytes.
inline std::uint64_t residentBytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns its last value.
inline bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

/// The accept filter the app builds from --allowed-ips: a peer is allowed when some CIDR
/// contains it (IPv4 peers arrive IPv4-mapped and match IPv4 CIDRs). Throws on bad text.
inline std::vector<common::Cidr> cidrs(const std::vector<std::string>& texts) {
  std::vector<common::Cidr> parsed;
  for (const auto& text : texts) {
    const auto cidr = common::Cidr::parse(text);
    if (!cidr) throw std::invalid_argument("bad CIDR " + text);
    parsed.push_back(*cidr);
  }
  return parsed;
}

/// An accept filter allowing `texts` (for tests of the filter hook itself).
inline std::function<bool(const PeerAddress&)> allowlist(const std::vector<std::string>& texts) {
  return [parsed = cidrs(texts)](const PeerAddress& peer) {
    for (const auto& cidr : parsed) {
      if (cidr.contains(peer.bytes)) return true;
    }
    return false;
  };
}

}  // namespace ayaflow::api::test_util
