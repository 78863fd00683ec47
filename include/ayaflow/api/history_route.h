// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "ayaflow/api/router.h"
#include "ayaflow/flow/history.h"

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

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
///   namespace, pod, workload
///              a Kubernetes name (exact, case-sensitive; 1..253 characters, no control
///              characters); rows where either end has it
std::variant<flow::HistoryQuery, std::string> parseHistoryQuery(const Request& request);

/// The JSON array GET /api/history answers: one object per row with id, timestamp (Unix ms),
/// src_ip, dst_ip, src_port, dst_port, protocol, length, packet_count, direction;
/// src_hostname, dst_hostname, domain, interface and each end's Kubernetes names
/// (src_namespace, src_pod, src_workload, src_workload_kind, src_node, and the same with
/// dst_) only when set. An empty protocol or direction (a row migrated from a database that
/// had no such column) is null.
std::string historyJson(const std::vector<flow::HistoryRow>& rows);

struct HistoryRouteOptions {
  /// Threads running history queries (each query holds one for its whole duration; the
  /// store gives each thread its own read connection). 1..8.
  unsigned threads = 2;
  /// Queries waiting for a thread; one more is answered 503 + Retry-After at once. 0..256.
  std::size_t queue_limit = 16;
  /// Retry-After of those 503s and of a query that ran out of time (ETIMEDOUT). 1..60 s.
  std::chrono::seconds retry_after{2};
};

/// Counters of GET /api/history (monotonic except queued and running).
struct HistoryRouteStats {
  std::uint64_t ok = 0;           ///< 200
  std::uint64_t bad_request = 0;  ///< 400: bad parameter
  std::uint64_t busy = 0;         ///< 503: queue full
  std::uint64_t timeout = 0;      ///< 503: the query hit its time budget (ETIMEDOUT)
  std::uint64_t failed = 0;       ///< 500: storage error
  std::uint64_t queued = 0;       ///< waiting for a thread now
  std::uint64_t running = 0;      ///< running now
};

/// The ayaflow_http_history_* families of `stats`.
std::vector<prometheus::MetricFamily> historyRouteFamilies(const HistoryRouteStats& stats);

/// GET /api/history as an asynchronous route: parameters are checked on the server thread
/// (400 at once), the query and its JSON run on the route's own threads, so a query that
/// takes seconds never holds a server thread (/api/health keeps answering).
///
/// Answers 200 with historyJson(), 400 with {"error": "..."} for a bad parameter, 503 +
/// Retry-After when the queue is full or when `query` throws a system_error with ETIMEDOUT,
/// 500 for any other exception (all JSON). Ownership: owns its threads; the destructor
/// answers queued requests 503 and joins (waiting for running queries). Thread-safe.
class HistoryRoute {
 public:
  HistoryRoute(HistoryQueryFn query, HistoryRouteOptions options);
  ~HistoryRoute();
  HistoryRoute(const HistoryRoute&) = delete;
  HistoryRoute& operator=(const HistoryRoute&) = delete;

  /// The AsyncHandler of the route.
  void handle(const Request& request, Respond respond);

  HistoryRouteStats stats() const;
  /// ayaflow_http_history_* families, from stats() at every scrape.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

/// Registers GET /api/history on `router` (asynchronous, see HistoryRoute); `query` is called
/// on the route's threads, possibly concurrently: it must be thread-safe
/// (store::HistoryReader::query is). The router keeps the route alive; the returned pointer
/// is for its metrics.
std::shared_ptr<HistoryRoute> addHistoryRoute(Router& router, HistoryQueryFn query,
                                              HistoryRouteOptions options = {});

}  // namespace ayaflow::api
