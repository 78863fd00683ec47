// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/common/metrics.h"

namespace ayaflow::common {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

ClientMetric MetricFamilies::sample(MetricType type, double value, Labels labels) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

void MetricFamilies::add(const char* name, const char* help, MetricType type,
                         std::vector<ClientMetric> samples) {
  if (samples.empty()) return;
  MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  family.metric = std::move(samples);
  out_.push_back(std::move(family));
}

void MetricFamilies::counter(const char* name, const char* help, std::uint64_t value) {
  add(name, help, MetricType::Counter, {sample(MetricType::Counter, static_cast<double>(value))});
}

void MetricFamilies::counter(const char* name, const char* help, double value) {
  add(name, help, MetricType::Counter, {sample(MetricType::Counter, value)});
}

void MetricFamilies::gauge(const char* name, const char* help, double value, Labels labels) {
  add(name, help, MetricType::Gauge, {sample(MetricType::Gauge, value, std::move(labels))});
}

void MetricFamilies::labelledCounter(
    const char* name, const char* help, const char* label,
    const std::vector<std::pair<const char*, std::uint64_t>>& values) {
  std::vector<ClientMetric> samples;
  samples.reserve(values.size());
  for (const auto& [value, count] : values) {
    samples.push_back(sample(MetricType::Counter, static_cast<double>(count), {{label, value}}));
  }
  add(name, help, MetricType::Counter, std::move(samples));
}

void MetricsRegistry::add(std::shared_ptr<const prometheus::Collectable> collectable) {
  std::lock_guard<std::mutex> lock(mutex_);
  collectables_.push_back(std::move(collectable));
}

void MetricsRegistry::add(CallbackCollectable::Source source) {
  add(std::make_shared<const CallbackCollectable>(std::move(source)));
}

std::vector<MetricFamily> MetricsRegistry::Collect() const {
  std::vector<std::shared_ptr<const prometheus::Collectable>> collectables;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    collectables = collectables_;
  }
  std::vector<MetricFamily> out;
  for (const auto& c : collectables) {
    std::vector<MetricFamily> families = c->Collect();
    out.insert(out.end(), std::make_move_iterator(families.begin()),
               std::make_move_iterator(families.end()));
  }
  return out;
}

}  // namespace ayaflow::common
