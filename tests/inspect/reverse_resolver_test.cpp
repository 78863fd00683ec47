// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/reverse_resolver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ayaflow::inspect {
namespace {

using namespace std::chrono_literals;

flow::IpAddress ip(const std::string& text) { return *flow::IpAddress::parse(text); }

/// A manual clock, read from worker threads.
class FakeClock {
 public:
  ReverseResolver::Clock fn() {
    return [this] { return std::chrono::steady_clock::time_point(now_.load() * 1ms); };
  }
  void advance(std::chrono::milliseconds d) { now_ += d.count(); }

 private:
  std::atomic<std::int64_t> now_{3'600'000};
};

/// A fake resolver: names from a table, an optional gate that holds every lookup until
/// opened, and a record of how many lookups ran at once. Declare it before the resolver so
/// it outlives the workers.
class FakeDns {
 public:
  explicit FakeDns(std::map<std::string, std::string> names = {}) : names_(std::move(names)) {}

  ReverseResolver::Lookup fn() {
    return [this](const flow::IpAddress& a) { return resolve(a); };
  }

  void closeGate() {
    std::lock_guard l(m_);
    gate_open_ = false;
  }
  void openGate() {
    {
      std::lock_guard l(m_);
      gate_open_ = true;
    }
    cv_.notify_all();
  }
  /// Blocks until n lookups are running (held at the gate).
  void waitInFlight(int n) {
    std::unique_lock l(m_);
    cv_.wait(l, [&] { return in_flight_ >= n; });
  }
  int inFlight() {
    std::lock_guard l(m_);
    return in_flight_;
  }
  int maxInFlight() {
    std::lock_guard l(m_);
    return max_in_flight_;
  }
  int calls() {
    std::lock_guard l(m_);
    return calls_;
  }
  /// Runs inside each lookup, after the gate (e.g. advances a FakeClock).
  std::function<void()> during;

 private:
  std::optional<std::string> resolve(const flow::IpAddress& a) {
    {
      std::unique_lock l(m_);
      ++calls_;
      ++in_flight_;
      max_in_flight_ = std::max(max_in_flight_, in_flight_);
      cv_.notify_all();
      cv_.wait(l, [&] { return gate_open_; });
      --in_flight_;
    }
    if (during) during();
    const auto it = names_.find(a.toString());
    if (it == names_.end()) return std::nullopt;
    if (it->second == "throw") throw std::runtime_error("lookup failed");
    return it->second;
  }

