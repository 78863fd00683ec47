// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/history_route.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "ayaflow/common/metrics.h"
#include "ayaflow/flow/names.h"

namespace ayaflow::api {
namespace {

constexpr std::string_view kKnown[] = {"limit", "since",    "until",     "ip",
                                       "port",  "protocol", "direction", "namespace",
                                       "pod",   "workload", "state"};

/// Longest Kubernetes name: a DNS subdomain (pod and most workload names; namespaces, DNS
/// labels, stop at 63).
constexpr std::size_t kMaxNameLength = 253;

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

/// Why `value` (given for `name`) cannot be a Kubernetes name, or nullopt. Names are matched
/// exactly, so only what no stored name can be is refused: too long, or holding a control
/// character (not echoed: error messages and logs stay on one line).
std::optional<std::string> badName(const std::string& name, std::string_view value) {
  if (value.size() > kMaxNameLength) {
    return name + ": " + shown(value) + " is longer than " + std::to_string(kMaxNameLength) +
           " characters";
  }
  for (const char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return name + ": holds a control character";
  }
  return std::nullopt;
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
             " (known: limit, since, until, ip, port, protocol, direction, namespace, pod, "
             "workload, state)";
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
    } else if (name == "direction") {
      q.direction = flow::parseDirection(value);
      if (!q.direction) return "direction: " + shown(value) + " is not ingress or egress";
    } else if (name == "state") {
      if (!flow::parseTcpState(value)) {
        return "state: " + shown(value) +
               " is not opening, established, closed, reset, refused or unanswered";
      }
      q.tcp_state = value;
    } else {  // namespace, pod, workload: exact text as the container runtime gave it
      if (auto error = badName(name, value)) return std::move(*error);
      (name == "namespace" ? q.ns : name == "pod" ? q.pod : q.workload) = value;
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
    if (r.interface) row["interface"] = *r.interface;
    // Kubernetes names, as /api/live names its ends (addEndpointNames), only when known.
    const auto name = [&row](const char* key, const std::optional<std::string>& value) {
      if (value) row[key] = *value;
    };
    name("src_namespace", r.src_namespace);
    name("src_pod", r.src_pod);
    name("src_workload", r.src_workload);
    name("src_workload_kind", r.src_workload_kind);
    name("src_node", r.src_node);
    name("dst_namespace", r.dst_namespace);
    name("dst_pod", r.dst_pod);
    name("dst_workload", r.dst_workload);
    name("dst_workload_kind", r.dst_workload_kind);
    name("dst_node", r.dst_node);
    // TCP health, only where the row has it (docs/api.md).
    if (r.tcp_flags) row["tcp_flags"] = *r.tcp_flags;
    name("state", r.tcp_state);
    if (r.rtt_us) row["rtt_us"] = *r.rtt_us;
    name("rtt_kind", r.rtt_kind);
    if (r.retransmits) row["retransmits"] = *r.retransmits;
    if (r.drops) row["drops"] = *r.drops;
    array.push_back(std::move(row));
  }
  // Stored text may come from an old database or an enrichment source: never throw on it.
  return array.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

class HistoryRoute::Impl {
 public:
  Impl(HistoryQueryFn query, HistoryRouteOptions options)
      : query_(std::move(query)), options_(options) {
    const unsigned count = std::clamp(options_.threads, 1u, 8u);
    threads_.reserve(count);
    for (unsigned i = 0; i < count; ++i) threads_.emplace_back([this] { run(); });
  }

  ~Impl() {
    std::deque<Task> abandoned;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      abandoned.swap(queue_);
    }
    cv_.notify_all();
    for (auto& task : abandoned) task.respond(busy("shutting down"));
    for (auto& thread : threads_) thread.join();
  }

  void handle(const Request& request, Respond respond) {
    auto parsed = parseHistoryQuery(request);
    if (auto* error = std::get_if<std::string>(&parsed)) {
      bad_request_.fetch_add(1, std::memory_order_relaxed);
      return respond(jsonError(400, *error));
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // A query waits only if no thread is free; at most queue_limit of them.
      const bool thread_free = running_ + queue_.size() < threads_.size();
      if (!stopping_ && (thread_free || queue_.size() < options_.queue_limit)) {
        queue_.push_back(Task{std::get<flow::HistoryQuery>(std::move(parsed)), std::move(respond)});
        cv_.notify_one();
        return;
      }
    }
    busy_.fetch_add(1, std::memory_order_relaxed);
    respond(busy("history busy: too many queries in progress"));
  }

