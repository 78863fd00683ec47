// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

namespace ayaflow::common {

/// Builds a list of Prometheus families in a fixed order. A family with no samples is left
/// out. Counter values are doubles in the exposition format: integers are exact up to 2^53
/// (9 PB of bytes), far beyond any process lifetime's count.
class MetricFamilies {
 public:
  using Labels = std::vector<prometheus::ClientMetric::Label>;

  static prometheus::ClientMetric sample(prometheus::MetricType type, double value,
                                         Labels labels = {});

  void add(const char* name, const char* help, prometheus::MetricType type,
           std::vector<prometheus::ClientMetric> samples);
  void counter(const char* name, const char* help, std::uint64_t value);
  void counter(const char* name, const char* help, double value);
  void gauge(const char* name, const char* help, double value, Labels labels = {});
  /// One counter family with a sample per (label value, count), e.g. reason="queue_full".
  void labelledCounter(const char* name, const char* help, const char* label,
                       const std::vector<std::pair<const char*, std::uint64_t>>& values);

  std::vector<prometheus::MetricFamily> take() { return std::move(out_); }

 private:
  std::vector<prometheus::MetricFamily> out_;
};

/// A Collectable whose families come from a function, called at every scrape. This is how a
/// component exports its counters: it keeps atomics (or reads the kernel) and builds the
/// families when asked, so /metrics always shows what the component says now.
class CallbackCollectable final : public prometheus::Collectable {
 public:
  using Source = std::function<std::vector<prometheus::MetricFamily>()>;
  explicit CallbackCollectable(Source source) : source_(std::move(source)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return source_(); }

 private:
  Source source_;
};

/// The collectables /metrics serves, in registration order: each component registers its
/// own (see CallbackCollectable), the app only hands the registry out. Family names must be
/// unique across collectables.
///
/// Threads: add() during start-up; Collect() from any thread, concurrently. A collectable's
/// Collect() may throw (a failed kernel read): it propagates, so the scrape fails instead of
/// showing zeros.
class MetricsRegistry final : public prometheus::Collectable {
 public:
  void add(std::shared_ptr<const prometheus::Collectable> collectable);
  /// Registers a function as a collectable (see CallbackCollectable).
  void add(CallbackCollectable::Source source);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const prometheus::Collectable>> collectables_;  // mutex_
};

}  // namespace ayaflow::common
