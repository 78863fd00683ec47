// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/stream_hub.h"

#include <algorithm>
#include <utility>

#include "ayaflow/api/router.h"

namespace ayaflow::api {

StreamHub::StreamHub(std::size_t queue_limit)
    : queue_limit_(std::max<std::size_t>(1, queue_limit)) {}

void StreamHub::publish(std::string text) {
  // Serialised once; every client's queue holds the same immutable string.
  auto frame = std::make_shared<const std::string>(std::move(text));
  std::lock_guard<std::mutex> lock(mutex_);
  ++frames_published_;
  last_ = frame;
  // Delivering under the mutex keeps the order per client (the latest frame handed over by
  // subscribe() can never overtake a newer one); deliver() only posts, so this is short.
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    if (auto subscriber = it->second.lock()) {
      subscriber->deliver(frame);
      ++it;
    } else {
      it = subscribers_.erase(it);  // being destroyed; its destructor will find it gone
    }
  }
}

StreamHubStats StreamHub::stats() const {
  StreamHubStats s;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s.clients = subscribers_.size();
    s.clients_total = clients_total_;
    s.frames_published = frames_published_;
  }
  s.frames_sent = frames_sent_.load(std::memory_order_relaxed);
  s.clients_dropped = clients_dropped_.load(std::memory_order_relaxed);
  return s;
}

void StreamHub::subscribe(const std::shared_ptr<Subscriber>& subscriber) {
  std::lock_guard<std::mutex> lock(mutex_);
  subscribers_[subscriber.get()] = subscriber;
  ++clients_total_;
  if (last_) subscriber->deliver(last_);
}

void StreamHub::unsubscribe(const Subscriber* subscriber) {
  std::lock_guard<std::mutex> lock(mutex_);
  subscribers_.erase(subscriber);
}

void StreamHub::recordSent() { frames_sent_.fetch_add(1, std::memory_order_relaxed); }

void StreamHub::recordDropped() { clients_dropped_.fetch_add(1, std::memory_order_relaxed); }

void addStreamRoute(Router& router, StreamHub& hub) { router.addWebSocket(kStreamPath, hub); }

}  // namespace ayaflow::api
