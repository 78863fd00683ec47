// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::inspect {

/// The system's reverse lookup: getnameinfo(NI_NAMEREQD) on an AF_INET (IPv4-mapped
/// addresses) or AF_INET6 sockaddr. Blocks for as long as the system resolver takes
/// (/etc/hosts, then DNS per nsswitch.conf, with resolv.conf's timeouts). nullopt when no
/// name exists or the lookup fails. The name is returned as the resolver gave it (the
/// resolver below validates it). Thread-safe.
std::optional<std::string> systemReverseLookup(const flow::IpAddress& address);

/// Reverse DNS (`--resolve-dns`) off the capture path: lookup() never blocks on
/// the network; it answers from a cache and queues a resolution that a small pool of
/// worker threads performs with the (injectable) lookup function.
///
/// - Results and failures are cached `ttl` (failures too, so an address without a PTR
///   record is not asked again for `ttl`). The cache holds at most max_entries addresses;
///   a new result in a full cache evicts the oldest one (counted in `evictions` if it had
///   not expired). Memory: at most max_entries x ~0.5 KB with the longest names (8 MiB for
///   the default 16384), plus max_pending + threads queued/in-flight addresses.
/// - At most max_pending addresses wait in the queue; when it is full, lookup() counts a
///   drop and queues nothing (the address is asked again on a later lookup()). An address
///   already queued or being resolved is not queued twice. At most `threads` lookups run
///   at once.
/// - Timeout: getnameinfo() cannot be cancelled, and the resolver's limits are process-
///   wide (RES_OPTIONS, _res), which this class must not change. So a lookup that returns
///   after more than `timeout` is recorded as a failure (counted in `timeouts` and
///   `failures`; its name, if any, is discarded) and cached as such for `ttl`. While it
///   runs it occupies a worker: the system resolver's own timeouts (resolv.conf `timeout`
///   x `attempts` per server, 5 s x 2 by default) bound how long.
/// - Names are validated with normalizeHostName() (host_name.h) and stored lower-case; an
///   invalid name (a PTR record can hold anything) is a failure.
///
/// Threads: every method is thread-safe. Workers start in the constructor and stop in
/// stop() (or the destructor), which discards queued addresses and joins the workers
/// after their current lookup returns. Errors: the constructor throws std::system_error if
/// a thread cannot start; lookup() allocates (std::bad_alloc only); an exception from the
/// lookup function is a failure. Clock: injectable for tests (default steady_clock); it
/// dates cache entries and times lookups.
class ReverseResolver {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  /// Returns the host name of an address, nullopt if none. Called on worker threads,
  /// several at once.
  using Lookup = std::function<std::optional<std::string>(const flow::IpAddress&)>;

  struct Options {
    std::size_t threads = 2;                  ///< worker threads = lookups in flight (>= 1)
    std::size_t max_pending = 256;            ///< addresses waiting for a worker (>= 1)
    std::chrono::seconds ttl{300};            ///< lifetime of a cached name or failure
    std::chrono::milliseconds timeout{2000};  ///< slower lookups count as failures
    std::size_t max_entries = 16384;          ///< cached addresses (>= 1)
  };

  /// Cumulative.
  struct Counters {
    std::uint64_t lookups = 0;     ///< resolutions run by the workers (lookup function calls)
    std::uint64_t successes = 0;   ///< ... that gave a valid name in time
    std::uint64_t failures = 0;    ///< ... that did not (no name, invalid, error, timeout)
    std::uint64_t timeouts = 0;    ///< failures because the lookup took longer than timeout
    std::uint64_t dropped = 0;     ///< lookup() calls that found the queue full
    std::uint64_t cache_hits = 0;  ///< lookup() calls answered by an unexpired entry
    std::uint64_t evictions = 0;   ///< unexpired entries pushed out by a full cache
  };

  ReverseResolver();
  explicit ReverseResolver(Options options, Lookup lookup = {}, Clock clock = {});
  ~ReverseResolver();
  ReverseResolver(const ReverseResolver&) = delete;
  ReverseResolver& operator=(const ReverseResolver&) = delete;

  /// Non-blocking. The cached name for `address`; nullopt if the cached result is a
  /// failure, or if none is cached yet: then the address is queued for resolution (unless
  /// already queued or in flight, or stopped; a full queue counts a drop).
  std::optional<std::string> lookup(const flow::IpAddress& address);

  /// Stops taking work and discards the queue without waiting; workers exit after their
  /// current lookup. lookup() keeps answering from the cache. Idempotent.
  void requestStop();

  /// requestStop(), then joins the workers (waits for lookups in flight). Idempotent; safe
  /// from several threads; must not be called from the lookup function.
  void stop();

  /// requestStop(), then waits at most `grace` for the lookups in flight; stop() if they
  /// ended. False if one is still blocked in the system resolver: the workers still run and
  /// the destructor would wait for them (a process on its way out may leave the object to
  /// the exit instead).
  bool stopWithin(std::chrono::milliseconds grace);

  Counters counters() const noexcept;

  /// reverseDnsFamilies() of this resolver, read at every scrape. Borrows *this.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

  /// Cached addresses (expired entries included until evicted).
  std::size_t cacheSize() const;
  /// Addresses queued or in flight.
  std::size_t pendingSize() const;

  /// Blocks until no address is queued or in flight (or the resolver is stopped).
  void waitIdleForTest();

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct AddressHash {
    std::uint64_t seed;
    std::size_t operator()(const flow::IpAddress& a) const noexcept;
  };
  struct Entry {
    flow::IpAddress address;
    std::optional<std::string> name;  // nullopt: a cached failure
    TimePoint expires;
  };
  using EntryList = std::list<Entry>;

  void run();
  void store(const flow::IpAddress& address, std::optional<std::string> name);

  const Options options_;
  const Lookup lookup_;
  const Clock clock_;

  mutable std::mutex mutex_;
  std::condition_variable work_cv_;    // queue_ got work, or stopping_
  std::condition_variable idle_cv_;    // pending_ became empty, or stopping_
  bool stopping_ = false;              // guarded by mutex_
  std::deque<flow::IpAddress> queue_;  // guarded by mutex_; at most max_pending
  std::unordered_set<flow::IpAddress, AddressHash> pending_;  // guarded by mutex_
  EntryList order_;  // guarded by mutex_; insertion order = expiry order (oldest first)
  std::unordered_map<flow::IpAddress, EntryList::iterator, AddressHash> cache_;  // mutex_

  std::mutex join_mutex_;             // serialises stop()'s joins
  std::vector<std::thread> workers_;  // guarded by join_mutex_ after construction

  std::atomic<std::uint64_t> lookups_{0}, successes_{0}, failures_{0}, timeouts_{0}, dropped_{0},
      cache_hits_{0}, evictions_{0};
};

/// ayaflow_reverse_dns_cache_entries, ayaflow_reverse_dns_pending,
/// ayaflow_reverse_dns_cache_evicted_total, ayaflow_reverse_dns_dropped_total and
/// ayaflow_reverse_dns_lookups_total{result}.
std::vector<prometheus::MetricFamily> reverseDnsFamilies(const ReverseResolver::Counters& c,
                                                         std::size_t cache_entries,
                                                         std::size_t pending);

}  // namespace ayaflow::inspect
