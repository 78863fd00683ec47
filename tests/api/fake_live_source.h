// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "ayaflow/api/live_source.h"

namespace ayaflow::api::fake {

/// LiveSource with fixed values, set before the server starts (then read-only, so safe to
/// read from server threads).
class FakeLiveSource : public LiveSource {
 public:
  Totals totals_value{};
  std::uint64_t active = 0;
  double uptime = 0.0;
  std::vector<LiveConnection> connections;  // any order
  /// When set, topConnections() ignores `n` (to check the route truncates anyway).
  bool ignore_limit = false;
  /// When set, topConnections() throws (a failing source).
  std::atomic<bool> fail_top{false};
  /// topConnections() calls so far.
  mutable std::atomic<int> top_calls{0};

  Totals totals() const override { return totals_value; }
  std::uint64_t activeConnections() const override { return active; }
  double uptimeSeconds() const override { return uptime; }
  std::vector<LiveConnection> topConnections(std::size_t n) const override {
    ++top_calls;
    if (fail_top) throw std::runtime_error("map unavailable");
    auto sorted = connections;
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return a.packets_count > b.packets_count;
    });
    if (!ignore_limit && sorted.size() > n) sorted.resize(n);
    return sorted;
  }

  /// `count` connections; connection i has packets 1000 + 7 * i, so higher i ranks first.
  void fillConnections(int count) {
    connections.clear();
    for (int i = 0; i < count; ++i) {
      const auto u = static_cast<std::uint64_t>(i);
      LiveConnection c;
      c.connection =
          "10.0.0." + std::to_string(i) + ":" + std::to_string(40000 + i) + " -> 93.184.216.34:443";
      c.bytes_sent = 100 * u + 1;
      c.bytes_received = 200 * u + 2;
      c.packets_count = 1000 + 7 * u;
      connections.push_back(std::move(c));
    }
  }
};

}  // namespace ayaflow::api::fake
