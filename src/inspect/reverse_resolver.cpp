// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/reverse_resolver.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <utility>

#include "ayaflow/common/metrics.h"
#include "ayaflow/inspect/host_name.h"

namespace ayaflow::inspect {

namespace {

ReverseResolver::Options sanitized(ReverseResolver::Options o) {
  o.threads = std::max<std::size_t>(o.threads, 1);
  o.max_pending = std::max<std::size_t>(o.max_pending, 1);
  o.max_entries = std::max<std::size_t>(o.max_entries, 1);
  return o;
}

}  // namespace

std::optional<std::string> systemReverseLookup(const flow::IpAddress& address) {
  sockaddr_storage storage{};
  socklen_t len = 0;
  if (address.isV4Mapped()) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    std::memcpy(&sin.sin_addr, &address.bytes[12], 4);
    std::memcpy(&storage, &sin, sizeof sin);
    len = sizeof sin;
  } else {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    std::memcpy(&sin6.sin6_addr, address.bytes.data(), 16);
    std::memcpy(&storage, &sin6, sizeof sin6);
    len = sizeof sin6;
  }
  char host[NI_MAXHOST];
  // NI_NAMEREQD: an address without a name is an error, never its numeric text.
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&storage), len, host, sizeof host, nullptr, 0,
                  NI_NAMEREQD) != 0)
    return std::nullopt;
  return std::string(host);
}

std::size_t ReverseResolver::AddressHash::operator()(const flow::IpAddress& a) const noexcept {
  flow::FlowKey k;
  k.remote = a;
  return static_cast<std::size_t>(flow::hashFlowKey(k, seed));
}

ReverseResolver::ReverseResolver() : ReverseResolver(Options{}) {}

ReverseResolver::ReverseResolver(Options options, Lookup lookup, Clock clock)
    : options_(sanitized(options)),
      lookup_(lookup ? std::move(lookup) : Lookup(systemReverseLookup)),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })),
      // Addresses come off the wire: seed the hashes.
      pending_(0, AddressHash{flow::randomHashSeed()}),
      cache_(0, AddressHash{flow::randomHashSeed()}) {
  try {
    workers_.reserve(options_.threads);
    for (std::size_t i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { run(); });
  } catch (...) {
    stop();  // join the threads already started, or their destructors terminate
    throw;
  }
}

ReverseResolver::~ReverseResolver() { stop(); }

std::optional<std::string> ReverseResolver::lookup(const flow::IpAddress& address) {
  const TimePoint now = clock_();
  std::lock_guard lock(mutex_);
  const auto it = cache_.find(address);
  if (it != cache_.end()) {
    if (it->second->expires > now) {
      cache_hits_.fetch_add(1, std::memory_order_relaxed);
      return it->second->name;
    }
    // Expired: forget it and resolve again.
    order_.erase(it->second);
    cache_.erase(it);
  }
  if (stopping_ || pending_.count(address) != 0) return std::nullopt;
  if (queue_.size() >= options_.max_pending) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  pending_.insert(address);
  try {
    queue_.push_back(address);
  } catch (...) {
    pending_.erase(address);
    throw;
  }
  work_cv_.notify_one();
  return std::nullopt;
}

void ReverseResolver::run() {
  for (;;) {
    flow::IpAddress address;
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      address = queue_.front();
      queue_.pop_front();
    }
    // Outside the lock: this is the call that may block for seconds.
    lookups_.fetch_add(1, std::memory_order_relaxed);
    std::optional<std::string> name;
    bool timed_out = false;
    try {
      const TimePoint start = clock_();
      name = lookup_(address);
      // getnameinfo() cannot be interrupted: a late answer is recorded as a failure.
      if (clock_() - start > options_.timeout) {
        timed_out = true;
        name.reset();
      }
      if (name) {
        std::string normalized;
        if (normalizeHostName(*name, normalized))
          *name = std::move(normalized);
        else
          name.reset();
      }
    } catch (...) {
      name.reset();  // the lookup function (or bad_alloc): a failure
    }
    if (timed_out) timeouts_.fetch_add(1, std::memory_order_relaxed);
    (name ? successes_ : failures_).fetch_add(1, std::memory_order_relaxed);
    store(address, std::move(name));
  }
}

