// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_api: what the HTTP server's listener, HTTP sessions and WebSocket
// sessions share: options, counters, the response-memory budget, rate-limited logging and
// the admission bookkeeping (admission.h). No Boost here.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

#include "admission.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/router.h"
#include "ayaflow/common/logging.h"

namespace ayaflow::api::detail {

/// Why a request was refused before it reached the router (ayaflow_http_request_errors_total).
enum class RequestError : std::uint8_t {
  kBadRequest,      ///< malformed request line, header, chunk or target
  kHeaderLimit,     ///< header bytes over header_limit (431)
  kHeaderCount,     ///< more header fields than max_header_fields (431)
  kBodyLimit,       ///< body over body_limit (413)
  kChunkExtension,  ///< chunk extensions over max_chunk_extension_bytes (400)
  kTrailer,         ///< trailer over the read buffer (431)
  kTimeout,         ///< request not complete within read_timeout (connection closed)
  kWebSocket,       ///< bad WebSocket handshake (400/426)
  kCount
};
inline constexpr const char* kRequestErrorNames[] = {
    "bad_request",     "header_limit", "header_count", "body_limit",
    "chunk_extension", "trailer",      "timeout",      "websocket_handshake"};
static_assert(std::size(kRequestErrorNames) == static_cast<std::size_t>(RequestError::kCount));

/// Lets a worker thread post to the server's io_context only while it exists: stop() closes
/// the gate after the server threads have returned and before the io_context goes away.
class PostGate {
 public:
  /// Runs `fn` under the gate's mutex if the gate is still open; false otherwise.
  bool run(const std::function<void()>& fn) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!open_) return false;
    fn();
    return true;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = false;
  }

 private:
  std::mutex mutex_;
  bool open_ = true;  // guarded by mutex_
};

/// At most one log line per `interval`, with the count of the ones suppressed meanwhile.
/// Thread-safe; formats nothing when suppressing.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::seconds interval) : interval_(interval) {}

  void log(spdlog::logger& log, spdlog::level::level_enum level, std::string_view what,
           std::string_view detail) {
    std::uint64_t suppressed = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      if (logged_once_ && now - last_ < interval_) {
        ++suppressed_;
        return;
      }
      logged_once_ = true;
      last_ = now;
      suppressed = suppressed_;
      suppressed_ = 0;
    }
    if (suppressed == 0) {
      log.log(level, "{}: {}", what, detail);
    } else {
      log.log(level, "{}: {} ({} similar suppressed in the last {} s)", what, detail, suppressed,
              interval_.count());
    }
  }

 private:
  const std::chrono::seconds interval_;
  std::mutex mutex_;
  bool logged_once_ = false;      // guarded by mutex_
  Clock::time_point last_{};      // guarded by mutex_
  std::uint64_t suppressed_ = 0;  // guarded by mutex_
};

/// State shared by the listener, the sessions and HttpServer::Impl. Outlives all of them
/// (declared before the io_context in Impl).
struct ServerCore {
  ServerCore(HttpServerOptions opts, const Router& r)
      : options(std::move(opts)),
        router(r),
        log(logger("api")),
        request_log(options.log_interval),
        server_log(options.log_interval),
        gate(std::make_shared<PostGate>()),
        admission(AdmissionLimits{options.max_connections, options.max_connections_per_client,
                                  options.reserve_connections}) {}

  const HttpServerOptions options;
  const Router& router;
  const std::shared_ptr<spdlog::logger> log;
  RateLimitedLog request_log;  // parser errors, bad handshakes, evictions
  RateLimitedLog server_log;   // exceptions escaping the io_context (bugs)
  const std::shared_ptr<PostGate> gate;
  Admission admission;  // the live connections, by pool and client

  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> denied{0};
  std::atomic<std::uint64_t> reserve_admitted{0};
  std::atomic<std::uint64_t> reserve_refused{0};  // non-reserved path on a reserve connection
  std::atomic<std::uint64_t> handler_timeouts{0};
  std::atomic<std::uint64_t> responses_shed{0};  // 503 instead of a large answer
  std::atomic<std::size_t> response_bytes{0};    // response bodies being written now
  std::atomic<std::uint64_t> accept_errors{0};
  std::array<std::atomic<std::uint64_t>, 5> responses{};  // by status class, 1xx..5xx
  std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(RequestError::kCount)>
      request_errors{};

  void countResponse(unsigned status) {
    if (status >= 100 && status < 600) {
      responses[status / 100 - 1].fetch_add(1, std::memory_order_relaxed);
    }
  }
  /// Answers up to this size are always granted (error bodies, health, small JSON).
  static constexpr std::size_t kSmallResponse = 16 * 1024;

  /// Counts `n` body bytes about to be written; false (nothing counted) when a large answer
  /// would take the total over response_memory_limit.
  bool acquireResponseBytes(std::size_t n) {
    if (n <= kSmallResponse) {
      response_bytes.fetch_add(n, std::memory_order_relaxed);
      return true;
    }
    std::size_t current = response_bytes.load(std::memory_order_relaxed);
    do {
      if (current + n > options.response_memory_limit) return false;
    } while (
        !response_bytes.compare_exchange_weak(current, current + n, std::memory_order_relaxed));
    return true;
  }
  void releaseResponseBytes(std::size_t n) {
    if (n != 0) response_bytes.fetch_sub(n, std::memory_order_relaxed);
  }

  void countRequestError(RequestError e) {
    request_errors[static_cast<std::size_t>(e)].fetch_add(1, std::memory_order_relaxed);
  }
};

}  // namespace ayaflow::api::detail
