// SPDX-License-Identifier: MIT OR Apache-2.0
// StreamHub fan-out, the /api/stream route registration and the frame text (unit tier).
#include "ayaflow/api/stream_hub.h"

#include <gtest/gtest.h>

#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/router.h"
#include "fake_live_source.h"

namespace ayaflow::api {
namespace {

class RecordingSubscriber : public StreamHub::Subscriber {
 public:
  void deliver(const std::shared_ptr<const std::string>& frame) override {
    std::lock_guard<std::mutex> lock(mutex_);
    frames_.push_back(frame);
  }
  std::vector<std::shared_ptr<const std::string>> frames() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return frames_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const std::string>> frames_;
};

TEST(StreamHubTest, PublishHandsTheSameFrameToEverySubscriber) {
  StreamHub hub;
  auto a = std::make_shared<RecordingSubscriber>();
  auto b = std::make_shared<RecordingSubscriber>();
  hub.subscribe(a);
  hub.subscribe(b);
  EXPECT_TRUE(a->frames().empty());  // nothing published yet
  hub.publish("one");
  hub.publish("two");
  ASSERT_EQ(a->frames().size(), 2u);
  ASSERT_EQ(b->frames().size(), 2u);
  EXPECT_EQ(*a->frames()[0], "one");
  EXPECT_EQ(*a->frames()[1], "two");
  // Serialised once: both clients hold the very same string.
  EXPECT_EQ(a->frames()[1].get(), b->frames()[1].get());
}

TEST(StreamHubTest, NewSubscriberGetsTheLatestFrameAtOnce) {
  StreamHub hub;
  hub.publish("old");
  hub.publish("latest");
  auto late = std::make_shared<RecordingSubscriber>();
  hub.subscribe(late);
  ASSERT_EQ(late->frames().size(), 1u);
  EXPECT_EQ(*late->frames()[0], "latest");
  hub.publish("next");
  ASSERT_EQ(late->frames().size(), 2u);
  EXPECT_EQ(*late->frames()[1], "next");
}

TEST(StreamHubTest, UnsubscribedAndDestroyedSubscribersGetNothing) {
  StreamHub hub;
  auto kept = std::make_shared<RecordingSubscriber>();
  auto left = std::make_shared<RecordingSubscriber>();
  auto gone = std::make_shared<RecordingSubscriber>();
  hub.subscribe(kept);
  hub.subscribe(left);
  hub.subscribe(gone);
  EXPECT_EQ(hub.stats().clients, 3u);
  hub.unsubscribe(left.get());
  hub.unsubscribe(left.get());  // idempotent
  gone.reset();                 // held weakly: no dangling call
  hub.publish("x");
  EXPECT_EQ(kept->frames().size(), 1u);
  EXPECT_TRUE(left->frames().empty());
  EXPECT_EQ(hub.stats().clients, 1u);  // the expired one was pruned by publish()
}

TEST(StreamHubTest, StatsCountPublishesClientsSentAndDropped) {
  StreamHub hub(3);
  EXPECT_EQ(hub.queueLimit(), 3u);
  EXPECT_EQ(StreamHub(0).queueLimit(), 1u);
  auto a = std::make_shared<RecordingSubscriber>();
  hub.subscribe(a);
  hub.publish("1");
  hub.publish("2");
  hub.recordSent();
  hub.recordSent();
  hub.recordDropped();
  hub.unsubscribe(a.get());
  hub.subscribe(a);
  const StreamHubStats s = hub.stats();
  EXPECT_EQ(s.clients, 1u);
  EXPECT_EQ(s.clients_total, 2u);
  EXPECT_EQ(s.frames_published, 2u);
  EXPECT_EQ(s.frames_sent, 2u);
  EXPECT_EQ(s.clients_dropped, 1u);
}

TEST(StreamHubTest, ConcurrentPublishAndSubscribeKeepsPerClientOrder) {
  StreamHub hub;
  constexpr int kFrames = 2000;
  std::vector<std::shared_ptr<RecordingSubscriber>> subscribers;
  std::thread publisher([&] {
    for (int i = 0; i < kFrames; ++i) hub.publish(std::to_string(i));
  });
  for (int i = 0; i < 50; ++i) {
    subscribers.push_back(std::make_shared<RecordingSubscriber>());
    hub.subscribe(subscribers.back());
  }
  publisher.join();
  for (const auto& s : subscribers) {
    const auto frames = s->frames();
    ASSERT_FALSE(frames.empty());
    // Consecutive numbers up to the last one: nothing skipped, nothing reordered.
    int expected = std::stoi(*frames.front());
    for (const auto& f : frames) EXPECT_EQ(std::stoi(*f), expected++);
    EXPECT_EQ(expected, kFrames);
  }
}

TEST(StreamHubTest, StreamRouteRegistersTheHubAndAnswersPlainRequests426) {
  StreamHub hub;
  Router router;
  addStreamRoute(router, hub);
  EXPECT_EQ(router.webSocket("/api/stream"), &hub);
  EXPECT_EQ(router.webSocket("/api/health"), nullptr);
  Request request;
  request.method = "GET";
  request.path = "/api/stream";
  Response r = router.route(request);
  EXPECT_EQ(r.status, 426u);
  EXPECT_EQ(r.body, R"({"error":"websocket upgrade required"})");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Upgrade", "websocket"}));
  request.method = "POST";
  EXPECT_EQ(router.route(request).status, 405u);
}

TEST(StreamHubTest, StreamFrameHasTheThreeSpecFields) {
  fake::FakeLiveSource source;
  source.totals_value = {123456789012ULL, 98765432109876ULL};
  source.active = 77;
  const auto frame = nlohmann::json::parse(streamFrame(source));
  EXPECT_EQ(frame, nlohmann::json({{"total_packets", 123456789012ULL},
                                   {"total_bytes", 98765432109876ULL},
                                   {"active_connections", 77}}));
  EXPECT_TRUE(frame.at("total_bytes").is_number_unsigned());
}

}  // namespace
}  // namespace ayaflow::api
