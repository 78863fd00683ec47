// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_api: connection admission at accept (see HttpServer's admission
// comment): the general pool with its per-client caps, eviction of the longest-waiting
// connection, and the reserve for health and metrics. Bookkeeping only, no sockets and no
// Boost (tests/api/admission_test.cpp drives it alone).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

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

/// The HttpServerOptions fields admission depends on.
struct AdmissionLimits {
  std::size_t max_connections = 0;
  std::size_t max_connections_per_client = 0;  // 0: no per-client cap
  std::size_t reserve_connections = 0;
};

/// The live connections, by pool and client. Owned by ServerCore; thread-safe (one mutex).
/// Holds weak references only: a connection unregisters itself when it is destroyed.
class Admission {
 public:
  explicit Admission(AdmissionLimits limits) : limits_(limits) {}

  /// reserve_connections, at most a quarter of max_connections.
  std::size_t reserveCapacity() const;
  std::size_t generalCapacity() const;

  /// Admission at accept (listener strand). Registers `key` in the pool it gets. When the
  /// general pool or the peer's share is full, the oldest waiting (idle or slow) connection
  /// of the peer, or else of everyone, is evicted: it stops counting at once and is
  /// returned in `victim` for the caller to close outside the lock.
  Pool admit(const Connection* key, std::weak_ptr<Connection> session, const PeerKey& peer,
             std::shared_ptr<Connection>& victim);

  /// The session's state changed (on its strand); kWaiting restarts its idle clock.
  void setState(const Connection* key, ConnState state);

  /// A WebSocket session takes over the HTTP session's slot (same pool and peer).
  bool transfer(const Connection* from, const Connection* to, std::weak_ptr<Connection> session);

  void unregisterSession(const Connection* key);

  std::size_t activeCount();

  /// Strong references to every live session (taken under the mutex, used outside it: the
  /// last reference may go while the caller holds none of our locks).
  std::vector<std::shared_ptr<Connection>> liveSessions();

  /// From now on admit() answers kStopping and transfer() refuses.
  void setStopping();

  /// Connections evicted so far.
  std::uint64_t evicted() const { return evicted_.load(); }

 private:
  struct Slot {
    std::weak_ptr<Connection> conn;
    PeerKey peer;
    Pool pool;
    ConnState state;
    Clock::time_point since;  // when it last started waiting
    bool counted;             // false once evicted: its slot is already given away
  };

  void releaseLocked(Slot& slot);

  /// The oldest kWaiting general connection (of `peer` if given) stops counting and goes to
  /// `victim`. O(connections), run only when a pool is full.
  bool evictOldestLocked(const PeerKey* peer, std::shared_ptr<Connection>& victim);

  const AdmissionLimits limits_;
  std::atomic<std::uint64_t> evicted_{0};
  std::mutex mutex_;
  bool stopping_ = false;  // guarded by mutex_
  /// Live sessions, for stop(), admission and eviction. guarded by mutex_
  std::unordered_map<const Connection*, Slot> sessions_;
  /// General-pool connections per client address. guarded by mutex_
  std::unordered_map<PeerKey, std::size_t, PeerKeyHash> per_peer_;
  std::size_t general_ = 0;  // counted general-pool connections; guarded by mutex_
  std::size_t reserve_ = 0;  // counted reserve connections; guarded by mutex_
};

}  // namespace ayaflow::api::detail
