// SPDX-License-Identifier: MIT OR Apache-2.0
// The ayaflow_workload_* families: attribution of records to the workloads at their pod ends,
// the series limit and its _other series (sums exact against an independent model of the
// rule), checkpoints ignored, and the exposition text read back as Prometheus would.
#include "ayaflow/k8s/workload_metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "ayaflow/api/metrics.h"
#include "metrics_text.h"

namespace ayaflow::k8s {
namespace {

using enrich::PodName;
using flow::Direction;
using pipeline::FlowRecord;
using pipeline::RecordBatch;
using pipeline::RecordState;
using Pod = std::shared_ptr<const PodName>;

Pod pod(std::string ns, std::string name, std::string workload, std::string kind) {
  return std::make_shared<const PodName>(
      PodName{std::move(ns), std::move(name), std::move(workload), std::move(kind)});
}

/// A record from `src` to `dst` (null: not a pod of this node) as the pipeline names it: the
/// hook direction decides which end is local, so both orientations are exercised.
FlowRecord record(const Pod& src, const Pod& dst, std::uint64_t packets, std::uint64_t bytes,
                  Direction hook = Direction::kIngress, RecordState state = RecordState::kFinal) {
  FlowRecord r;
  r.packets = packets;
  r.bytes = bytes;
  r.direction = hook;
  r.state = state;
  auto names = std::make_shared<enrich::ConnectionNames>();
  enrich::EndpointNames& s = hook == Direction::kEgress ? names->local : names->remote;
  enrich::EndpointNames& d = hook == Direction::kEgress ? names->remote : names->local;
  s.pod = src;
  d.pod = dst;
  r.names = std::move(names);
  return r;
}

pipeline::BatchPtr batch(RecordBatch records) {
  return std::make_shared<const RecordBatch>(std::move(records));
}

using Labels =
    std::tuple<std::string, std::string, std::string, Direction, std::string, std::string>;
struct Sums {
  std::uint64_t packets = 0, bytes = 0;
  bool operator==(const Sums& o) const { return packets == o.packets && bytes == o.bytes; }
};

std::map<Labels, Sums> bySeries(const WorkloadSnapshot& s) {
  std::map<Labels, Sums> out;
  for (const WorkloadSeries& x : s.series) {
    const auto [it, inserted] = out.emplace(
        Labels{x.ns, x.workload, x.workload_kind, x.direction, x.peer_namespace, x.peer_workload},
        Sums{x.packets, x.bytes});
    EXPECT_TRUE(inserted) << "label set repeated: " << x.ns << "/" << x.workload;
  }
  return out;
}

const Pod kWeb1 = pod("shop", "web-7c9f8b6d54-x7k2p", "web", "Deployment");
const Pod kWeb2 = pod("shop", "web-7c9f8b6d54-q2w9z", "web", "Deployment");
const Pod kDb = pod("shop", "db-0", "db", "StatefulSet");
const Pod kDns = pod("kube-system", "coredns-5d78c9869d-8xkpm", "coredns", "Deployment");

TEST(WorkloadMetrics, AttributesEachPodEndAndNamesPodPeersOnly) {
  WorkloadMetrics m;
  ASSERT_TRUE(m.consume(batch({
                            record(kWeb1, kDb, 3, 300),                       // pod to pod
                            record(kDb, kWeb2, 2, 1200, Direction::kEgress),  // and back
                            record(kWeb2, kDb, 5, 500, Direction::kEgress),
                            record(kWeb1, nullptr, 7, 7000),     // to the outside
                            record(nullptr, kDb, 11, 110),       // from another node
                            record(kDns, kDns, 1, 80),           // a pod to itself
                            record(nullptr, nullptr, 99, 9900),  // the node only
                        }),
                        std::nullopt));
  FlowRecord unnamed;  // no names at all
  unnamed.packets = 50;
  unnamed.bytes = 5000;
  ASSERT_TRUE(m.consume(batch({unnamed}), std::nullopt));

  const WorkloadSnapshot s = m.snapshot();
  const std::map<Labels, Sums> want{
      {{"shop", "web", "Deployment", Direction::kEgress, "shop", "db"}, {8, 800}},
      {{"shop", "db", "StatefulSet", Direction::kIngress, "shop", "web"}, {8, 800}},
      {{"shop", "db", "StatefulSet", Direction::kEgress, "shop", "web"}, {2, 1200}},
      {{"shop", "web", "Deployment", Direction::kIngress, "shop", "db"}, {2, 1200}},
      {{"shop", "web", "Deployment", Direction::kEgress, "", ""}, {7, 7000}},
      {{"shop", "db", "StatefulSet", Direction::kIngress, "", ""}, {11, 110}},
      {{"kube-system", "coredns", "Deployment", Direction::kEgress, "kube-system", "coredns"},
       {1, 80}},
      {{"kube-system", "coredns", "Deployment", Direction::kIngress, "kube-system", "coredns"},
       {1, 80}},
  };
  EXPECT_EQ(bySeries(s), want);
  EXPECT_EQ(s.series.size(), want.size());
  EXPECT_EQ(s.overflow_records, 0u);
  EXPECT_EQ(s.series_limit, WorkloadMetrics::kDefaultSeriesLimit);
  // First seen, first listed.
  ASSERT_FALSE(s.series.empty());
  EXPECT_EQ(s.series[0].workload, "web");
  EXPECT_EQ(s.series[0].direction, Direction::kEgress);
}

TEST(WorkloadMetrics, AnotherPodNameForTheSameEndsCountsForItsOwnWorkload) {
  // The sink remembers (pod, peer) -> series by the PodName objects: a pod replaced (its IP
  // reused by a pod of another workload) gets a new PodName and its own series, also when
  // the old PodName is gone everywhere but in the sink.
  WorkloadMetrics m;
  Pod old_pod = pod("shop", "web-7c9f8b6d54-x7k2p", "web", "Deployment");
  ASSERT_TRUE(m.consume(batch({record(old_pod, kDb, 1, 100)}), std::nullopt));
  old_pod.reset();
  const Pod new_pod = pod("shop", "cart-6d9f7c5b8-q2w9z", "cart", "Deployment");
  ASSERT_TRUE(m.consume(batch({record(new_pod, kDb, 2, 200)}), std::nullopt));
  ASSERT_TRUE(m.consume(batch({record(new_pod, kDb, 4, 400)}), std::nullopt));
  const std::map<Labels, Sums> want{
      {{"shop", "web", "Deployment", Direction::kEgress, "shop", "db"}, {1, 100}},
      {{"shop", "db", "StatefulSet", Direction::kIngress, "shop", "web"}, {1, 100}},
      {{"shop", "cart", "Deployment", Direction::kEgress, "shop", "db"}, {6, 600}},
      {{"shop", "db", "StatefulSet", Direction::kIngress, "shop", "cart"}, {6, 600}},
  };
  EXPECT_EQ(bySeries(m.snapshot()), want);
}

TEST(WorkloadMetrics, IgnoresCheckpoints) {
  WorkloadMetrics m;
  // A window's checkpoints (cumulative sums so far), then its final record.
  EXPECT_TRUE(
      m.consume(batch({record(kWeb1, kDb, 2, 200, Direction::kIngress, RecordState::kProvisional)}),
                std::nullopt));
  EXPECT_TRUE(
      m.consume(batch({record(kWeb1, kDb, 5, 500, Direction::kIngress, RecordState::kProvisional)}),
                std::nullopt));
  EXPECT_TRUE(m.snapshot().series.empty());
  EXPECT_TRUE(m.consume(batch({record(kWeb1, kDb, 6, 600)}), std::nullopt));
  EXPECT_TRUE(m.consume(nullptr, std::nullopt));
  EXPECT_TRUE(m.consume(batch({}), std::nullopt));
  const std::map<Labels, Sums> want{
      {{"shop", "web", "Deployment", Direction::kEgress, "shop", "db"}, {6, 600}},
      {{"shop", "db", "StatefulSet", Direction::kIngress, "shop", "web"}, {6, 600}},
  };
  EXPECT_EQ(bySeries(m.snapshot()), want);
}

/// Random traffic between `workloads` workloads in 3 namespaces, some peers outside.
std::vector<RecordBatch> randomTraffic(std::size_t workloads, std::size_t records, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<Pod> pods;
  for (std::size_t i = 0; i < workloads; ++i) {
    const std::string ns = "ns" + std::to_string(i % 3);
    const std::string w = "app" + std::to_string(i);
    // Two pods per workload: distinct PodName objects with the same labels.
    pods.push_back(pod(ns, w + "-0", w, i % 2 ? "StatefulSet" : "Deployment"));
    pods.push_back(pod(ns, w + "-1", w, i % 2 ? "StatefulSet" : "Deployment"));
  }
  std::uniform_int_distribution<std::size_t> pick(0, pods.size() + 1);  // +2: not a pod
  std::uniform_int_distribution<std::uint64_t> packets(1, 1000);
  std::vector<RecordBatch> out(1);
  for (std::size_t i = 0; i < records; ++i) {
    const std::size_t a = pick(rng), b = pick(rng);
    const Pod src = a < pods.size() ? pods[a] : nullptr;
    const Pod dst = b < pods.size() ? pods[b] : nullptr;
    const std::uint64_t p = packets(rng);
    out.back().push_back(record(src, dst, p, p * (40 + rng() % 1460),
                                rng() % 2 ? Direction::kEgress : Direction::kIngress));
    if (out.back().size() == 97) out.emplace_back();
  }
  return out;
}

/// The rule, modelled independently: label sets in order of first sight, the first `limit`
/// get a series, the rest go to _other; every pod end counts.
struct Model {
  explicit Model(std::size_t limit_) : limit(limit_) {}

