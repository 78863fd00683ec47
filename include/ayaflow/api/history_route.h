// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "ayaflow/api/router.h"
#include "ayaflow/flow/history.h"

namespace ayaflow::api {

/// Runs a history query; may throw (std::system_error with ETIMEDOUT: the query was too
/// slow; anything else: storage failure).
using HistoryQueryFn = std::function<std::vector<flow::HistoryRow>(const flow::HistoryQuery&)>;

/// Parses the query parameters of GET /api/history into a HistoryQuery, or returns the
/// message of a 400 answer naming the parameter. Parameters (each at most once; any other
/// name is an error):
///   limit      1..N, default 100; above 1000 it is capped at 1000; 0, negative or not a
///              decimal integer is an error
///   since      Unix ms (decimal integer, may be negative); rows with timestamp >= since
///   until      Unix ms; rows with timestamp <= until; since > until is an error
///   ip         an IPv4 or IPv6 literal (no brackets, no zone); rows from or to it
///   port       1..65535; rows from or to it
///   protocol   tcp, udp (any case), 6 or 17
///   direction  ingress or egress (any case)
std::variant<flow::HistoryQuery, std::string> parseHistoryQuery(const Request& request);

/// The JSON array GET /api/history answers: one object per row with id, timestamp (Unix ms),
/// src_ip, dst_ip, src_port, dst_port, protocol, length, packet_count, direction;
/// src_hostname, dst_hostname and domain only when set. An empty protocol or direction (a
/// row migrated from a database that had no such column) is null.
std::string historyJson(const std::vector<flow::HistoryRow>& rows);

/// Registers GET /api/history on `router`. Answers 200 with historyJson(), 400
/// with {"error": "..."} for a bad parameter, 503 when `query` throws a system_error with
/// ETIMEDOUT and 500 for any other exception (both with a JSON error body). `query` is
/// called on server threads, possibly concurrently: it must be thread-safe
/// (store::Store::query is).
void addHistoryRoute(Router& router, HistoryQueryFn query);

}  // namespace ayaflow::api
