// SPDX-License-Identifier: MIT OR Apache-2.0
// MetricsRegistry and the family builder: what components register is what a scrape shows.
#include "ayaflow/common/metrics.h"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <stdexcept>

namespace ayaflow::common {
namespace {

TEST(MetricsRegistry, CollectsEveryCollectableInOrderAtEveryScrape) {
  MetricsRegistry registry;
  std::atomic<std::uint64_t> value{1};
  registry.add([&value] {
    MetricFamilies f;
    f.counter("a_total", "A.", value.load());
    return f.take();
  });
  registry.add([] {
    MetricFamilies f;
    f.gauge("b", "B.", 2.5, {{"k", "v"}});
    f.labelledCounter("c_total", "C.", "reason", {{"x", 1}, {"y", 0}});
    f.add("empty", "Left out.", prometheus::MetricType::Counter, {});
    return f.take();
  });
  auto families = registry.Collect();
  ASSERT_EQ(families.size(), 3u);
  EXPECT_EQ(families[0].name, "a_total");
  EXPECT_EQ(families[0].metric[0].counter.value, 1.0);
  EXPECT_EQ(families[1].name, "b");
  EXPECT_EQ(families[1].type, prometheus::MetricType::Gauge);
  EXPECT_EQ(families[2].metric.size(), 2u);
  value = 9;
  families = registry.Collect();
  EXPECT_EQ(families[0].metric[0].counter.value, 9.0);
  const std::string text = prometheus::TextSerializer{}.Serialize(families);
  EXPECT_NE(text.find("c_total{reason=\"y\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("b{k=\"v\"} 2.5"), std::string::npos) << text;
}

TEST(MetricsRegistry, AFailingCollectableFailsTheScrape) {
  MetricsRegistry registry;
  registry.add([]() -> std::vector<prometheus::MetricFamily> {
    throw std::runtime_error("kernel read failed");
  });
  EXPECT_THROW(registry.Collect(), std::runtime_error);
}

TEST(MetricFamilies, CountersAreExactUpTo2To53) {
  MetricFamilies f;
  f.counter("big_total", "Big.", std::uint64_t{1} << 53);
  const std::string text = prometheus::TextSerializer{}.Serialize(f.take());
  EXPECT_NE(text.find("big_total 9007199254740992"), std::string::npos) << text;
}

}  // namespace
}  // namespace ayaflow::common
