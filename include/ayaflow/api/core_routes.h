// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>

#include "ayaflow/api/live_source.h"
#include "ayaflow/api/router.h"

namespace ayaflow::api {

/// Number of connections GET /api/live returns.
inline constexpr std::size_t kLiveTopConnections = 50;

/// Registers the SPEC §5 live-state routes on `router`:
///   GET /api/health  {"status":"ok","active_connections","total_packets"}
///   GET /api/stats   {"uptime_seconds","total_packets","total_bytes","active_connections",
///                     "packets_per_second","bytes_per_second"}  (rates = totals / uptime)
///   GET /api/live    {"connections":[{"connection","stats":{"bytes_sent","bytes_received",
///                     "packets_count"}}...],"total_packets","total_bytes"}  (top 50)
/// Counters are JSON unsigned integers; uptime and rates are numbers (0 when uptime is 0).
/// `source` is borrowed and must outlive the router.
void addCoreRoutes(Router& router, const LiveSource& source);

}  // namespace ayaflow::api
