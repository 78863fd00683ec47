// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/k8s/workload_metrics.h"

#include <atomic>
#include <functional>
#include <mutex>
#include <new>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "ayaflow/common/metrics.h"

namespace ayaflow::k8s {
namespace {

using prometheus::MetricType;

const char* directionLabel(flow::Direction d) {
  return d == flow::Direction::kEgress ? "egress" : "ingress";
}

/// A label set, as views: into a record's PodName strings for a lookup, into the series' own
/// strings once stored. Lookups therefore allocate nothing.
struct Key {
  std::string_view ns, workload, kind, peer_ns, peer_workload;
  flow::Direction direction;

  bool operator==(const Key& o) const noexcept {
    return direction == o.direction && ns == o.ns && workload == o.workload && kind == o.kind &&
           peer_ns == o.peer_ns && peer_workload == o.peer_workload;
  }
};

struct KeyHash {
  std::size_t operator()(const Key& k) const noexcept {
    const std::hash<std::string_view> h;
    std::size_t seed = static_cast<std::size_t>(k.direction);
    for (std::string_view s : {k.ns, k.workload, k.kind, k.peer_ns, k.peer_workload}) {
      seed ^= h(s) + 0x9e3779b97f4a7c15ULL + (seed << 6) + (seed >> 2);
    }
    return seed;
  }
};

/// A series: labels fixed once published, sums written by the single writer (relaxed loads
/// and stores, no read-modify-write needed) and read by scrapes.
struct Series {
  Series(std::string ns_, std::string workload_, std::string kind_, flow::Direction direction_,
         std::string peer_ns_, std::string peer_workload_)
      : ns(std::move(ns_)),
        workload(std::move(workload_)),
        kind(std::move(kind_)),
        peer_ns(std::move(peer_ns_)),
        peer_workload(std::move(peer_workload_)),
        direction(direction_) {}

  Key key() const { return Key{ns, workload, kind, peer_ns, peer_workload, direction}; }

  void add(std::uint64_t p, std::uint64_t b) noexcept {
    packets.store(packets.load(std::memory_order_relaxed) + p, std::memory_order_relaxed);
    bytes.store(bytes.load(std::memory_order_relaxed) + b, std::memory_order_relaxed);
  }

  WorkloadSeries read() const {
    return WorkloadSeries{ns,
                          workload,
                          kind,
                          direction,
                          peer_ns,
                          peer_workload,
                          packets.load(std::memory_order_relaxed),
                          bytes.load(std::memory_order_relaxed)};
  }

  const std::string ns, workload, kind, peer_ns, peer_workload;
  const flow::Direction direction;
  std::atomic<std::uint64_t> packets{0};
  std::atomic<std::uint64_t> bytes{0};
};

}  // namespace

struct WorkloadMetrics::State {
  explicit State(std::size_t limit_)
      : limit(limit_),
        slots(limit_),
        other{Series(kOtherLabel, kOtherLabel, kOtherLabel, flow::Direction::kEgress, kOtherLabel,
                     kOtherLabel),
              Series(kOtherLabel, kOtherLabel, kOtherLabel, flow::Direction::kIngress, kOtherLabel,
                     kOtherLabel)} {
    index.reserve(limit_);
  }

