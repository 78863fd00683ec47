// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/tcp.h"

namespace prometheus {
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::capture {

/// Upper bounds (seconds) of the RTT histogram's buckets; +Inf follows.
inline constexpr std::array<double, 13> kRttBucketsSeconds{
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};

/// One RTT histogram (cumulative counts are built at scrape time).
struct RttHistogram {
  std::array<std::uint64_t, kRttBucketsSeconds.size() + 1> buckets{};  ///< per bucket, +Inf last
  std::uint64_t count = 0;
  std::uint64_t sum_us = 0;
};

/// A copy of TcpCounters.
struct TcpCounterValues {
  /// Connections that reached each state, indexed by flow::TcpState (kUnknown and kOpening
  /// unused).
  std::array<std::uint64_t, 7> results{};
  RttHistogram handshake, smoothed;
};

/// Counters of TCP health on the ingest thread: connection results from the live map's state
/// changes, and the RTT figures as they are measured. One writer (the ingest thread), any
/// number of readers (relaxed atomics; a copy is not a point-in-time cut).
class TcpCounters {
 public:
  /// Counts what one record() did: the results the connection reached (flow::updateTcp()),
  /// and a handshake RTT measured now.
  void observe(const flow::RecordOutcome& o) noexcept;
  /// One sample of the kernel's smoothed RTT of a local socket.
  void observeSmoothed(std::uint32_t srtt_us) noexcept;
  TcpCounterValues values() const noexcept;

 private:
  struct Histogram {
    std::array<std::atomic<std::uint64_t>, kRttBucketsSeconds.size() + 1> buckets{};
    std::atomic<std::uint64_t> count{0}, sum_us{0};
    void observe(std::uint32_t us) noexcept;
    RttHistogram values() const noexcept;
  };
  std::array<std::atomic<std::uint64_t>, 7> results_{};
  Histogram handshake_, smoothed_;
};

/// ayaflow_tcp_connections_total{result} and ayaflow_tcp_rtt_seconds{kind} (a histogram).
std::vector<prometheus::MetricFamily> tcpFamilies(const TcpCounterValues& v);

}  // namespace ayaflow::capture
