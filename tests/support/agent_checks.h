// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// What end-to-end tests read back from a running agent (its API, /metrics and database)
// and the ground truth they compare it with.

#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent_process.h"
#include "netns.h"

namespace ayaflow::test {

struct Totals {
  std::uint64_t packets = 0, bytes = 0;
};

/// The sum over every 5-tuple a LinkCounter or TunDevice saw.
Totals linkTotals(const std::map<LinkCounter::Key, LinkCounter::Count>& counts);

/// "a.b.c.d:port" or "[v6]:port", as /api/live shows connection ends.
std::string endpoint(const std::string& addr, std::uint16_t port);

/// The value of an exposition line "name value" (name may include labels), or
/// UINT64_MAX if absent.
std::uint64_t metricValue(const std::string& text, const std::string& name);

/// Polls /api/stats until total_packets reaches `packets` (the kernel totals are exact at
/// once; the connection map follows within a drain interval); gives up after `timeout`.
nlohmann::json waitForStats(AgentProcess& agent, std::uint64_t packets,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Waits until /metrics shows `value` for `name`; returns the last value seen.
std::uint64_t waitForMetric(AgentProcess& agent, const std::string& name, std::uint64_t value);

/// The first row of `sql` on the agent's database, each column as text
/// ("" for NULL); empty (and a test failure) if the query fails.
std::vector<std::string> queryRow(const std::string& db_path, const std::string& sql);
/// Every row of `sql`, as queryRow.
std::vector<std::vector<std::string>> queryRows(const std::string& db_path, const std::string& sql);

}  // namespace ayaflow::test
