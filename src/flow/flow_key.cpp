// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/flow/flow_key.h"

#include <atomic>
#include <chrono>
#include <random>

namespace ayaflow::flow {

std::uint64_t randomHashSeed() noexcept {
  try {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {
    // No entropy source: still differs per process and per call.
    static std::atomic<std::uint64_t> counter{0};
    const auto t =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return t ^ (reinterpret_cast<std::uintptr_t>(&counter) << 16) ^
           (counter.fetch_add(0x9e3779b97f4a7c15ull, std::memory_order_relaxed));
  }
}

std::string formatEndpoint(const IpAddress& addr, std::uint16_t port) {
  char buf[kMaxAddressText + 16];
  char* out = buf;
  const bool v6 = !addr.isV4Mapped();
  if (v6) *out++ = '[';
  out += formatAddress(addr, out);
  if (v6) *out++ = ']';
  *out++ = ':';
  char digits[6];
  int n = 0;
  unsigned v = port;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *out++ = digits[--n];
  return std::string(buf, static_cast<std::size_t>(out - buf));
}

std::string formatConnection(const FlowKey& key) {
  std::string s = formatEndpoint(key.local, key.local_port);
  s += " -> ";
  s += formatEndpoint(key.remote, key.remote_port);
  return s;
}

}  // namespace ayaflow::flow
