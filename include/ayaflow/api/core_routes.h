// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "ayaflow/api/live_source.h"
#include "ayaflow/api/router.h"

namespace ayaflow::api {

/// Number of connections GET /api/live returns.
inline constexpr std::size_t kLiveTopConnections = 50;

/// Default for addCoreRoutes()'s `live_max_age`.
inline constexpr std::chrono::milliseconds kLiveMaxAge{250};

/// Registers the live-state routes on `router`:
///   GET /api/health  {"status":"ok","active_connections","total_packets"}
///   GET /api/stats   {"uptime_seconds","total_packets","total_bytes","active_connections",
///                     "packets_per_second","bytes_per_second"}  (rates = totals / uptime)
///   GET /api/live    {"connections":[{"connection","stats":{"bytes_sent","bytes_received",
///                     "packets_count"}}...],"total_packets","total_bytes"}  (top 50)
/// Counters are JSON unsigned integers; uptime and rates are numbers (0 when uptime is 0).
/// `source` is borrowed and must outlive the router.
///
/// /api/live's connection list (LiveSource::topConnections(), a scan of the whole map under
/// its shard locks) is reused for `live_max_age` and computed by one request at a time:
/// however hard /api/live is hammered, the map is scanned at most 1 / live_max_age times a
/// second, so serving it cannot stall capture. Its totals are always read fresh.
/// 0 disables the reuse.
void addCoreRoutes(Router& router, const LiveSource& source,
                   std::chrono::milliseconds live_max_age = kLiveMaxAge);

/// The `/api/stream` frame for the current state of `source`:
/// `{"total_packets":N,"total_bytes":N,"active_connections":N}` (unsigned integers).
/// For StreamHub::publish(); may throw what `source` throws.
std::string streamFrame(const LiveSource& source);

}  // namespace ayaflow::api
