// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_api: what the HTTP server's listener, HTTP sessions and WebSocket
// sessions share. No Boost here.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ayaflow/api/http_server.h"
#include "ayaflow/api/router.h"
#include "ayaflow/common/logging.h"

namespace ayaflow::api::detail {

using Clock = std::chrono::steady_clock;
using PeerKey = std::array<std::uint8_t, 16>;

struct PeerKeyHash {
  std::size_t operator()(const PeerKey& key) const noexcept {
    std::size_t h = 1469598103934665603ull;  // FNV-1a
    for (const std::uint8_t b : key) h = (h ^ b) * 1099511628211ull;
    return h;
  }
};

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

/// Where an accepted connection was admitted (see HttpServer's admission comment).
enum class Pool : std::uint8_t { kGeneral, kReserve, kRejected, kStopping };

/// What a connection is doing, for eviction: only kWaiting connections of the general pool
/// (waiting for or reading a request, i.e. idle or slow) may be evicted.
enum class ConnState : std::uint8_t { kWaiting, kBusy, kPinned };

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
        gate(std::make_shared<PostGate>()) {}

  const HttpServerOptions options;
  const Router& router;
  const std::shared_ptr<spdlog::logger> log;
  RateLimitedLog request_log;  // parser errors, bad handshakes, evictions
  RateLimitedLog server_log;   // exceptions escaping the io_context (bugs)
  const std::shared_ptr<PostGate> gate;

  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> denied{0};
  std::atomic<std::uint64_t> evicted{0};
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

  /// reserve_connections, at most a quarter of max_connections.
  std::size_t reserveCapacity() const {
    return std::min(options.reserve_connections, options.max_connections / 4);
  }
  std::size_t generalCapacity() const {
    return std::max<std::size_t>(1, options.max_connections - reserveCapacity());
  }

  /// Admission at accept (listener strand). Registers `key` in the pool it gets. When the
  /// general pool or the peer's share is full, the oldest waiting (idle or slow) connection
  /// of the peer, or else of everyone, is evicted: it stops counting at once and is
  /// returned in `victim` for the caller to close outside the lock.
  Pool admit(const Connection* key, std::weak_ptr<Connection> session, const PeerKey& peer,
             std::shared_ptr<Connection>& victim) {
    std::lock_guard<std::mutex> lock(mutex);
    if (stopping) return Pool::kStopping;
    const std::size_t per_client = options.max_connections_per_client;
    const auto peer_it = per_peer.find(peer);
    const std::size_t peer_count = peer_it == per_peer.end() ? 0 : peer_it->second;
    bool room = false;
    if (per_client != 0 && peer_count >= per_client) {
      room = evictOldestLocked(&peer, victim);  // the peer pays with its own oldest
    } else if (general < generalCapacity()) {
      room = true;
    } else {
      room = evictOldestLocked(nullptr, victim);
    }
    if (room) {
      ++general;
      ++per_peer[peer];
      sessions.emplace(key, Slot{std::move(session), peer, Pool::kGeneral, ConnState::kWaiting,
                                 Clock::now(), true});
      return Pool::kGeneral;
    }
    if (reserve < reserveCapacity()) {
      ++reserve;
      sessions.emplace(key, Slot{std::move(session), peer, Pool::kReserve, ConnState::kBusy,
                                 Clock::now(), true});
      return Pool::kReserve;
    }
    return Pool::kRejected;
  }

  /// The session's state changed (on its strand); kWaiting restarts its idle clock.
  void setState(const Connection* key, ConnState state) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = sessions.find(key);
    if (it == sessions.end()) return;
    it->second.state = state;
    if (state == ConnState::kWaiting) it->second.since = Clock::now();
  }

  /// A WebSocket session takes over the HTTP session's slot (same pool and peer).
  bool transfer(const Connection* from, const Connection* to, std::weak_ptr<Connection> session) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = sessions.find(from);
    if (stopping || it == sessions.end()) return false;
    Slot slot = std::move(it->second);
    sessions.erase(it);
    slot.conn = std::move(session);
    slot.state = ConnState::kPinned;
    sessions.emplace(to, std::move(slot));
    return true;
  }

  void unregisterSession(const Connection* key) {
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = sessions.find(key);
    if (it == sessions.end()) return;
    releaseLocked(it->second);
    sessions.erase(it);
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
      if (auto session = entry.second.conn.lock()) out.push_back(std::move(session));
    }
    return out;
  }

  void setStopping() {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }

 private:
  struct Slot {
    std::weak_ptr<Connection> conn;
    PeerKey peer;
    Pool pool;
    ConnState state;
    Clock::time_point since;  // when it last started waiting
    bool counted;             // false once evicted: its slot is already given away
  };

  void releaseLocked(Slot& slot) {
    if (!slot.counted) return;
    slot.counted = false;
    if (slot.pool == Pool::kReserve) {
      --reserve;
      return;
    }
    --general;
    const auto it = per_peer.find(slot.peer);
    if (it != per_peer.end() && --it->second == 0) per_peer.erase(it);
  }

  /// The oldest kWaiting general connection (of `peer` if given) stops counting and goes to
  /// `victim`. O(connections), run only when a pool is full.
  bool evictOldestLocked(const PeerKey* peer, std::shared_ptr<Connection>& victim) {
    Slot* oldest = nullptr;
    for (auto& [key, slot] : sessions) {
      if (!slot.counted || slot.pool != Pool::kGeneral || slot.state != ConnState::kWaiting) {
        continue;
      }
      if (peer != nullptr && slot.peer != *peer) continue;
      if (oldest == nullptr || slot.since < oldest->since) oldest = &slot;
    }
    if (oldest == nullptr) return false;
    victim = oldest->conn.lock();
    releaseLocked(*oldest);
    evicted.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  std::mutex mutex;
  bool stopping = false;  // guarded by mutex
  /// Live sessions, for stop(), admission and eviction. guarded by mutex
  std::unordered_map<const Connection*, Slot> sessions;
  /// General-pool connections per client address. guarded by mutex
  std::unordered_map<PeerKey, std::size_t, PeerKeyHash> per_peer;
  std::size_t general = 0;  // counted general-pool connections; guarded by mutex
  std::size_t reserve = 0;  // counted reserve connections; guarded by mutex
};

}  // namespace ayaflow::api::detail
