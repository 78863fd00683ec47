// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::api {

class Router;

/// Path of the WebSocket stream (a frame of totals every second).
inline constexpr const char* kStreamPath = "/api/stream";

/// Counters for /metrics and tests. Monotonic except `clients`.
struct StreamHubStats {
  std::uint64_t clients = 0;           ///< WebSocket clients subscribed now
  std::uint64_t clients_total = 0;     ///< clients that ever subscribed
  std::uint64_t clients_dropped = 0;   ///< closed because their frame queue was full
  std::uint64_t frames_published = 0;  ///< publish() calls
  std::uint64_t frames_sent = 0;       ///< frames completely written to some client
};

/// Fan-out of text frames to the WebSocket clients of one path (`/api/stream`).
///
/// The app calls publish() (once a second, from any thread); the hub serialises nothing
/// itself: it wraps the text once in a shared_ptr<const std::string> and hands that same
/// pointer to every subscriber. The HTTP server's WebSocket sessions are the subscribers:
/// each keeps a queue of at most queueLimit() frames (the one being written included) and
/// a client whose queue is full when a frame arrives is closed and counted in
/// clients_dropped, so a slow or stuck client never slows the others or the publisher.
/// A client that subscribes receives the latest frame at once, then every later one.
///
/// Ownership: borrowed by the Router and HttpServer; must outlive the server.
/// Threads: every method is thread-safe. publish() holds the hub's mutex only while it
/// hands the pointer to each subscriber (a non-blocking post). Errors: none (no throws
/// except std::bad_alloc).
class StreamHub {
 public:
  /// A receiver of frames (implemented by the server's WebSocket sessions).
  class Subscriber {
   public:
    virtual ~Subscriber() = default;
    /// Called with the hub's mutex held, on the publisher's (or subscriber's) thread: must
    /// not block and must not call back into the hub; queue the frame elsewhere and return.
    virtual void deliver(const std::shared_ptr<const std::string>& frame) = 0;
  };

  static constexpr std::size_t kDefaultQueueLimit = 8;

  /// `queue_limit`: frames a client may have outstanding (0 is taken as 1).
  explicit StreamHub(std::size_t queue_limit = kDefaultQueueLimit);
  StreamHub(const StreamHub&) = delete;
  StreamHub& operator=(const StreamHub&) = delete;

  /// Sends `text` as one WebSocket text frame to every subscriber.
  void publish(std::string text);

  StreamHubStats stats() const;
  /// ayaflow_stream_* families, from stats() at every scrape. The hub must outlive it.
  std::shared_ptr<const prometheus::Collectable> metrics() const;
  std::size_t queueLimit() const { return queue_limit_; }

  // ---- for the HTTP server's WebSocket sessions

  /// Adds `subscriber` (held weakly) and delivers the latest frame to it, if any.
  void subscribe(const std::shared_ptr<Subscriber>& subscriber);
  /// Removes `subscriber`; once this returns, the hub never calls it again. Idempotent.
  void unsubscribe(const Subscriber* subscriber);
  /// A subscriber finished writing one frame.
  void recordSent();
  /// A subscriber was closed because its queue was full.
  void recordDropped();

 private:
  const std::size_t queue_limit_;
  mutable std::mutex mutex_;
  // guarded by mutex_
  std::unordered_map<const Subscriber*, std::weak_ptr<Subscriber>> subscribers_;
  std::shared_ptr<const std::string> last_;  // guarded by mutex_
  std::uint64_t clients_total_ = 0;          // guarded by mutex_
  std::uint64_t frames_published_ = 0;       // guarded by mutex_
  // Bumped by server threads; atomics so they never wait for a publish in progress.
  std::atomic<std::uint64_t> frames_sent_{0};
  std::atomic<std::uint64_t> clients_dropped_{0};
};

/// The ayaflow_stream_* families of `stats`.
std::vector<prometheus::MetricFamily> streamHubFamilies(const StreamHubStats& stats);

/// Registers `hub` on `router` at kStreamPath ("/api/stream"): a WebSocket upgrade there
/// joins the hub; a plain HTTP request gets 426 JSON. `hub` must outlive the router's users.
void addStreamRoute(Router& router, StreamHub& hub);

}  // namespace ayaflow::api
