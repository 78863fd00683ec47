// SPDX-License-Identifier: MIT OR Apache-2.0
// BatchQueue: bounded hand-off, drops counted, flush and sync answered in order (unit tier).
#include "ayaflow/pipeline/batch_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace ayaflow::pipeline {
namespace {

BatchPtr batchOf(std::size_t n, std::uint64_t packets = 1) {
  auto b = std::make_shared<RecordBatch>(n);
  for (auto& r : *b) r.packets = packets;
  return b;
}

BatchQueue::Clock::time_point now() { return BatchQueue::Clock::now(); }

TEST(BatchQueue, KeepsOrderAndCountsWhatDoesNotFit) {
  BatchQueue q(10);
  EXPECT_TRUE(q.push(batchOf(4)));
  EXPECT_TRUE(q.push(batchOf(6)));
  EXPECT_FALSE(q.push(batchOf(1)));  // 11 > 10
  BatchQueueStats s = q.stats();
  EXPECT_EQ(s.records_queued, 10u);
  EXPECT_EQ(s.records_dropped_full, 1u);
  EXPECT_EQ(s.depth, 10u);
  EXPECT_EQ(s.capacity, 10u);
  EXPECT_EQ(q.pop(now()).batch->size(), 4u);
  EXPECT_EQ(q.stats().depth, 6u);
  EXPECT_TRUE(q.push(batchOf(4)));
  EXPECT_EQ(q.pop(now()).batch->size(), 6u);
  EXPECT_EQ(q.pop(now()).batch->size(), 4u);
  const auto empty = q.pop(now());
  EXPECT_FALSE(empty.batch);
  EXPECT_EQ(empty.flush_ticket, 0u);
  EXPECT_FALSE(empty.closed);
}

TEST(BatchQueue, ABatchLargerThanTheQueueGoesIntoAnEmptyQueue) {
  BatchQueue q(10);
  EXPECT_TRUE(q.push(batchOf(25)));
  EXPECT_FALSE(q.push(batchOf(1)));
  EXPECT_EQ(q.stats().depth, 25u);
}

BatchPtr checkpointOf(std::size_t n) {
  auto b = std::make_shared<RecordBatch>(n);
  for (auto& r : *b) r.state = RecordState::kProvisional;
  return b;
}

TEST(BatchQueue, ACheckpointNeverKeepsFinalRecordsOutAndIsRefusedWithoutADrop) {
  BatchQueue q(10);
  EXPECT_TRUE(q.push(checkpointOf(25)));  // an empty queue takes a large checkpoint
  EXPECT_TRUE(q.push(batchOf(8)));        // final records fit beside it
  EXPECT_FALSE(q.push(checkpointOf(1)));  // a second checkpoint does not
  EXPECT_TRUE(q.push(batchOf(2)));
  EXPECT_FALSE(q.push(batchOf(1)));  // 11 final records > 10
  BatchQueueStats s = q.stats();
  EXPECT_EQ(s.depth, 35u);
  EXPECT_EQ(s.records_dropped_full, 1u);
  EXPECT_EQ(s.checkpoint_records_refused, 1u);
  EXPECT_EQ(q.pop(now()).batch->size(), 25u);
  EXPECT_EQ(q.pop(now()).batch->size(), 8u);
  EXPECT_EQ(q.pop(now()).batch->size(), 2u);
  EXPECT_EQ(q.stats().depth, 0u);
  EXPECT_TRUE(q.push(batchOf(10)));
  EXPECT_TRUE(q.push(batchOf(0)));
  EXPECT_FALSE(q.push(checkpointOf(1)));  // full with final records
  q.close();
  EXPECT_FALSE(q.push(checkpointOf(3)));
  s = q.stats();
  EXPECT_EQ(s.checkpoint_records_refused, 5u);
  EXPECT_EQ(s.records_dropped_closed, 0u);
}

TEST(BatchQueue, EmptyBatchesAreIgnored) {
  BatchQueue q(1);
  EXPECT_TRUE(q.push(batchOf(0)));
  EXPECT_TRUE(q.push(nullptr));
  EXPECT_EQ(q.stats().records_queued, 0u);
}

TEST(BatchQueue, AfterCloseThePushesAreCountedAndPopSaysClosedOnceEmpty) {
  BatchQueue q(10);
  q.push(batchOf(2));
  q.close();
  EXPECT_FALSE(q.push(batchOf(3)));
  EXPECT_EQ(q.stats().records_dropped_closed, 3u);
  const auto first = q.pop(now());
  ASSERT_TRUE(first.batch);
  EXPECT_FALSE(first.closed);
  EXPECT_TRUE(q.pop(now()).closed);
}

/// A consumer thread that writes batches slowly and answers requests.
class Consumer {
 public:
  explicit Consumer(BatchQueue& q) : q_(q), thread_([this] { run(); }) {}
  ~Consumer() {
    q_.close();
    thread_.join();
  }
  std::atomic<std::size_t> written{0};
  std::atomic<bool> busy{false};  // a background job that sync() must wait for

 private:
  void run() {
    std::uint64_t sync_pending = 0;
    for (;;) {
      const auto item = q_.pop(BatchQueue::Clock::now() + std::chrono::milliseconds(5));
      if (item.batch) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        written += item.batch->size();
      }
      if (item.flush_ticket != 0) q_.done(item.flush_ticket);
      if (item.sync_ticket != 0) sync_pending = item.sync_ticket;
      if (sync_pending != 0 && !busy) {
        q_.synced(sync_pending);
        sync_pending = 0;
      }
      if (item.closed) break;
    }
    q_.closeConsumer();
  }
  BatchQueue& q_;
  std::thread thread_;
};

TEST(BatchQueue, FlushReturnsOnceEveryEarlierBatchIsWritten) {
  BatchQueue q(1000);
  Consumer consumer(q);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(q.push(batchOf(7)));
  q.flush();
  EXPECT_EQ(consumer.written, 140u);
  q.flush();  // nothing new: returns at once
  EXPECT_EQ(consumer.written, 140u);
}

TEST(BatchQueue, AStreamOfNewBatchesDoesNotStarveFlushOrSync) {
  // The producer never lets the queue run empty (checkpoints written more slowly than they
  // come): flush() and sync() still return once what was pushed before them is written.
  BatchQueue q(1000000);
  Consumer consumer(q);
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> pushed{0};
  std::thread producer([&] {
    while (!stop) {
      if (q.push(batchOf(1))) ++pushed;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  while (pushed < 20) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const std::size_t before_flush = pushed;
  q.flush();
  EXPECT_GE(consumer.written, before_flush);
  const std::size_t before_sync = pushed;
  q.sync();
  EXPECT_GE(consumer.written, before_sync);
  stop = true;
  producer.join();
}

TEST(BatchQueue, SyncAlsoWaitsForTheConsumersOwnWork) {
  BatchQueue q(1000);
  Consumer consumer(q);
  consumer.busy = true;
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    q.sync();
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(returned);
  consumer.busy = false;
  waiter.join();
  EXPECT_TRUE(returned);
}

TEST(BatchQueue, WaitersReturnWhenTheConsumerIsGone) {
  BatchQueue q(10);
  q.closeConsumer();
  q.flush();  // no consumer: must not hang
  q.sync();
  SUCCEED();
}

}  // namespace
}  // namespace ayaflow::pipeline
