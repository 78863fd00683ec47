// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "ayaflow/enrich/enricher.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/flow/packet_sink.h"
#include "ayaflow/pipeline/flow_record.h"

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::pipeline {

/// Settings of a Pipeline.
struct PipelineOptions {
  std::uint32_t aggregation_window_s = 0;  ///< 0: a record per packet; N: per flow per N s
  std::size_t batch_records = 1000;        ///< raw mode: records per batch handed to the sinks
  std::chrono::milliseconds batch_interval{2000};  ///< a partial batch is handed over this often
  /// Packets capture may queue (128 bytes each, lazily mapped).
  std::size_t queue_capacity = 16384;
  std::size_t max_open_flows = 65536;  ///< aggregated mode: open (flow, window) sums in memory
  /// Aggregated mode: how often the sums of open windows that changed go to the sinks as
  /// provisional records (SQLite updates their rows in place), so a crash loses at most about
  /// this much instead of a whole window. 0: only when the window ends. Sensible: 1-10 s.
  std::chrono::milliseconds checkpoint_interval{2000};
  /// Aggregated mode: a window is handed over this long after it ends, so packets still on
  /// their way (the kernel flow tables are collected once a second, the ring buffer is
  /// drained within a fraction of one) join its sums rather than make a second record.
  std::chrono::milliseconds window_grace{1500};
  std::chrono::milliseconds log_interval{10000};  ///< at most one drop warning per interval
  /// flush()/stop(): how long the sinks may take to make room for what is handed over.
  std::chrono::milliseconds drain_timeout{10000};
};

/// Counters of a Pipeline; each exact (relaxed atomics, not a point-in-time cut).
/// "Packets" are onPacket() calls: an event, or a kernel flow-table entry standing for many.
struct PipelineStats {
  std::uint64_t packets_queued = 0;              ///< accepted by onPacket()
  std::uint64_t packets_dropped_queue_full = 0;  ///< refused: the queue was full
  std::uint64_t packets_dropped_stopped = 0;     ///< refused: after stop()
  std::uint64_t records_emitted = 0;             ///< final records handed to the sinks
  std::uint64_t records_checkpointed = 0;        ///< provisional records handed to the sinks
  std::uint64_t checkpoints = 0;                 ///< checkpoints taken (aggregated mode)
  std::uint64_t enrich_failures = 0;             ///< records handed over without names
  std::size_t queue_depth = 0;                   ///< packets waiting now
  std::size_t queue_capacity = 0;
  std::size_t open_flows = 0;  ///< aggregated mode: (flow, window) sums not yet emitted
};

/// The ayaflow_pipeline_* families of `stats`.
std::vector<prometheus::MetricFamily> pipelineFamilies(const PipelineStats& stats);

/// The way from captured packets to flow records: a bounded hand-off queue from the capture
/// thread, one record per packet (raw mode) or per directional flow per window (aggregated
/// mode, see WindowAggregator), names from the enrichment chain, and batches fanned out to
/// every sink (each with its own thread and bounded queue).
///
/// Ownership: owns one thread; borrows the enricher and the sinks, which must outlive it
/// (sinks are stopped by their owner after the pipeline).
///
/// Threads: onPacket() from capture (any thread, several at once), never waits and never
/// allocates: packets go into a preallocated ring guarded by a mutex held for one copy.
/// flush(), syncForTest() and stop() from any thread; stats() and metrics() from any.
///
/// Records: raw mode hands a batch over when batch_records are pending or every
/// batch_interval; aggregated mode hands a window's records over window_grace after the
/// window has ended (or all open sums early when more than max_open_flows are open: totals stay
/// exact, a flow may then get a second record for the same window); every checkpoint_interval, the
/// open windows' changed sums go over as provisional records (see FlowRecord). Times: a packet's
/// CLOCK_MONOTONIC timestamp_ns becomes Unix ms with the pipeline's CLOCK_REALTIME -
/// CLOCK_MONOTONIC offset; a packet with timestamp_ns 0 is stamped when the pipeline takes it.
///
/// Errors: the constructor throws std::bad_alloc / std::system_error; nothing else throws.
/// Drops are counted and logged (logger "pipeline") at most once per log_interval; an
/// enricher that throws costs the record its names (counted), never the record.
class Pipeline final : public flow::PacketSink {
 public:
  Pipeline(PipelineOptions options, const enrich::Enricher* enricher,
           std::vector<RecordSink*> sinks);
  ~Pipeline() override;  ///< stop()
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  /// Queues one packet; when the queue is full it is counted in packets_dropped_queue_full.
  void onPacket(const flow::Packet& packet) noexcept override;

  /// Hands everything submitted before the call to the sinks (pending batch and open
  /// windows included), then flushes every sink. No-op after stop().
  void flush();

  /// Takes every queued packet, hands over the pending batch and every open window, and
  /// stops the thread. Idempotent. The sinks are not stopped.
  void stop();

  PipelineStats stats() const;

  /// ayaflow_pipeline_* families.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

  /// Waits until the pipeline has taken every packet submitted before the call and dealt
  /// with it by the normal rules (full batches handed over, a partial batch kept). For tests.
  void syncForTest();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::pipeline
