// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/pipeline/batch_queue.h"

#include <utility>

namespace ayaflow::pipeline {

BatchQueue::BatchQueue(std::size_t max_records)
    : max_records_(max_records == 0 ? 1 : max_records) {}

bool BatchQueue::push(BatchPtr batch, std::optional<Clock::time_point> room_until) noexcept {
  if (!batch || batch->empty()) return true;
  const std::size_t n = batch->size();
  const bool provisional = batch->front().state == RecordState::kProvisional;
  {
    std::unique_lock<std::mutex> lock(mu_);
    // A batch larger than the whole queue still goes in when the queue is empty, so a big
    // aggregation window is never refused outright. A checkpoint in the queue never keeps a
    // final batch out.
    const auto fits = [&] {
      if (provisional) return depth_ == 0 || depth_ + n <= max_records_;
      return final_depth_ == 0 || final_depth_ + n <= max_records_;
    };
    if (room_until && !fits() && !closed_ && !consumer_gone_) {
      room_cv_.wait_until(lock, *room_until, [&] { return fits() || closed_ || consumer_gone_; });
    }
    if (closed_ || consumer_gone_) {
      (provisional ? refused_checkpoint_ : dropped_closed_) += n;
      return false;
    }
    if (!fits()) {
      (provisional ? refused_checkpoint_ : dropped_full_) += n;
      return false;
    }
    batches_.push_back(std::move(batch));
    ++pushed_;
    depth_ += n;
    if (!provisional) final_depth_ += n;
    queued_ += n;
  }
  work_cv_.notify_one();
  return true;
}

BatchQueue::Item BatchQueue::pop(Clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  // A request is due once the batches pushed before it are taken, even while newer ones
  // wait: a steady stream of batches (checkpoints) must not starve flush() or sync().
  const auto flush_due = [this] {
    return flush_requested_ != flush_given_ && taken_ >= flush_mark_;
  };
  const auto sync_due = [this] { return sync_requested_ != sync_given_ && taken_ >= sync_mark_; };
  const auto ready = [&] { return !batches_.empty() || closed_ || flush_due() || sync_due(); };
  if (!ready()) work_cv_.wait_until(lock, deadline, ready);
  Item item;
  const bool answer_flush = flush_due();
  const bool answer_sync = sync_due();
  if (answer_flush) item.flush_ticket = flush_given_ = flush_requested_;
  if (answer_sync) item.sync_ticket = sync_given_ = sync_requested_;
  if (answer_flush || answer_sync) return item;
  if (!batches_.empty()) {
    item.batch = std::move(batches_.front());
    batches_.pop_front();
    ++taken_;
    depth_ -= item.batch->size();
    if (item.batch->front().state != RecordState::kProvisional) {
      final_depth_ -= item.batch->size();
    }
    room_cv_.notify_all();
    return item;
  }
  item.closed = closed_;
  return item;
}

void BatchQueue::done(std::uint64_t ticket) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ticket > flush_answered_) flush_answered_ = ticket;
  }
  done_cv_.notify_all();
}

void BatchQueue::synced(std::uint64_t ticket) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ticket > sync_answered_) sync_answered_ = ticket;
  }
  done_cv_.notify_all();
}

void BatchQueue::closeConsumer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    consumer_gone_ = true;
  }
  done_cv_.notify_all();
  room_cv_.notify_all();
}

void BatchQueue::wait(std::uint64_t& requested, const std::uint64_t& answered,
                      std::uint64_t& mark) {
  std::unique_lock<std::mutex> lock(mu_);
  if (consumer_gone_) return;
  const std::uint64_t mine = ++requested;
  mark = pushed_;
  work_cv_.notify_one();
  done_cv_.wait(lock, [&] { return answered >= mine || consumer_gone_; });
}

void BatchQueue::flush() { wait(flush_requested_, flush_answered_, flush_mark_); }

void BatchQueue::sync() { wait(sync_requested_, sync_answered_, sync_mark_); }

void BatchQueue::close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  work_cv_.notify_one();
  room_cv_.notify_all();
}

BatchQueueStats BatchQueue::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  BatchQueueStats s;
  s.records_queued = queued_;
  s.records_dropped_full = dropped_full_;
  s.records_dropped_closed = dropped_closed_;
  s.checkpoint_records_refused = refused_checkpoint_;
  s.depth = depth_;
  s.capacity = max_records_;
  return s;
}

}  // namespace ayaflow::pipeline
