// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/history_route.h"

#include <cerrno>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <system_error>

#include "ayaflow/flow/names.h"

namespace ayaflow::api {
namespace {

constexpr std::string_view kKnown[] = {"limit", "since",    "until",    "ip",
                                       "port",  "protocol", "direction"};

/// The value as the user sent it, quoted and shortened for an error message.
std::string shown(std::string_view value) {
  constexpr std::size_t kMax = 64;
  std::string out = "'";
  out += value.substr(0, kMax);
  if (value.size() > kMax) out += "...";
  out += "'";
  return out;
}

/// A decimal integer: optional '-' when `allow_negative`, then digits only.
/// nullopt when malformed or out of int64 range.
std::optional<std::int64_t> parseInt(std::string_view s, bool allow_negative) {
  bool negative = false;
  if (!s.empty() && s.front() == '-' && allow_negative) {
    negative = true;
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  constexpr std::uint64_t kLimit = static_cast<std::uint64_t>(INT64_MAX) + 1;
  for (const char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (v > kLimit) return std::nullopt;
  }
  if (!negative && v == kLimit) return std::nullopt;
  if (negative) return v == kLimit ? INT64_MIN : -static_cast<std::int64_t>(v);
  return static_cast<std::int64_t>(v);
}

bool allDigits(std::string_view s) {
  if (s.empty()) return false;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

std::variant<flow::HistoryQuery, std::string> parseHistoryQuery(const Request& request) {
  flow::HistoryQuery q;
  bool seen[std::size(kKnown)] = {};
  for (const auto& [name, value] : request.query) {
    std::size_t which = std::size(kKnown);
    for (std::size_t i = 0; i < std::size(kKnown); ++i) {
      if (name == kKnown[i]) which = i;
    }
    if (which == std::size(kKnown)) {
      return "unknown parameter " + shown(name) +
             " (known: limit, since, until, ip, port, protocol, direction)";
    }
    if (seen[which]) return name + ": given more than once";
    seen[which] = true;
    if (value.empty()) return name + ": empty value";

    if (name == "limit") {
      // Any decimal above the maximum is capped, however long it is.
      if (!allDigits(value)) return "limit: " + shown(value) + " is not a positive integer";
      const auto v = parseInt(value, false);
      if (v && *v == 0) return "limit: must be at least 1";
      q.limit = !v || *v > static_cast<std::int64_t>(flow::HistoryQuery::kMaxLimit)
                    ? flow::HistoryQuery::kMaxLimit
                    : static_cast<std::size_t>(*v);
    } else if (name == "since" || name == "until") {
      const auto v = parseInt(value, true);
      if (!v) return name + ": " + shown(value) + " is not a Unix time in milliseconds";
      (name == "since" ? q.since_ms : q.until_ms) = *v;
    } else if (name == "ip") {
      q.ip = flow::IpAddress::parse(value);
      if (!q.ip) return "ip: " + shown(value) + " is not an IPv4 or IPv6 address";
    } else if (name == "port") {
      const auto v = allDigits(value) ? parseInt(value, false) : std::nullopt;
      if (!v || *v < 1 || *v > 65535) return "port: " + shown(value) + " is not a port (1-65535)";
      q.port = static_cast<std::uint16_t>(*v);
    } else if (name == "protocol") {
      q.protocol = flow::parseProtocol(value);
      if (!q.protocol) return "protocol: " + shown(value) + " is not tcp, udp, 6 or 17";
    } else {  // direction
      q.direction = flow::parseDirection(value);
      if (!q.direction) return "direction: " + shown(value) + " is not ingress or egress";
    }
  }
  if (q.since_ms && q.until_ms && *q.since_ms > *q.until_ms) {
    return "since: " + std::to_string(*q.since_ms) + " is after until (" +
           std::to_string(*q.until_ms) + ")";
  }
  return q;
}

std::string historyJson(const std::vector<flow::HistoryRow>& rows) {
  auto array = nlohmann::json::array();
  for (const flow::HistoryRow& r : rows) {
    nlohmann::json row = {
        {"id", r.id},          {"timestamp", r.timestamp_ms}, {"src_ip", r.src_ip},
        {"dst_ip", r.dst_ip},  {"src_port", r.src_port},      {"dst_port", r.dst_port},
        {"protocol", nullptr}, {"length", r.length},          {"packet_count", r.packet_count},
        {"direction", nullptr}};
    if (!r.protocol.empty()) row["protocol"] = r.protocol;
    if (!r.direction.empty()) row["direction"] = r.direction;
    if (r.src_hostname) row["src_hostname"] = *r.src_hostname;
    if (r.dst_hostname) row["dst_hostname"] = *r.dst_hostname;
    if (r.domain) row["domain"] = *r.domain;
    array.push_back(std::move(row));
  }
  // Stored text may come from an old database or an enrichment source: never throw on it.
  return array.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void addHistoryRoute(Router& router, HistoryQueryFn query) {
  router.add("GET", "/api/history", [query = std::move(query)](const Request& request) {
    auto parsed = parseHistoryQuery(request);
    if (auto* error = std::get_if<std::string>(&parsed)) return jsonError(400, *error);
    std::vector<flow::HistoryRow> rows;
    try {
      rows = query(std::get<flow::HistoryQuery>(parsed));
    } catch (const std::system_error& e) {
      if (e.code().value() == ETIMEDOUT) return jsonError(503, e.what());
      return jsonError(500, std::string("history unavailable: ") + e.what());
    } catch (const std::exception& e) {
      return jsonError(500, std::string("history unavailable: ") + e.what());
    }
    Response response;
    response.body = historyJson(rows);
    return response;
  });
}

}  // namespace ayaflow::api