void ReverseResolver::store(const flow::IpAddress& address, std::optional<std::string> name) {
  TimePoint now;
  TimePoint expires;
  try {
    now = clock_();
    expires = now + options_.ttl;
  } catch (...) {
    expires = TimePoint{};  // a throwing test clock: store the result as already expired
  }
  std::lock_guard lock(mutex_);
  try {
    const auto it = cache_.find(address);
    if (it != cache_.end()) {  // lookup() saw it expired and asked again; should not happen
      order_.erase(it->second);
      cache_.erase(it);
    }
    // Every entry lives ttl, so insertion order is expiry order: the front is the oldest.
    while (cache_.size() >= options_.max_entries) {
      if (order_.front().expires > now) evictions_.fetch_add(1, std::memory_order_relaxed);
      cache_.erase(order_.front().address);
      order_.pop_front();
    }
    order_.push_back(Entry{address, std::move(name), expires});
    try {
      cache_.emplace(address, std::prev(order_.end()));
    } catch (...) {
      order_.pop_back();
      throw;
    }
  } catch (...) {
    // bad_alloc: the result is lost, the address may be asked again.
  }
  pending_.erase(address);
  if (pending_.empty()) idle_cv_.notify_all();
}

void ReverseResolver::requestStop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    for (const flow::IpAddress& a : queue_) pending_.erase(a);
    queue_.clear();
  }
  work_cv_.notify_all();
  idle_cv_.notify_all();
}

void ReverseResolver::stop() {
  requestStop();
  std::lock_guard join_lock(join_mutex_);
  for (std::thread& t : workers_) {
    // stop() from the lookup function is not supported (see the header); at least do not
    // throw resource_deadlock_would_occur by joining the calling thread itself.
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  }
}

bool ReverseResolver::stopWithin(std::chrono::milliseconds grace) {
  requestStop();  // the queue is gone: what stays pending is in flight
  {
    std::unique_lock lock(mutex_);
    if (!idle_cv_.wait_for(lock, grace, [this] { return pending_.empty(); })) return false;
  }
  stop();  // each worker has returned from its lookup: the join is immediate
  return true;
}

ReverseResolver::Counters ReverseResolver::counters() const noexcept {
  Counters c;
  c.lookups = lookups_.load(std::memory_order_relaxed);
  c.successes = successes_.load(std::memory_order_relaxed);
  c.failures = failures_.load(std::memory_order_relaxed);
  c.timeouts = timeouts_.load(std::memory_order_relaxed);
  c.dropped = dropped_.load(std::memory_order_relaxed);
  c.cache_hits = cache_hits_.load(std::memory_order_relaxed);
  c.evictions = evictions_.load(std::memory_order_relaxed);
  return c;
}

std::size_t ReverseResolver::cacheSize() const {
  std::lock_guard lock(mutex_);
  return cache_.size();
}

std::size_t ReverseResolver::pendingSize() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

void ReverseResolver::waitIdleForTest() {
  std::unique_lock lock(mutex_);
  idle_cv_.wait(lock, [this] { return stopping_ || pending_.empty(); });
}

}  // namespace ayaflow::inspect

namespace ayaflow::inspect {

std::shared_ptr<const prometheus::Collectable> ReverseResolver::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [this] { return reverseDnsFamilies(counters(), cacheSize(), pendingSize()); });
}

std::vector<prometheus::MetricFamily> reverseDnsFamilies(const ReverseResolver::Counters& c,
                                                         std::size_t cache_entries,
                                                         std::size_t pending) {
  common::MetricFamilies f;
  f.gauge("ayaflow_reverse_dns_cache_entries",
          "Addresses in the reverse-DNS cache, names and cached failures (at most max_entries).",
          static_cast<double>(cache_entries));
  f.gauge("ayaflow_reverse_dns_pending",
          "Addresses queued for or in a reverse lookup (at most max_pending + threads).",
          static_cast<double>(pending));
  f.counter("ayaflow_reverse_dns_cache_evicted_total",
            "Unexpired reverse-DNS results pushed out of the full cache (the oldest first).",
            c.evictions);
  f.counter("ayaflow_reverse_dns_dropped_total",
            "Reverse lookups not queued because the queue was full (asked again later).",
            c.dropped);
  f.labelledCounter("ayaflow_reverse_dns_lookups_total",
                    "Reverse lookups run by the resolver threads, by result (failure includes "
                    "timeouts).",
                    "result", {{"success", c.successes}, {"failure", c.failures}});
  return f.take();
}

}  // namespace ayaflow::inspect