  /// Sums one pod end of a record. Writer only (write_mutex held).
  void add(const std::shared_ptr<const enrich::PodName>& pod,
           const std::shared_ptr<const enrich::PodName>& peer, flow::Direction direction,
           std::uint64_t packets, std::uint64_t bytes) noexcept {
    // Most records come from a few (pod, peer) pairs: a cache by the PodName objects'
    // addresses skips hashing and comparing five strings. Its entries own the PodNames, so an
    // address in the cache is never reused by another pod.
    CacheEntry& e = cache[cacheSlot(pod.get(), peer.get(), direction)];
    if (e.series == nullptr || e.pod != pod || e.peer != peer || e.direction != direction) {
      Series* series = find(*pod, peer.get(), direction);
      e.pod = pod;  // copies of shared pointers: no allocation
      e.peer = peer;
      e.direction = direction;
      e.series = series;
    }
    e.series->add(packets, bytes);
    if (e.series == &other[0] || e.series == &other[1]) {
      overflow.store(overflow.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }

  /// The series of a label set: the existing one, a new one below the limit, else _other.
  Series* find(const enrich::PodName& pod, const enrich::PodName* peer,
               flow::Direction direction) noexcept {
    const Key key{pod.ns,
                  pod.workload,
                  pod.workload_kind,
                  peer != nullptr ? std::string_view(peer->ns) : std::string_view(),
                  peer != nullptr ? std::string_view(peer->workload) : std::string_view(),
                  direction};
    if (const auto it = index.find(key); it != index.end()) return it->second;
    const std::size_t n = count.load(std::memory_order_relaxed);
    if (n < limit) {
      try {
        auto series = std::make_unique<Series>(
            std::string(key.ns), std::string(key.workload), std::string(key.kind), direction,
            std::string(key.peer_ns), std::string(key.peer_workload));
        Series* s = series.get();
        index.emplace(s->key(), s);  // may throw: then nothing is published
        slots[n] = std::move(series);
        count.store(n + 1, std::memory_order_release);  // publishes slots[n] to scrapes
        return s;
      } catch (const std::bad_alloc&) {
        // Out of memory: the label set's records still count, in the overflow series.
      }
    }
    const int d = direction == flow::Direction::kEgress ? 0 : 1;
    other_used[d].store(true, std::memory_order_release);
    return &other[d];
  }

  static std::size_t cacheSlot(const void* pod, const void* peer, flow::Direction d) noexcept {
    std::uint64_t h = reinterpret_cast<std::uintptr_t>(pod) * 0x9e3779b97f4a7c15ULL;
    h ^= reinterpret_cast<std::uintptr_t>(peer) * 0xc2b2ae3d27d4eb4fULL;
    h ^= static_cast<std::uint64_t>(d) << 40;
    return static_cast<std::size_t>(h >> 40) & (kCacheSize - 1);
  }

  WorkloadSnapshot snapshot() const {
    WorkloadSnapshot out;
    out.series_limit = limit;
    const std::size_t n = count.load(std::memory_order_acquire);
    out.series.reserve(n + 2);
    for (std::size_t i = 0; i < n; ++i) out.series.push_back(slots[i]->read());
    for (int d = 0; d < 2; ++d) {
      if (other_used[d].load(std::memory_order_acquire)) out.series.push_back(other[d].read());
    }
    out.overflow_records = overflow.load(std::memory_order_relaxed);
    return out;
  }

  /// A direct-mapped cache (PodName, peer PodName, direction) -> series.
  struct CacheEntry {
    std::shared_ptr<const enrich::PodName> pod, peer;
    flow::Direction direction = flow::Direction::kEgress;
    Series* series = nullptr;
  };
  // 48 KiB; its entries may keep up to 2048 PodNames of pods already gone alive.
  static constexpr std::size_t kCacheSize = 1024;

  const std::size_t limit;
  std::mutex write_mutex;  // serialises consume() calls
  // Writer only (write_mutex).
  std::vector<CacheEntry> cache = std::vector<CacheEntry>(kCacheSize);
  // Writer only (write_mutex).
  std::unordered_map<Key, Series*, KeyHash> index;
  // Allocated once to `limit` entries, never resized: slots [0, count) are published with
  // `count` (release) and never written again, so scrapes read them without a lock.
  std::vector<std::unique_ptr<Series>> slots;
  std::atomic<std::size_t> count{0};
  Series other[2];  // egress, ingress
  std::atomic<bool> other_used[2] = {false, false};
  std::atomic<std::uint64_t> overflow{0};
};

std::vector<prometheus::MetricFamily> workloadFamilies(const WorkloadSnapshot& snapshot) {
  using Sample = prometheus::ClientMetric;
  std::vector<Sample> packets, bytes;
  packets.reserve(snapshot.series.size());
  bytes.reserve(snapshot.series.size());
  for (const WorkloadSeries& s : snapshot.series) {
    const common::MetricFamilies::Labels labels{{"namespace", s.ns},
                                                {"workload", s.workload},
                                                {"workload_kind", s.workload_kind},
                                                {"direction", directionLabel(s.direction)},
                                                {"peer_namespace", s.peer_namespace},
                                                {"peer_workload", s.peer_workload}};
    packets.push_back(common::MetricFamilies::sample(MetricType::Counter,
                                                     static_cast<double>(s.packets), labels));
    bytes.push_back(
        common::MetricFamilies::sample(MetricType::Counter, static_cast<double>(s.bytes), labels));
  }
  common::MetricFamilies f;
  f.add("ayaflow_workload_packets_total",
        "Packets of flow records with a pod of this node at one end, by the pod's workload, "
        "direction (egress: the pod sent them) and peer workload (\"\" when the peer is not a "
        "pod of this node); traffic between two pods of the node counts under both",
        MetricType::Counter, std::move(packets));
  f.add("ayaflow_workload_bytes_total",
        "IP bytes of flow records with a pod of this node at one end, by the pod's workload, "
        "direction (egress: the pod sent them) and peer workload (\"\" when the peer is not a "
        "pod of this node); traffic between two pods of the node counts under both",
        MetricType::Counter, std::move(bytes));
  f.gauge("ayaflow_workload_series_limit",
          "Most label sets of the ayaflow_workload_* counters; beyond it new ones are summed "
          "into the series labelled _other (--workload-series-limit)",
          static_cast<double>(snapshot.series_limit));
  f.counter("ayaflow_workload_series_overflow_total",
            "Flow records (once per pod end) summed into the _other workload series because "
            "ayaflow_workload_series_limit label sets were already in use",
            snapshot.overflow_records);
  return f.take();
}

WorkloadMetrics::WorkloadMetrics(std::size_t series_limit)
    : state_(std::make_shared<State>(series_limit)) {}

WorkloadMetrics::~WorkloadMetrics() = default;

bool WorkloadMetrics::consume(pipeline::BatchPtr batch, Deadline /*room_until*/) noexcept {
  if (!batch) return true;
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.write_mutex);
  for (const pipeline::FlowRecord& r : *batch) {
    // Checkpoints of open windows: the window's final record carries the exact sums.
    if (r.state != pipeline::RecordState::kFinal || !r.names) continue;
    const enrich::EndpointNames* src = r.srcNames();
    const enrich::EndpointNames* dst = r.dstNames();
    static const std::shared_ptr<const enrich::PodName> kNone;
    const auto& src_pod = src != nullptr ? src->pod : kNone;
    const auto& dst_pod = dst != nullptr ? dst->pod : kNone;
    if (src_pod) s.add(src_pod, dst_pod, flow::Direction::kEgress, r.packets, r.bytes);
    if (dst_pod) s.add(dst_pod, src_pod, flow::Direction::kIngress, r.packets, r.bytes);
  }
  return true;
}

WorkloadSnapshot WorkloadMetrics::snapshot() const { return state_->snapshot(); }

std::shared_ptr<const prometheus::Collectable> WorkloadMetrics::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [state = std::shared_ptr<const State>(state_)] {
        return workloadFamilies(state->snapshot());
      });
}

}  // namespace ayaflow::k8s
