// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "ayaflow/flow/packet.h"
#include "ayaflow/pipeline/flow_record.h"

namespace ayaflow::k8s {

/// One series of the workload families: the sums of one label set.
struct WorkloadSeries {
  std::string ns;                                        ///< label `namespace`
  std::string workload;                                  ///< label `workload`
  std::string workload_kind;                             ///< label `workload_kind`
  flow::Direction direction = flow::Direction::kEgress;  ///< label `direction`
  std::string peer_namespace;  ///< "" when the peer is not a pod of this node
  std::string peer_workload;   ///< "" when the peer is not a pod of this node
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

/// What the workload families show at one moment.
struct WorkloadSnapshot {
  /// In the order the label sets were first seen; then the `_other` series (egress, then
  /// ingress) if anything was summed into them.
  std::vector<WorkloadSeries> series;
  std::size_t series_limit = 0;
  std::uint64_t overflow_records = 0;
};

/// The label value of every label of the overflow series (direction kept).
inline constexpr const char* kOtherLabel = "_other";

/// The ayaflow_workload_* families of `snapshot`.
std::vector<prometheus::MetricFamily> workloadFamilies(const WorkloadSnapshot& snapshot);

/// Traffic per Kubernetes workload, for /metrics: a record sink that sums final flow records'
/// packets and bytes into ayaflow_workload_packets_total / ayaflow_workload_bytes_total, with
/// labels namespace, workload, workload_kind, direction, peer_namespace, peer_workload.
///
/// Attribution: a record whose source is a pod of this node (its names carry a PodName)
/// counts for that pod's workload with direction="egress" and the destination as peer; a
/// record whose destination is a pod counts for that pod's workload with direction="ingress"
/// and the source as peer. Traffic between two pods of the node is therefore summed twice in
/// these families, once under each end (egress of the sender, ingress of the receiver), while
/// the agent counts each packet once: sum one direction, never both, to total the traffic.
/// The peer labels are the peer's namespace and workload when it is a pod of this node, and
/// "" otherwise (the node itself, another node's pod, anything outside the cluster). A record
/// with no pod end is not counted here.
///
/// Cardinality: at most `series_limit` label sets get their own series; once reached, a
/// record of a new label set is summed into the series whose labels are all "_other" (its
/// direction kept), and ayaflow_workload_series_overflow_total counts it (once per pod end so
/// summed). Series are never removed (counters), so the sums over all series always equal
/// the sums over the records, and memory stays bounded by the limit: about 8 bytes per
/// allowed series up front, a few hundred bytes per series in use, and a fixed cache of
/// (pod, peer) -> series (48 KiB, which may keep the names of up to 2048 departed pods).
///
/// Provisional records (checkpoints of aggregation windows still open) are ignored: the final
/// record of a window carries its exact sums. consume() sums synchronously (no thread, no
/// queue): per pod end a lookup by the PodName objects' addresses, or on a miss a hash of the
/// label strings; no allocation for a label set already seen. It never blocks on I/O and
/// never drops.
///
/// Threads: consume() on the pipeline thread (consume() calls are serialised by the sink);
/// snapshot() and metrics() from any thread, concurrently with consume() and without
/// waiting for it (series are published append-only, sums are atomics).
class WorkloadMetrics final : public pipeline::RecordSink {
 public:
  static constexpr std::size_t kDefaultSeriesLimit = 500;

  explicit WorkloadMetrics(std::size_t series_limit = kDefaultSeriesLimit);
  ~WorkloadMetrics() override;
  WorkloadMetrics(const WorkloadMetrics&) = delete;
  WorkloadMetrics& operator=(const WorkloadMetrics&) = delete;

  const char* name() const noexcept override { return "workload_metrics"; }
  /// Sums a batch of final records; returns true for every batch (checkpoints included,
  /// which it ignores).
  bool consume(pipeline::BatchPtr batch, Deadline room_until) noexcept override;
  /// Nothing is queued: every consumed batch is already summed.
  void flush() override {}
  /// Nothing to stop (no thread); later batches are still summed.
  void stop() override {}

  WorkloadSnapshot snapshot() const;

  /// ayaflow_workload_* families. The collectable keeps the sums alive: it may outlive the
  /// sink.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace ayaflow::k8s
