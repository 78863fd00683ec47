// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>

#include "ayaflow/pipeline/flow_record.h"

namespace ayaflow::pipeline {

/// Counters of a BatchQueue; each exact, read together under the queue's lock.
struct BatchQueueStats {
  std::uint64_t records_queued = 0;          ///< accepted by push()
  std::uint64_t records_dropped_full = 0;    ///< refused: the queue held max_records
  std::uint64_t records_dropped_closed = 0;  ///< pushed after close()
  /// Provisional records (checkpoints) refused because the queue was busy: not lost, the
  /// pipeline sends those flows again at its next checkpoint. Not in records_dropped_full.
  std::uint64_t checkpoint_records_refused = 0;
  std::size_t depth = 0;     ///< records waiting now
  std::size_t capacity = 0;  ///< max_records
};

/// The bounded hand-off between the pipeline thread and one sink's thread: batches of
/// records, at most `max_records` records waiting. push() never waits: a batch that does
/// not fit is dropped and counted, so a slow sink (a full disk, an unreachable collector)
/// never stalls the pipeline or the other sinks.
///
/// Checkpoints (batches of provisional records) never take room from final records: a final
/// batch is admitted by the final records waiting alone, a checkpoint only when it fits with
/// everything waiting (or the queue is empty). So at most max_records final records (or one
/// larger final batch) and one checkpoint wait, besides the batch the consumer is writing.
///
/// Requests: flush() and sync() let another thread wait until the consumer has handled
/// everything pushed before the call; the consumer sees them as tickets from pop() and
/// answers with done() (flush) or synced() (sync, once its own background work, such as a
/// retention pass, is finished too).
///
/// Threads: push() from the producer, pop()/done()/synced()/closeConsumer() from the one
/// consumer thread, flush()/sync()/close()/stats() from any thread.
class BatchQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit BatchQueue(std::size_t max_records);
  BatchQueue(const BatchQueue&) = delete;
  BatchQueue& operator=(const BatchQueue&) = delete;

  /// Producer: queues the batch; false (and counted) when full or closed. With `room_until`,
  /// a full queue waits until the consumer makes room, goes away, or that time.
  bool push(BatchPtr batch, std::optional<Clock::time_point> room_until = std::nullopt) noexcept;

  /// What pop() returns: a batch, or a request to answer, or the end.
  struct Item {
    BatchPtr batch;                  ///< the next batch, if any
    std::uint64_t flush_ticket = 0;  ///< non-zero: answer with done(ticket) once handled
    std::uint64_t sync_ticket = 0;   ///< non-zero: answer with synced(ticket) when idle
    bool closed = false;             ///< close() was called and every batch was taken
  };

  /// Consumer: an open flush or sync request whose batches (those pushed before it) are all
  /// taken; else the next batch; else the end; otherwise waits until one of them or
  /// `deadline`, and returns an empty Item then.
  Item pop(Clock::time_point deadline);
  /// Consumer: flush requests up to `ticket` are answered.
  void done(std::uint64_t ticket);
  /// Consumer: sync requests up to `ticket` are answered.
  void synced(std::uint64_t ticket);
  /// Consumer, on its way out: wakes every waiter for good.
  void closeConsumer();

  /// Waits until the consumer has handled every batch pushed before the call.
  void flush();
  /// Like flush(), and until the consumer reports it idle (synced()).
  void sync();
  /// No more pushes; pop() returns closed once the queue is empty.
  void close();

  BatchQueueStats stats() const;

 private:
  void wait(std::uint64_t& requested, const std::uint64_t& answered, std::uint64_t& mark);

  const std::size_t max_records_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // wakes the consumer
  std::condition_variable done_cv_;  // wakes flush()/sync() callers
  std::condition_variable room_cv_;  // wakes a producer waiting for room
  // Guarded by mu_.
  std::deque<BatchPtr> batches_;
  std::size_t depth_ = 0;        // records waiting
  std::size_t final_depth_ = 0;  // final records waiting
  bool closed_ = false;
  bool consumer_gone_ = false;
  std::uint64_t flush_requested_ = 0, flush_answered_ = 0;
  std::uint64_t sync_requested_ = 0, sync_answered_ = 0;
  std::uint64_t flush_given_ = 0, sync_given_ = 0;  // tickets pop() has handed out
  std::uint64_t pushed_ = 0, taken_ = 0;            // batches, ever
  // pushed_ when the latest request came: its ticket is due once taken_ reaches it.
  std::uint64_t flush_mark_ = 0, sync_mark_ = 0;
  std::uint64_t queued_ = 0, dropped_full_ = 0, dropped_closed_ = 0, refused_checkpoint_ = 0;
};

}  // namespace ayaflow::pipeline
