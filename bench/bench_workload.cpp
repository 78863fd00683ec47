// SPDX-License-Identifier: MIT OR Apache-2.0
// The workload sink's cost on the pipeline thread: consume() of batches of 1000 final records
// whose ends are pods (every label set already has its series: the steady state), with few
// or very many (pod, peer) pairs, records with no pod end, and records whose label sets all
// overflow into _other. One iteration is one batch of 1000 records (Time: µs per batch, i.e. ns per
// record); items_per_second is records per second.
//
//   bench_workload --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ayaflow/k8s/workload_metrics.h"

namespace {

using namespace ayaflow;

constexpr std::size_t kBatch = 1000;

/// Batches of records between `pairs` (pod, peer) pairs drawn among the pods of `workloads`
/// workloads (three pods each); one peer in four is not a pod. `pairs == 0`: no pod at either
/// end.
std::vector<pipeline::BatchPtr> makeBatches(std::size_t workloads, std::size_t pairs) {
  using Pod = std::shared_ptr<const enrich::PodName>;
  std::vector<Pod> pods;
  for (std::size_t w = 0; w < workloads; ++w) {
    for (int i = 0; i < 3; ++i) {
      pods.push_back(std::make_shared<const enrich::PodName>(
          enrich::PodName{"namespace-" + std::to_string(w % 7),
                          "workload-" + std::to_string(w) + "-7c9f8b6d54-x7k2" + std::to_string(i),
                          "workload-" + std::to_string(w), "Deployment"}));
    }
  }
  std::mt19937_64 rng(42);
  std::vector<std::pair<Pod, Pod>> ends;
  for (std::size_t i = 0; i < pairs; ++i) {
    ends.emplace_back(pods[rng() % pods.size()],
                      rng() % 4 == 0 ? nullptr : pods[rng() % pods.size()]);
  }
  std::vector<pipeline::BatchPtr> out;
  for (int b = 0; b < 16; ++b) {
    auto batch = std::make_shared<pipeline::RecordBatch>();
    for (std::size_t i = 0; i < kBatch; ++i) {
      pipeline::FlowRecord r;
      r.packets = 1 + rng() % 10;
      r.bytes = r.packets * 1000;
      r.direction = rng() % 2 ? flow::Direction::kEgress : flow::Direction::kIngress;
      auto n = std::make_shared<enrich::ConnectionNames>();
      if (pairs != 0) {
        const auto& [a, z] = ends[rng() % ends.size()];
        n->local.pod = a;
        n->remote.pod = z;
      }
      r.names = std::move(n);
      batch->push_back(std::move(r));
    }
    out.push_back(std::move(batch));
  }
  return out;
}

void run(benchmark::State& state, k8s::WorkloadMetrics& sink,
         const std::vector<pipeline::BatchPtr>& batches) {
  for (const auto& b : batches) sink.consume(b, std::nullopt);  // every series exists now
  std::size_t i = 0;
  for (auto _ : state) {
    sink.consume(batches[i++ % batches.size()], std::nullopt);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kBatch));
  state.counters["series"] = static_cast<double>(sink.snapshot().series.size());
}

/// Series known: 30 workloads (90 pods) in `range(0)` (pod, peer) pairs; 200 is a busy
/// node's steady state (the cache hits), 20000 more than the cache holds (hash of strings).
void BM_ConsumeKnownSeries(benchmark::State& state) {
  const auto batches = makeBatches(30, static_cast<std::size_t>(state.range(0)));
  k8s::WorkloadMetrics sink(1000000);
  run(state, sink, batches);
}
BENCHMARK(BM_ConsumeKnownSeries)->Arg(200)->Arg(20000)->Unit(benchmark::kMicrosecond);

void BM_ConsumeNoPods(benchmark::State& state) {
  const auto batches = makeBatches(1, 0);
  k8s::WorkloadMetrics sink;
  run(state, sink, batches);
}
BENCHMARK(BM_ConsumeNoPods)->Unit(benchmark::kMicrosecond);

void BM_ConsumeOverflow(benchmark::State& state) {
  const auto batches = makeBatches(30, 200);
  k8s::WorkloadMetrics sink(0);  // every label set goes to _other
  run(state, sink, batches);
}
BENCHMARK(BM_ConsumeOverflow)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
