// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/tcp_counters.h"

#include <limits>
#include <string>
#include <utility>

#include "ayaflow/common/metrics.h"

namespace ayaflow::capture {

using flow::TcpState;

void TcpCounters::observe(const flow::RecordOutcome& o) noexcept {
  if (o.new_handshake_rtt_us != 0) handshake_.observe(o.new_handshake_rtt_us);
  if (o.new_results == 0) return;
  for (std::size_t i = 0; i < results_.size(); ++i) {
    if (o.new_results & flow::resultBit(static_cast<TcpState>(i))) {
      results_[i].fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void TcpCounters::observeSmoothed(std::uint32_t srtt_us) noexcept { smoothed_.observe(srtt_us); }

void TcpCounters::Histogram::observe(std::uint32_t us) noexcept {
  std::size_t i = 0;
  const double s = static_cast<double>(us) / 1e6;
  while (i < kRttBucketsSeconds.size() && s > kRttBucketsSeconds[i]) ++i;
  buckets[i].fetch_add(1, std::memory_order_relaxed);
  count.fetch_add(1, std::memory_order_relaxed);
  sum_us.fetch_add(us, std::memory_order_relaxed);
}

RttHistogram TcpCounters::Histogram::values() const noexcept {
  RttHistogram h;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    h.buckets[i] = buckets[i].load(std::memory_order_relaxed);
  }
  h.count = count.load(std::memory_order_relaxed);
  h.sum_us = sum_us.load(std::memory_order_relaxed);
  return h;
}

TcpCounterValues TcpCounters::values() const noexcept {
  TcpCounterValues v;
  for (std::size_t i = 0; i < results_.size(); ++i) {
    v.results[i] = results_[i].load(std::memory_order_relaxed);
  }
  v.handshake = handshake_.values();
  v.smoothed = smoothed_.values();
  return v;
}

std::vector<prometheus::MetricFamily> tcpFamilies(const TcpCounterValues& v) {
  using prometheus::ClientMetric;
  using prometheus::MetricType;
  common::MetricFamilies f;
  std::vector<ClientMetric> results;
  for (const TcpState s : {TcpState::kEstablished, TcpState::kClosed, TcpState::kReset,
                           TcpState::kRefused, TcpState::kUnanswered}) {
    results.push_back(common::MetricFamilies::sample(
        MetricType::Counter, static_cast<double>(v.results[static_cast<std::size_t>(s)]),
        {{"result", std::string(flow::toString(s))}}));
  }
  f.add("ayaflow_tcp_connections_total",
        "TCP connections that reached each result: established (handshake seen), closed (FIN), "
        "reset (RST after the handshake or mid-stream), refused (RST answering a SYN), "
        "unanswered (SYN retried without answer); a connection counts once per result it reaches",
        MetricType::Counter, std::move(results));

  std::vector<ClientMetric> rtt;
  for (const auto& [kind, h] :
       {std::pair<const char*, const RttHistogram*>{"handshake", &v.handshake},
        std::pair<const char*, const RttHistogram*>{"smoothed", &v.smoothed}}) {
    ClientMetric m;
    m.label = {{"kind", kind}};
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < h->buckets.size(); ++i) {
      cumulative += h->buckets[i];
      ClientMetric::Bucket b;
      b.cumulative_count = cumulative;
      b.upper_bound = i < kRttBucketsSeconds.size() ? kRttBucketsSeconds[i]
                                                    : std::numeric_limits<double>::infinity();
      m.histogram.bucket.push_back(b);
    }
    m.histogram.sample_count = h->count;
    m.histogram.sample_sum = static_cast<double>(h->sum_us) / 1e6;
    rtt.push_back(std::move(m));
  }
  f.add("ayaflow_tcp_rtt_seconds",
        "TCP round-trip times: kind=handshake measured at the hook (SYN to SYN-ACK for outgoing "
        "connections, SYN-ACK to ACK for incoming), kind=smoothed the kernel's smoothed RTT of "
        "local sockets, sampled about once a second per socket",
        MetricType::Histogram, std::move(rtt));
  return f.take();
}

}  // namespace ayaflow::capture
