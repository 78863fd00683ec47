// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/core_routes.h"

#include <cstdint>
#include <nlohmann/json.hpp>

namespace ayaflow::api {
namespace {

Response jsonResponse(const nlohmann::json& body) {
  Response response;
  // Connection strings come from the kernel side; never let a stray byte turn into a throw.
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

double perSecond(std::uint64_t total, double uptime) {
  return uptime > 0.0 ? static_cast<double>(total) / uptime : 0.0;
}

}  // namespace

void addCoreRoutes(Router& router, const LiveSource& source) {
  router.add("GET", "/api/health", [&source](const Request&) {
    const auto totals = source.totals();
    return jsonResponse({{"status", "ok"},
                         {"active_connections", source.activeConnections()},
                         {"total_packets", totals.packets}});
  });

  router.add("GET", "/api/stats", [&source](const Request&) {
    const auto totals = source.totals();
    const double uptime = source.uptimeSeconds();
    return jsonResponse({{"uptime_seconds", uptime},
                         {"total_packets", totals.packets},
                         {"total_bytes", totals.bytes},
                         {"active_connections", source.activeConnections()},
                         {"packets_per_second", perSecond(totals.packets, uptime)},
                         {"bytes_per_second", perSecond(totals.bytes, uptime)}});
  });

  router.add("GET", "/api/live", [&source](const Request&) {
    auto connections = nlohmann::json::array();
    for (const auto& c : source.topConnections(kLiveTopConnections)) {
      connections.push_back({{"connection", c.connection},
                             {"stats",
                              {{"bytes_sent", c.bytes_sent},
                               {"bytes_received", c.bytes_received},
                               {"packets_count", c.packets_count}}}});
      // Defensive: a source returning more than asked must not widen the answer.
      if (connections.size() == kLiveTopConnections) break;
    }
    const auto totals = source.totals();
    return jsonResponse({{"connections", std::move(connections)},
                         {"total_packets", totals.packets},
                         {"total_bytes", totals.bytes}});
  });
}

}  // namespace ayaflow::api
