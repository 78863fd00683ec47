// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/interface_name.h"

#include <net/if.h>

#include <chrono>
#include <map>
#include <mutex>
#include <utility>

namespace ayaflow::common {

std::string interfaceLabel(std::uint32_t ifindex) {
  if (ifindex == 0) return "other";
  // if_indextoname() costs a socket and an ioctl (~10 us), and /api/live names 50
  // connections per request: keep each answer for a few seconds.
  constexpr auto kTtl = std::chrono::seconds(5);
  constexpr std::size_t kMaxEntries = 4096;
  static std::mutex mu;
  static std::map<std::uint32_t, std::pair<std::string, std::chrono::steady_clock::time_point>>
      cache;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(ifindex);
    if (it != cache.end() && now - it->second.second < kTtl) return it->second.first;
  }
  char name[IF_NAMESIZE] = {};
  std::string label = ::if_indextoname(ifindex, name) != nullptr
                          ? std::string(name)
                          : "ifindex_" + std::to_string(ifindex);
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= kMaxEntries) cache.clear();
  cache[ifindex] = {label, now};
  return label;
}

}  // namespace ayaflow::common