  std::size_t limit;
  std::map<Labels, Sums> series;
  std::map<Direction, Sums> other;
  std::uint64_t overflow = 0;
  Sums total[2];  // by direction

  void add(const PodName& p, const PodName* peer, Direction d, const FlowRecord& r) {
    Labels l{p.ns, p.workload,           p.workload_kind,
             d,    peer ? peer->ns : "", peer ? peer->workload : ""};
    total[static_cast<int>(d)].packets += r.packets;
    total[static_cast<int>(d)].bytes += r.bytes;
    auto it = series.find(l);
    if (it == series.end() && series.size() < limit) it = series.emplace(l, Sums{}).first;
    Sums& s = it != series.end() ? it->second : (++overflow, other[d]);
    s.packets += r.packets;
    s.bytes += r.bytes;
  }
  void add(const RecordBatch& b) {
    for (const FlowRecord& r : b) {
      const auto* s = r.srcNames() ? r.srcNames()->pod.get() : nullptr;
      const auto* d = r.dstNames() ? r.dstNames()->pod.get() : nullptr;
      if (s) add(*s, d, Direction::kEgress, r);
      if (d) add(*d, s, Direction::kIngress, r);
    }
  }
  std::map<Labels, Sums> expected() const {
    std::map<Labels, Sums> out = series;
    for (const auto& [d, s] : other) {
      out[{kOtherLabel, kOtherLabel, kOtherLabel, d, kOtherLabel, kOtherLabel}] = s;
    }
    return out;
  }
};

TEST(WorkloadMetrics, SeriesLimitSumsNewLabelSetsIntoOtherExactly) {
  for (const std::size_t limit :
       {std::size_t{0}, std::size_t{1}, std::size_t{25}, std::size_t{5000}}) {
    SCOPED_TRACE("limit " + std::to_string(limit));
    WorkloadMetrics m(limit);
    Model model(limit);
    for (const RecordBatch& b : randomTraffic(30, 20000, 42 + limit)) {
      model.add(b);
      ASSERT_TRUE(m.consume(batch(b), std::nullopt));
    }
    const WorkloadSnapshot s = m.snapshot();
    EXPECT_EQ(s.series_limit, limit);
    EXPECT_EQ(bySeries(s), model.expected());
    EXPECT_EQ(s.overflow_records, model.overflow);
    std::size_t named = 0;
    Sums sum[2];
    for (const WorkloadSeries& x : s.series) {
      named += x.ns != kOtherLabel;
      sum[static_cast<int>(x.direction)].packets += x.packets;
      sum[static_cast<int>(x.direction)].bytes += x.bytes;
    }
    EXPECT_LE(named, limit);
    EXPECT_LE(s.series.size(), limit + 2);
    // Sum over all series == sum over the records' pod ends, per direction.
    EXPECT_EQ(sum[0], model.total[0]);
    EXPECT_EQ(sum[1], model.total[1]);
    // 30 workloads x 2 directions x up to 31 peers: more label sets than 25, fewer than 5000.
    if (limit == 25) {
      EXPECT_GT(s.overflow_records, 0u);
    }
    if (limit == 5000) {
      EXPECT_EQ(s.overflow_records, 0u);
    }
  }
}

TEST(WorkloadMetrics, ExpositionTextReadsBack) {
  WorkloadMetrics m(2);
  ASSERT_TRUE(m.consume(batch({record(kWeb1, kDb, 3, 300), record(kWeb1, nullptr, 4, 4000),
                               record(kDns, nullptr, 5, 500)}),
                        std::nullopt));
  const auto collectable = m.metrics();
  const api::fake::ParsedMetrics p = api::fake::parseMetrics(api::renderMetrics(*collectable));
  const std::string web_db =
      R"({namespace="shop",workload="web",workload_kind="Deployment",direction="egress",)"
      R"(peer_namespace="shop",peer_workload="db"})";
  const std::string db_web =
      R"({namespace="shop",workload="db",workload_kind="StatefulSet",direction="ingress",)"
      R"(peer_namespace="shop",peer_workload="web"})";
  const std::string other_egress =
      R"({namespace="_other",workload="_other",workload_kind="_other",direction="egress",)"
      R"(peer_namespace="_other",peer_workload="_other"})";
  EXPECT_EQ(p.at("ayaflow_workload_packets_total" + web_db), "3");
  EXPECT_EQ(p.at("ayaflow_workload_bytes_total" + web_db), "300");
  EXPECT_EQ(p.at("ayaflow_workload_packets_total" + db_web), "3");
  EXPECT_EQ(p.at("ayaflow_workload_bytes_total" + db_web), "300");
  // Limit 2 reached: web to the outside and coredns went to _other egress.
  EXPECT_EQ(p.at("ayaflow_workload_packets_total" + other_egress), "9");
  EXPECT_EQ(p.at("ayaflow_workload_bytes_total" + other_egress), "4500");
  EXPECT_EQ(p.at("ayaflow_workload_series_limit"), "2");
  EXPECT_EQ(p.at("ayaflow_workload_series_overflow_total"), "2");
  EXPECT_EQ(p.values.size(), 8u);  // 3 series x 2 families, the limit, the overflow
  EXPECT_EQ(p.types.at("ayaflow_workload_packets_total"), "counter");
  EXPECT_EQ(p.types.at("ayaflow_workload_bytes_total"), "counter");
  EXPECT_EQ(p.types.at("ayaflow_workload_series_limit"), "gauge");
  EXPECT_EQ(p.types.at("ayaflow_workload_series_overflow_total"), "counter");
  for (const auto& [family, type] : p.types) EXPECT_FALSE(p.helps.at(family).empty()) << family;

  // Peer not a pod: empty labels, as written.
  WorkloadMetrics one;
  ASSERT_TRUE(one.consume(batch({record(nullptr, kDns, 1, 60)}), std::nullopt));
  const api::fake::ParsedMetrics q = api::fake::parseMetrics(api::renderMetrics(*one.metrics()));
  EXPECT_EQ(q.at(R"(ayaflow_workload_bytes_total{namespace="kube-system",workload="coredns",)"
                 R"(workload_kind="Deployment",direction="ingress",peer_namespace="",)"
                 R"(peer_workload=""})"),
            "60");
}

TEST(WorkloadMetrics, NothingSummedYetShowsOnlyTheLimitAndOverflow) {
  WorkloadMetrics m(7);
  const api::fake::ParsedMetrics p = api::fake::parseMetrics(api::renderMetrics(*m.metrics()));
  EXPECT_EQ(p.values.size(), 2u);
  EXPECT_EQ(p.at("ayaflow_workload_series_limit"), "7");
  EXPECT_EQ(p.at("ayaflow_workload_series_overflow_total"), "0");
}

TEST(WorkloadMetrics, CollectableOutlivesTheSink) {
  std::shared_ptr<const prometheus::Collectable> c;
  {
    WorkloadMetrics m;
    ASSERT_TRUE(m.consume(batch({record(kWeb1, nullptr, 1, 100)}), std::nullopt));
    c = m.metrics();
  }
  const api::fake::ParsedMetrics p = api::fake::parseMetrics(api::renderMetrics(*c));
  EXPECT_EQ(p.values.size(), 4u);
}

TEST(WorkloadMetrics, ScrapesDuringConsumeSeeGrowingSumsAndEndExact) {
  WorkloadMetrics m(40);
  Model model(40);
  const std::vector<RecordBatch> traffic = randomTraffic(12, 30000, 7);
  std::atomic<bool> done{false};
  std::atomic<int> problems{0};
  std::thread scraper([&] {
    std::map<Labels, Sums> last;
    std::uint64_t last_overflow = 0;
    while (!done.load()) {
      const WorkloadSnapshot s = m.snapshot();
      const std::map<Labels, Sums> now = bySeries(s);
      for (const auto& [labels, sums] : last) {
        const auto it = now.find(labels);
        if (it == now.end() || it->second.packets < sums.packets || it->second.bytes < sums.bytes) {
          ++problems;  // a series vanished or a counter went down
        }
      }
      if (s.overflow_records < last_overflow) ++problems;
      last = now;
      last_overflow = s.overflow_records;
      static_cast<void>(api::renderMetrics(*m.metrics()));
    }
  });
  for (const RecordBatch& b : traffic) {
    model.add(b);
    EXPECT_TRUE(m.consume(batch(b), std::nullopt));
  }
  done = true;
  scraper.join();
  EXPECT_EQ(problems.load(), 0);
  EXPECT_EQ(bySeries(m.snapshot()), model.expected());
  EXPECT_EQ(m.snapshot().overflow_records, model.overflow);
}

}  // namespace
}  // namespace ayaflow::k8s