  const std::map<std::string, std::string> names_;
  std::mutex m_;
  std::condition_variable cv_;
  bool gate_open_ = true;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  int calls_ = 0;
};

ReverseResolver::Options opts(std::size_t threads, std::size_t max_pending = 256) {
  ReverseResolver::Options o;
  o.threads = threads;
  o.max_pending = max_pending;
  return o;
}

TEST(ReverseResolver, CachesNamesAndFailures) {
  FakeDns dns({{"10.0.0.1", "Host1.Example.TEST."}, {"2001:db8::1", "v6.example.test"}});
  ReverseResolver r(opts(2), dns.fn());
  EXPECT_FALSE(r.lookup(ip("10.0.0.1")));  // not known yet: queued
  EXPECT_FALSE(r.lookup(ip("10.0.0.2")));  // no name
  EXPECT_FALSE(r.lookup(ip("2001:db8::1")));
  r.waitIdleForTest();

  EXPECT_EQ(r.lookup(ip("10.0.0.1")), "host1.example.test");  // normalised
  EXPECT_EQ(r.lookup(ip("2001:db8::1")), "v6.example.test");
  EXPECT_FALSE(r.lookup(ip("10.0.0.2")));  // a cached failure: not asked again
  EXPECT_FALSE(r.lookup(ip("10.0.0.2")));
  r.waitIdleForTest();

  const auto c = r.counters();
  EXPECT_EQ(c.lookups, 3u);
  EXPECT_EQ(c.successes, 2u);
  EXPECT_EQ(c.failures, 1u);
  EXPECT_EQ(c.timeouts, 0u);
  EXPECT_EQ(c.cache_hits, 4u);
  EXPECT_EQ(c.dropped, 0u);
  EXPECT_EQ(dns.calls(), 3);
  EXPECT_EQ(r.cacheSize(), 3u);
  EXPECT_EQ(r.pendingSize(), 0u);
}

TEST(ReverseResolver, PendingAddressIsQueuedOnce) {
  FakeDns dns(std::map<std::string, std::string>{{"10.0.0.1", "a.test"}});
  ReverseResolver r(opts(2), dns.fn());
  dns.closeGate();
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(r.lookup(ip("10.0.0.1")));
  EXPECT_EQ(r.pendingSize(), 1u);
  dns.openGate();
  r.waitIdleForTest();
  EXPECT_EQ(dns.calls(), 1);
  EXPECT_EQ(r.lookup(ip("10.0.0.1")), "a.test");
  EXPECT_EQ(r.counters().dropped, 0u);
}

TEST(ReverseResolver, TtlExpiryOfNamesAndFailures) {
  FakeClock clock;
  FakeDns dns(std::map<std::string, std::string>{{"10.0.0.1", "a.test"}});
  ReverseResolver r(opts(1), dns.fn(), clock.fn());  // ttl 300 s
  r.lookup(ip("10.0.0.1"));
  r.lookup(ip("10.0.0.2"));
  r.waitIdleForTest();

  clock.advance(299'999ms);
  EXPECT_EQ(r.lookup(ip("10.0.0.1")), "a.test");
  EXPECT_FALSE(r.lookup(ip("10.0.0.2")));
  r.waitIdleForTest();
  EXPECT_EQ(r.counters().lookups, 2u);
  EXPECT_EQ(r.counters().cache_hits, 2u);

  clock.advance(1ms);  // exactly ttl: both expired, both asked again
  EXPECT_FALSE(r.lookup(ip("10.0.0.1")));
  EXPECT_FALSE(r.lookup(ip("10.0.0.2")));
  r.waitIdleForTest();
  EXPECT_EQ(r.counters().lookups, 4u);
  EXPECT_EQ(r.counters().cache_hits, 2u);
  EXPECT_EQ(r.lookup(ip("10.0.0.1")), "a.test");
  EXPECT_EQ(dns.calls(), 4);
}

TEST(ReverseResolver, FullQueueDropsAndCounts) {
  FakeDns dns({{"10.0.0.1", "a.test"}, {"10.0.0.4", "d.test"}});
  ReverseResolver r(opts(1, 2), dns.fn());
  dns.closeGate();
  r.lookup(ip("10.0.0.1"));
  dns.waitInFlight(1);  // the only worker holds 10.0.0.1: the queue is empty
  r.lookup(ip("10.0.0.2"));
  r.lookup(ip("10.0.0.3"));  // queue full (2)
  EXPECT_FALSE(r.lookup(ip("10.0.0.4")));
  EXPECT_EQ(r.counters().dropped, 1u);
  r.lookup(ip("10.0.0.2"));  // already queued: neither queued again nor dropped
  r.lookup(ip("10.0.0.1"));  // in flight: likewise
  EXPECT_EQ(r.counters().dropped, 1u);
  EXPECT_EQ(r.pendingSize(), 3u);

  dns.openGate();
  r.waitIdleForTest();
  EXPECT_EQ(r.counters().lookups, 3u);
  EXPECT_FALSE(r.lookup(ip("10.0.0.4")));  // dropped earlier: asked now
  r.waitIdleForTest();
  EXPECT_EQ(r.lookup(ip("10.0.0.4")), "d.test");
  EXPECT_EQ(r.counters().lookups, 4u);
  EXPECT_EQ(r.counters().dropped, 1u);
}

TEST(ReverseResolver, AtMostThreadsInFlight) {
  FakeDns dns;
  ReverseResolver r(opts(3), dns.fn());
  dns.closeGate();
  for (int i = 1; i <= 20; ++i) r.lookup(ip("10.0.1." + std::to_string(i)));
  dns.waitInFlight(3);
  EXPECT_EQ(dns.inFlight(), 3);
  EXPECT_EQ(r.pendingSize(), 20u);
  dns.openGate();
  r.waitIdleForTest();
  EXPECT_EQ(dns.maxInFlight(), 3);
  EXPECT_EQ(dns.calls(), 20);
  EXPECT_EQ(r.counters().failures, 20u);
}

TEST(ReverseResolver, SlowLookupIsAFailure) {
  FakeClock clock;
  FakeDns dns({{"10.0.0.1", "slow.test"}, {"10.0.0.2", "just-in-time.test"}});
  ReverseResolver::Options o = opts(1);
  o.timeout = 100ms;
  ReverseResolver r(o, dns.fn(), clock.fn());

  dns.during = [&clock] { clock.advance(3s); };  // the lookup "takes" 3 s
  r.lookup(ip("10.0.0.1"));
  r.waitIdleForTest();
  dns.during = [&clock] { clock.advance(100ms); };  // exactly the timeout: in time
  r.lookup(ip("10.0.0.2"));
  r.waitIdleForTest();

  EXPECT_FALSE(r.lookup(ip("10.0.0.1")));  // cached as a failure: the late name is dropped
  EXPECT_EQ(r.lookup(ip("10.0.0.2")), "just-in-time.test");
  const auto c = r.counters();
  EXPECT_EQ(c.lookups, 2u);
  EXPECT_EQ(c.failures, 1u);
  EXPECT_EQ(c.timeouts, 1u);
  EXPECT_EQ(c.successes, 1u);
  EXPECT_EQ(c.cache_hits, 2u);
}

TEST(ReverseResolver, SlowLookupOnTheRealClock) {
  // The default clock: a lookup sleeping 100 ms against a 5 ms timeout.
  ReverseResolver::Options o = opts(1);
  o.timeout = 5ms;
  ReverseResolver r(o, [](const flow::IpAddress&) -> std::optional<std::string> {
    std::this_thread::sleep_for(100ms);
    return "slow.test";
  });
  r.lookup(ip("10.0.0.1"));
  r.waitIdleForTest();
  EXPECT_FALSE(r.lookup(ip("10.0.0.1")));
  EXPECT_EQ(r.counters().timeouts, 1u);
  EXPECT_EQ(r.counters().failures, 1u);
}

TEST(ReverseResolver, InvalidNamesAndThrowingLookupsAreFailures) {
  FakeDns dns({{"10.0.0.1", "bad name!"},
               {"10.0.0.2", "10.0.0.2"},  // an address literal is not a name
               {"10.0.0.3", "throw"},
               {"10.0.0.4", ""}});
  ReverseResolver r(opts(2), dns.fn());
  for (int i = 1; i <= 4; ++i) r.lookup(ip("10.0.0." + std::to_string(i)));
  r.waitIdleForTest();
  for (int i = 1; i <= 4; ++i) EXPECT_FALSE(r.lookup(ip("10.0.0." + std::to_string(i))));
  const auto c = r.counters();
  EXPECT_EQ(c.failures, 4u);
  EXPECT_EQ(c.successes, 0u);
  EXPECT_EQ(c.cache_hits, 4u);
}

TEST(ReverseResolver, BoundedCacheEvictsTheOldest) {
  FakeDns dns({{"10.0.0.1", "a.test"}, {"10.0.0.2", "b.test"}, {"10.0.0.3", "c.test"}});
  ReverseResolver::Options o = opts(1);
  o.max_entries = 2;
  ReverseResolver r(o, dns.fn());
  for (int i = 1; i <= 3; ++i) {
    r.lookup(ip("10.0.0." + std::to_string(i)));
    r.waitIdleForTest();
  }
  EXPECT_EQ(r.cacheSize(), 2u);
  EXPECT_EQ(r.lookup(ip("10.0.0.3")), "c.test");
  EXPECT_EQ(r.lookup(ip("10.0.0.2")), "b.test");
  EXPECT_FALSE(r.lookup(ip("10.0.0.1")));  // evicted: asked again
  r.waitIdleForTest();
  EXPECT_EQ(r.lookup(ip("10.0.0.1")), "a.test");
  EXPECT_EQ(r.cacheSize(), 2u);
  EXPECT_EQ(dns.calls(), 4);
}

TEST(ReverseResolver, StopDiscardsTheQueueAndJoins) {
  FakeDns dns;
  ReverseResolver r(opts(2), dns.fn());
  dns.closeGate();
  for (int i = 1; i <= 10; ++i) r.lookup(ip("10.0.2." + std::to_string(i)));
  dns.waitInFlight(2);
  r.requestStop();
  EXPECT_EQ(r.pendingSize(), 2u);  // the 8 queued ones are gone; 2 are in flight
  EXPECT_FALSE(r.lookup(ip("10.0.3.1")));
  EXPECT_EQ(r.pendingSize(), 2u);  // nothing is queued after a stop
  dns.openGate();
  r.stop();  // waits only for the two lookups in flight
  r.stop();  // idempotent
  EXPECT_EQ(dns.calls(), 2);
  EXPECT_EQ(r.counters().lookups, 2u);
  EXPECT_EQ(r.pendingSize(), 0u);
  EXPECT_EQ(r.cacheSize(), 2u);            // their results were still stored
  EXPECT_FALSE(r.lookup(ip("10.0.2.1")));  // a cached failure
  EXPECT_EQ(r.counters().cache_hits, 1u);
}

TEST(ReverseResolver, StopWhenIdleAndDestructor) {
  FakeDns dns;
  {
    ReverseResolver r(opts(4), dns.fn());
    r.stop();
  }
  { ReverseResolver r(opts(4), dns.fn()); }  // the destructor stops and joins
  EXPECT_EQ(dns.calls(), 0);
}

TEST(ReverseResolver, StopWithinGivesUpOnALookupThatDoesNotReturn) {
  FakeDns dns;
  ReverseResolver r(opts(2), dns.fn());
  dns.closeGate();
  for (int i = 1; i <= 5; ++i) r.lookup(ip("10.0.4." + std::to_string(i)));
  dns.waitInFlight(2);
  EXPECT_FALSE(r.stopWithin(20ms));  // both workers are still held at the gate
  EXPECT_EQ(r.pendingSize(), 2u);    // the queued three are discarded
  EXPECT_EQ(dns.inFlight(), 2);
  dns.openGate();
  EXPECT_TRUE(r.stopWithin(10s));  // they return: stopped and joined
  EXPECT_EQ(r.pendingSize(), 0u);
  EXPECT_EQ(dns.calls(), 2);
}

TEST(ReverseResolver, StopWithinWhenIdleStopsAtOnce) {
  FakeDns dns;
  ReverseResolver r(opts(2), dns.fn());
  r.lookup(ip("10.0.5.1"));
  r.waitIdleForTest();
  EXPECT_TRUE(r.stopWithin(0ms));
  EXPECT_FALSE(r.lookup(ip("10.0.5.2")));  // stopped: nothing new is queued
  EXPECT_EQ(r.pendingSize(), 0u);
}

TEST(ReverseResolver, ConcurrentCallers) {
  std::map<std::string, std::string> names;
  for (int i = 0; i < 50; ++i)
    names["10.0.4." + std::to_string(i)] = "h" + std::to_string(i) + ".test";
  FakeDns dns(names);
  ReverseResolver r(opts(2), dns.fn());
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&r, t] {
      for (int i = 0; i < 1000; ++i) r.lookup(ip("10.0.4." + std::to_string((i * 7 + t) % 50)));
    });
  for (auto& t : callers) t.join();
  r.waitIdleForTest();
  EXPECT_EQ(dns.calls(), 50);  // each address resolved exactly once
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(r.lookup(ip("10.0.4." + std::to_string(i))), "h" + std::to_string(i) + ".test");
  EXPECT_EQ(r.counters().dropped, 0u);
}

}  // namespace
}  // namespace ayaflow::inspect