  HistoryRouteStats stats() const {
    HistoryRouteStats s;
    s.ok = ok_.load(std::memory_order_relaxed);
    s.bad_request = bad_request_.load(std::memory_order_relaxed);
    s.busy = busy_.load(std::memory_order_relaxed);
    s.timeout = timeout_.load(std::memory_order_relaxed);
    s.failed = failed_.load(std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(mutex_);
    s.queued = queue_.size();
    s.running = running_;
    return s;
  }

 private:
  struct Task {
    flow::HistoryQuery query;
    Respond respond;
  };

  Response busy(std::string_view message) const {
    Response r = jsonError(503, message);
    r.headers.emplace_back("Retry-After", std::to_string(options_.retry_after.count()));
    return r;
  }

  void run() {
    pthread_setname_np(pthread_self(), "ayaflow-query");  // told apart in per-thread CPU figures
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        task = std::move(queue_.front());
        queue_.pop_front();
        ++running_;
      }
      task.respond(execute(task.query));  // posts to the connection's strand; never blocks
      std::lock_guard<std::mutex> lock(mutex_);
      --running_;
    }
  }

  Response execute(const flow::HistoryQuery& query) {
    try {
      Response response;
      response.body = historyJson(query_(query));
      ok_.fetch_add(1, std::memory_order_relaxed);
      return response;
    } catch (const std::system_error& e) {
      if (e.code().value() == ETIMEDOUT) {
        timeout_.fetch_add(1, std::memory_order_relaxed);
        return busy(std::string("history query took too long: ") + e.what());
      }
      failed_.fetch_add(1, std::memory_order_relaxed);
      return jsonError(500, std::string("history unavailable: ") + e.what());
    } catch (const std::exception& e) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      return jsonError(500, std::string("history unavailable: ") + e.what());
    }
  }

  const HistoryQueryFn query_;
  const HistoryRouteOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Task> queue_;   // guarded by mutex_
  std::size_t running_ = 0;  // guarded by mutex_
  bool stopping_ = false;    // guarded by mutex_
  std::atomic<std::uint64_t> ok_{0}, bad_request_{0}, busy_{0}, timeout_{0}, failed_{0};
  std::vector<std::thread> threads_;  // last: started after everything above exists
};

HistoryRoute::HistoryRoute(HistoryQueryFn query, HistoryRouteOptions options)
    : impl_(std::make_unique<Impl>(std::move(query), options)) {}

HistoryRoute::~HistoryRoute() = default;

void HistoryRoute::handle(const Request& request, Respond respond) {
  impl_->handle(request, std::move(respond));
}

HistoryRouteStats HistoryRoute::stats() const { return impl_->stats(); }

std::vector<prometheus::MetricFamily> historyRouteFamilies(const HistoryRouteStats& s) {
  common::MetricFamilies f;
  f.labelledCounter("ayaflow_http_history_requests_total",
                    "GET /api/history answers by result (busy: queue full, 503; timeout: query "
                    "time budget, 503).",
                    "result",
                    {{"ok", s.ok},
                     {"bad_request", s.bad_request},
                     {"busy", s.busy},
                     {"timeout", s.timeout},
                     {"error", s.failed}});
  f.gauge("ayaflow_http_history_queries_queued", "History queries waiting for a query thread.",
          static_cast<double>(s.queued));
  f.gauge("ayaflow_http_history_queries_running", "History queries running now.",
          static_cast<double>(s.running));
  return f.take();
}

std::shared_ptr<const prometheus::Collectable> HistoryRoute::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [this] { return historyRouteFamilies(stats()); });
}

std::shared_ptr<HistoryRoute> addHistoryRoute(Router& router, HistoryQueryFn query,
                                              HistoryRouteOptions options) {
  auto route = std::make_shared<HistoryRoute>(std::move(query), options);
  router.addAsync("GET", "/api/history", [route](const Request& request, Respond respond) {
    route->handle(request, std::move(respond));
  });
  return route;
}

}  // namespace ayaflow::api
