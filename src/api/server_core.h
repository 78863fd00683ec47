// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_api: what the HTTP server's listener, HTTP sessions and WebSocket
// sessions share. No Boost here.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ayaflow/api/http_server.h"
#include "ayaflow/api/router.h"
#include "ayaflow/common/logging.h"

namespace ayaflow::api::detail {

/// One open connection, HTTP or WebSocket.
class Connection {
 public:
  virtual ~Connection() = default;
  /// Any thread: closes the connection on its own strand (a WebSocket says 1001 first).
  virtual void closeFromServer() = 0;
  /// Once the server's threads have returned: make sure no StreamHub calls it any more
  /// (a publisher must not post to an io_context that is being destroyed).
  virtual void detach() {}
};

/// State shared by the listener, the sessions and HttpServer::Impl. Outlives all of them
/// (declared before the io_context in Impl).
struct ServerCore {
  ServerCore(HttpServerOptions opts, const Router& r)
      : options(std::move(opts)), router(r), log(logger("api")) {}

  const HttpServerOptions options;
  const Router& router;
  const std::shared_ptr<spdlog::logger> log;

  std::mutex mutex;
  bool stopping = false;  // guarded by mutex
  /// Live sessions, for stop() and the connection count. guarded by mutex
  std::unordered_map<const Connection*, std::weak_ptr<Connection>> sessions;

  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> denied{0};
  std::atomic<std::uint64_t> accept_errors{0};
  std::array<std::atomic<std::uint64_t>, 5> responses{};  // by status class, 1xx..5xx

  /// false once stopping: the caller drops the connection instead of serving it.
  bool registerSession(const Connection* key, std::weak_ptr<Connection> session) {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopping) return false;
    sessions.emplace(key, std::move(session));
    return true;
  }
  void countResponse(unsigned status) {
    if (status >= 100 && status < 600) {
      responses[status / 100 - 1].fetch_add(1, std::memory_order_relaxed);
    }
  }
  void unregisterSession(const Connection* key) {
    std::lock_guard<std::mutex> lock(mutex);
    sessions.erase(key);
  }
  std::size_t activeCount() {
    std::lock_guard<std::mutex> lock(mutex);
    return sessions.size();
  }
  /// Strong references to every live session (taken under the mutex, used outside it: the
  /// last reference may go while the caller holds none of our locks).
  std::vector<std::shared_ptr<Connection>> liveSessions() {
    std::vector<std::shared_ptr<Connection>> out;
    std::lock_guard<std::mutex> lock(mutex);
    for (const auto& entry : sessions) {
      if (auto session = entry.second.lock()) out.push_back(std::move(session));
    }
    return out;
  }
};

}  // namespace ayaflow::api::detail
