// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/pipeline/pipeline.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/common/thread.h"
#include "ayaflow/pipeline/window_aggregator.h"
#include "packet_slots.h"

namespace ayaflow::pipeline {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kDrainChunk = 512;  // packets copied out of the queue per lock
// The queue's first slots stay resident; deeper ones go back to the kernel once the queue
// has drained, at most once per interval.
constexpr std::size_t kQueueSlotsKept = 2048;  // 160 KiB
constexpr auto kQueueReleaseInterval = std::chrono::seconds(5);

std::int64_t clockNs(clockid_t id) noexcept {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

std::int64_t floorDiv(std::int64_t a, std::int64_t b) noexcept {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

}  // namespace

struct Pipeline::Impl {
  Impl(PipelineOptions o, const enrich::Enricher* e, std::vector<RecordSink*> s)
      : options(std::move(o)), enricher(e), sinks(std::move(s)) {
    if (options.batch_records == 0) options.batch_records = 1;
    if (options.queue_capacity == 0) options.queue_capacity = 1;
    if (options.max_open_flows == 0) options.max_open_flows = 1;
    ring = detail::PacketSlots(options.queue_capacity);
    // Woken once a batch's worth is waiting (or a quarter of a small queue); the batch
    // timer covers quiet periods.
    wake_threshold = std::min(options.batch_records, std::max<std::size_t>(1, ring.size() / 4));
    pending.reserve(options.batch_records + 1);
    if (options.aggregation_window_s > 0) {
      aggregator.emplace(static_cast<std::int64_t>(options.aggregation_window_s) * 1000);
    }
  }

  // ---- capture side -------------------------------------------------------------------

  void submit(const flow::Packet& packet) noexcept {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!accepting) {
        dropped_stopped.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      if (size == ring.size()) {
        dropped_full.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      std::size_t tail = head + size;
      if (tail >= ring.size()) tail -= ring.size();
      ring.put(tail, packet);
      if (tail >= touched) touched = tail + 1;
      ++size;
      // Wake the pipeline once per batch's worth of packets, not per packet; otherwise its
      // timer picks them up.
      if (thread_waiting && size >= wake_threshold) {
        thread_waiting = false;
        wake = true;
      }
    }
    queued.fetch_add(1, std::memory_order_relaxed);
    if (wake) cv.notify_one();
  }

  // ---- pipeline thread ----------------------------------------------------------------

  /// Copies up to `max` packets out of the ring into `out`; returns how many.
  std::size_t pop(flow::Packet* out, std::size_t max) {
    std::lock_guard<std::mutex> lock(mu);
    const std::size_t n = std::min(max, size);
    const std::size_t first = std::min(n, ring.size() - head);
    ring.get(head, first, out);
    ring.get(0, n - first, out + first);
    head += n;
    if (head >= ring.size()) head -= ring.size();
    size -= n;
    // An empty queue starts again at slot 0, so it only ever touches the pages its
    // deepest backlog needed.
    if (size == 0) {
      head = 0;
      releaseQueuePages();
    }
    return n;
  }

  /// With `mu` held. After a burst, hands the queue's deep pages back once it is empty, at
  /// most once per kQueueReleaseInterval (a page fault per page is the next burst's price).
  void releaseQueuePages() noexcept {
    if (size != 0 || touched <= kQueueSlotsKept) return;
    const auto now = SteadyClock::now();
    if (now - last_release < kQueueReleaseInterval) return;
    head = 0;
    ring.release(kQueueSlotsKept);
    touched = kQueueSlotsKept;
    last_release = now;
  }

  void updateClock() noexcept {
    realtime_ms = clockNs(CLOCK_REALTIME) / 1000000;
    offset_ns = clockNs(CLOCK_REALTIME) - clockNs(CLOCK_MONOTONIC);
  }

  std::int64_t unixMs(std::uint64_t monotonic_ns) const noexcept {
    if (monotonic_ns == 0) return realtime_ms;
    return floorDiv(static_cast<std::int64_t>(monotonic_ns) + offset_ns, 1000000);
  }

  /// Takes `count` packets from the queue (those present when the loop looked) and files
  /// them: raw records into the pending batch (handed over each time it is full), or into
  /// the aggregator.
  void drain(std::size_t count) {
    flow::Packet chunk[kDrainChunk];
    while (count > 0) {
      const std::size_t n = pop(chunk, std::min(count, kDrainChunk));
      if (n == 0) break;
      count -= n;
      for (std::size_t i = 0; i < n; ++i) {
        const flow::Packet& p = chunk[i];
        const std::int64_t last = unixMs(p.timestamp_ns);
        const std::int64_t first = p.first_timestamp_ns != 0 ? unixMs(p.first_timestamp_ns) : last;
        if (aggregator) {
          aggregator->add(p, first, last);
        } else {
          pending.push_back(FlowRecord::fromPacket(p, first, last));
          if (pending.size() >= options.batch_records) emitPending();
        }
      }
      if (aggregator && aggregator->openFlows() > options.max_open_flows) {
        // Bounded memory: hand every open sum over now.
        logger("pipeline")
            ->debug("{} open flows exceed {}: handing the open windows over early",
                    aggregator->openFlows(), options.max_open_flows);
        aggregator->takeAll(pending);
        emitPending();
      }
    }
    if (aggregator) open_flows.store(aggregator->openFlows(), std::memory_order_relaxed);
  }

  /// Names a record. Records of one connection in one batch share one lookup and one
  /// ConnectionNames (a raw batch holds many packets of each busy connection).
  void enrich(FlowRecord& r) noexcept {
    try {
      const flow::FlowKey key = r.connection();
      const auto [it, fresh] = batch_names.try_emplace(key);
      if (fresh) {
        enrich::ConnectionNames names;
        enricher->enrich(key, r.first_ms, names);
        if (!names.empty())
          it->second = std::make_shared<const enrich::ConnectionNames>(std::move(names));
      }
      r.names = it->second;
    } catch (const std::exception& e) {
      enrichFailed(e.what());
    } catch (...) {
      enrichFailed("unknown exception");
    }
  }

  void enrichFailed(const char* what) noexcept {
    enrich_failures.fetch_add(1, std::memory_order_relaxed);
    if (!enrich_failure_logged) {
      enrich_failure_logged = true;
      logger("pipeline")->error("naming a flow failed: {} (records go on without names)", what);
    }
  }

  /// Names every pending record and hands them to every sink as one batch (a raw batch
  /// holds at most batch_records; an aggregated window all its records, which a sink
  /// writes in transactions of its own size).
  void emitPending() {
    if (pending.empty()) return;
    if (enricher != nullptr) {
      for (FlowRecord& r : pending) enrich(r);
      batch_names.clear();
    }
    records_emitted.fetch_add(pending.size(), std::memory_order_relaxed);
    publish(std::make_shared<const RecordBatch>(std::move(pending)));
    RecordBatch().swap(pending);  // the batch took the storage; start small again
    pending.reserve(options.batch_records + 1);
  }

  /// True when every sink took the batch.
  bool publish(const BatchPtr& batch) {
    bool all = true;
    for (RecordSink* sink : sinks) all = sink->consume(batch, drain_deadline) && all;
    return all;
  }

  /// Hands the sinks a provisional record of every open sum changed since the last
  /// checkpoint they all took (one batch, named like final records).
  void checkpoint() {
    bool lost = false;
    for (RecordSink* sink : sinks) lost = sink->takeCheckpointLost() || lost;
    if (lost) aggregator->checkpointEverything();
    RecordBatch batch;
    if (aggregator->checkpoint(batch) == 0) {
      aggregator->acknowledgeCheckpoint();
      return;
    }
    if (enricher != nullptr) {
      for (FlowRecord& r : batch) enrich(r);
      batch_names.clear();
    }
    checkpoints.fetch_add(1, std::memory_order_relaxed);
    records_checkpointed.fetch_add(batch.size(), std::memory_order_relaxed);
    // A sink that refused it (queue full) gets these flows again next time.
    if (publish(std::make_shared<const RecordBatch>(std::move(batch)))) {
      aggregator->acknowledgeCheckpoint();
    }
  }

  /// Logs drops since the last report, at most once per log_interval (unless forced).
  void reportDrops(SteadyClock::time_point now, bool force = false) {
    if (!force && reported_once && now - last_report < options.log_interval) return;
    const std::uint64_t full = dropped_full.load(std::memory_order_relaxed);
    if (full > reported_full) {
      logger("pipeline")
          ->warn(
              "{} packets not recorded: the pipeline queue ({} packets) was full ({} in all); "
              "the sinks cannot keep up with this packet rate (consider --aggregation-window)",
              full - reported_full, ring.size(), full);
      reported_full = full;
      last_report = now;
      reported_once = true;
    }
  }

  SteadyClock::time_point nextDeadline(SteadyClock::time_point now) const {
    SteadyClock::time_point deadline = next_tick;
    if (aggregator && checkpointing()) deadline = std::min(deadline, next_checkpoint);
    if (aggregator) {
      if (const auto end = aggregator->nextWindowEnd()) {
        deadline = std::min(
            deadline, now + std::chrono::milliseconds(*end - realtime_ms) + options.window_grace);
      }
    }
    return deadline;
  }

  bool checkpointing() const noexcept { return options.checkpoint_interval.count() > 0; }

  void run() {
    common::setUpThread("ayaflow-pipe", /*batch=*/true);
    updateClock();
    next_tick = SteadyClock::now() + options.batch_interval;
    next_checkpoint = SteadyClock::now() + options.checkpoint_interval;
    for (;;) {
      bool stop_now = false;
      std::uint64_t flush_seen = 0, sync_seen = 0;
      std::size_t queued_now = 0;
      {
        std::unique_lock<std::mutex> lock(mu);
        const auto requested = [this] {
          return stop_requested || flush_requested != flush_done || sync_requested != sync_done;
        };
        if (!requested() && size < wake_threshold) {
          thread_waiting = true;
          cv.wait_until(lock, nextDeadline(SteadyClock::now()),
                        [&] { return requested() || size >= wake_threshold; });
          thread_waiting = false;
        }
        stop_now = stop_requested;
        flush_seen = flush_requested;
        sync_seen = sync_requested;
        releaseQueuePages();  // also when the queue emptied less than an interval ago
        // On stop, onPacket() no longer accepts, so this is everything there will be.
        queued_now = size;
      }
      const bool flush_now = stop_now || flush_seen != flush_done_local;
      // Flushing or stopping, the sinks may take their time (bounded) rather than drop.
      if (flush_now) drain_deadline = SteadyClock::now() + options.drain_timeout;
      updateClock();
      drain(queued_now);
      const auto now = SteadyClock::now();

      if (aggregator) {
        if (flush_now) {
          aggregator->takeAll(pending);
        } else {
          aggregator->takeClosed(realtime_ms - options.window_grace.count(), pending);
        }
        open_flows.store(aggregator->openFlows(), std::memory_order_relaxed);
        emitPending();
        if (!flush_now && checkpointing() && now >= next_checkpoint) {
          checkpoint();
          next_checkpoint = now + options.checkpoint_interval;
        }
      }
      if (now >= next_tick) {
        if (!aggregator) emitPending();
        reportDrops(now);
        next_tick = now + options.batch_interval;
      }
      if (flush_now) emitPending();
      drain_deadline.reset();

      flush_done_local = flush_seen;
      {
        std::lock_guard<std::mutex> lock(mu);
        flush_done = flush_seen;
        sync_done = sync_seen;
      }
      done_cv.notify_all();
      if (stop_now) break;
    }
    reportDrops(SteadyClock::now(), /*force=*/true);
    {
      std::lock_guard<std::mutex> lock(mu);
      thread_exited = true;
    }
    done_cv.notify_all();
  }

  // ---- control ------------------------------------------------------------------------

  /// Waits until the pipeline thread has answered a request counted in `requested`.
  bool request(std::uint64_t& requested, const std::uint64_t& answered) {
    std::unique_lock<std::mutex> lock(mu);
    if (stop_requested || thread_exited) return false;
    const std::uint64_t mine = ++requested;
    cv.notify_one();
    done_cv.wait(lock, [&] { return answered >= mine || thread_exited; });
    return true;
  }

  void stop() {
    std::lock_guard<std::mutex> stop_lock(stop_mu);
    {
      std::lock_guard<std::mutex> lock(mu);
      stop_requested = true;
      accepting = false;
    }
    cv.notify_one();
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }

  PipelineStats stats() const {
    PipelineStats s;
    s.packets_queued = queued.load(std::memory_order_relaxed);
    s.packets_dropped_queue_full = dropped_full.load(std::memory_order_relaxed);
    s.packets_dropped_stopped = dropped_stopped.load(std::memory_order_relaxed);
    s.records_emitted = records_emitted.load(std::memory_order_relaxed);
    s.records_checkpointed = records_checkpointed.load(std::memory_order_relaxed);
    s.checkpoints = checkpoints.load(std::memory_order_relaxed);
    s.enrich_failures = enrich_failures.load(std::memory_order_relaxed);
    s.open_flows = open_flows.load(std::memory_order_relaxed);
    s.queue_capacity = ring.size();
    std::lock_guard<std::mutex> lock(mu);
    s.queue_depth = size;
    return s;
  }

  PipelineOptions options;
  const enrich::Enricher* enricher;
  const std::vector<RecordSink*> sinks;

  std::atomic<std::uint64_t> queued{0}, dropped_full{0}, dropped_stopped{0};
  std::atomic<std::uint64_t> records_emitted{0}, enrich_failures{0};
  std::atomic<std::uint64_t> records_checkpointed{0}, checkpoints{0};
  std::atomic<std::size_t> open_flows{0};

  // Queue and hand-shakes; all guarded by mu.
  mutable std::mutex mu;
  std::condition_variable cv;       // wakes the pipeline thread
  std::condition_variable done_cv;  // wakes flush()/syncForTest() waiters
  detail::PacketSlots ring;         // queue_capacity packets, pages touched on first use
  std::size_t head = 0;
  std::size_t size = 0;
  std::size_t touched = 0;  // slots [0, touched) may have resident pages
  SteadyClock::time_point last_release{};
  std::size_t wake_threshold = 1;  // immutable after construction
  bool thread_waiting = false;
  bool accepting = true;
  bool stop_requested = false;
  bool thread_exited = false;
  std::uint64_t flush_requested = 0, flush_done = 0;
  std::uint64_t sync_requested = 0, sync_done = 0;

  std::mutex stop_mu;  // serialises stop()
  std::thread thread;

  // Pipeline thread only.
  RecordBatch pending;
  std::optional<WindowAggregator> aggregator;
  std::int64_t realtime_ms = 0;
  std::int64_t offset_ns = 0;  // CLOCK_REALTIME - CLOCK_MONOTONIC
  std::uint64_t flush_done_local = 0;
  RecordSink::Deadline drain_deadline;  // set while flushing or stopping
  SteadyClock::time_point next_tick;
  SteadyClock::time_point next_checkpoint;
  bool enrich_failure_logged = false;
  // Pipeline thread: names of the connections of the batch being named (cleared after it).
  std::unordered_map<flow::FlowKey, std::shared_ptr<const enrich::ConnectionNames>,
                     flow::FlowKeyHash>
      batch_names{0, flow::FlowKeyHash{flow::randomHashSeed()}};
  bool reported_once = false;
  SteadyClock::time_point last_report;
  std::uint64_t reported_full = 0;
};

Pipeline::Pipeline(PipelineOptions options, const enrich::Enricher* enricher,
                   std::vector<RecordSink*> sinks)
    : impl_(std::make_unique<Impl>(std::move(options), enricher, std::move(sinks))) {
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

Pipeline::~Pipeline() { stop(); }

void Pipeline::onPacket(const flow::Packet& packet) noexcept { impl_->submit(packet); }

void Pipeline::flush() {
  if (!impl_->request(impl_->flush_requested, impl_->flush_done)) return;
  for (RecordSink* sink : impl_->sinks) sink->flush();
}

void Pipeline::stop() { impl_->stop(); }

PipelineStats Pipeline::stats() const { return impl_->stats(); }

void Pipeline::syncForTest() { impl_->request(impl_->sync_requested, impl_->sync_done); }

std::vector<prometheus::MetricFamily> pipelineFamilies(const PipelineStats& s) {
  common::MetricFamilies f;
  f.labelledCounter(
      "ayaflow_pipeline_packets_dropped_total",
      "Packets (events or kernel flow-table entries) that never reached the "
      "sinks, by reason: queue_full (the hand-off from capture was full; capture "
      "never waits) or stopped (after shutdown began).",
      "reason",
      {{"queue_full", s.packets_dropped_queue_full}, {"stopped", s.packets_dropped_stopped}});
  f.gauge("ayaflow_pipeline_queue_packets",
          "Packets waiting in the hand-off from capture to the pipeline.",
          static_cast<double>(s.queue_depth));
  f.counter("ayaflow_pipeline_records_total",
            "Flow records handed to the sinks (one per packet in raw mode, one per flow per "
            "window in aggregated mode).",
            s.records_emitted);
  f.counter("ayaflow_pipeline_checkpoint_records_total",
            "Provisional records of open aggregation windows handed to the sinks at checkpoints "
            "(the SQLite history updates each window's row in place, so a crash loses at most "
            "one checkpoint interval).",
            s.records_checkpointed);
  return f.take();
}

std::shared_ptr<const prometheus::Collectable> Pipeline::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [impl = impl_.get()] { return pipelineFamilies(impl->stats()); });
}

}  // namespace ayaflow::pipeline
