// SPDX-License-Identifier: MIT OR Apache-2.0
// Pipeline with fake sinks: records per packet or per window, batches, names, drops, and
// the hand-over on flush and stop (unit tier).
#include "ayaflow/pipeline/pipeline.h"

#include <gtest/gtest.h>
#include <prometheus/collectable.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "flow_packets.h"

namespace ayaflow::pipeline {
namespace {

using flow::Direction;
using test::eventually;
using test::makePacket;

constexpr auto kNever = std::chrono::hours(24);

/// Keeps every batch it is given (consume() only stores the pointer: never blocks).
class FakeSink final : public RecordSink {
 public:
  const char* name() const noexcept override { return "fake"; }
  bool consume(BatchPtr batch, Deadline) noexcept override {
    std::lock_guard<std::mutex> lock(mu_);
    if (refuse_checkpoints && batch->front().state == RecordState::kProvisional) return false;
    batches_.push_back(std::move(batch));
    return true;
  }
  bool takeCheckpointLost() noexcept override { return checkpoint_lost.exchange(false); }
  void flush() override { ++flushes; }
  void stop() override {}

  std::vector<BatchPtr> batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  std::vector<FlowRecord> records() const {
    std::vector<FlowRecord> out;
    for (const auto& b : batches()) out.insert(out.end(), b->begin(), b->end());
    return out;
  }
  /// Final records only.
  std::vector<FlowRecord> finals() const {
    std::vector<FlowRecord> out;
    for (const auto& r : records()) {
      if (r.state == RecordState::kFinal) out.push_back(r);
    }
    return out;
  }
  std::atomic<int> flushes{0};
  std::atomic<bool> refuse_checkpoints{false};
  std::atomic<bool> checkpoint_lost{false};

 private:
  mutable std::mutex mu_;
  std::vector<BatchPtr> batches_;
};

PipelineOptions rawOptions() {
  PipelineOptions o;
  o.batch_interval = kNever;
  o.checkpoint_interval = std::chrono::milliseconds(0);
  return o;
}

TEST(Pipeline, RawModeHandsOverOneRecordPerPacketInFullBatches) {
  FakeSink sink;
  PipelineOptions o = rawOptions();
  o.batch_records = 100;
  Pipeline p(o, nullptr, {&sink});
  for (int i = 0; i < 250; ++i) {
    p.onPacket(makePacket(1, static_cast<std::uint16_t>(i), 80, 6, Direction::kEgress, 60));
  }
  p.syncForTest();
  EXPECT_EQ(sink.batches().size(), 2u);  // the partial third batch waits
  EXPECT_EQ(sink.records().size(), 200u);
  p.flush();
  EXPECT_EQ(sink.flushes, 1);
  const auto records = sink.records();
  ASSERT_EQ(records.size(), 250u);
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].src_port, i);  // in order
    EXPECT_EQ(records[i].packets, 1u);
    EXPECT_EQ(records[i].bytes, 60u);
    EXPECT_EQ(records[i].first_ms, records[i].last_ms);
  }
  const PipelineStats s = p.stats();
  EXPECT_EQ(s.packets_queued, 250u);
  EXPECT_EQ(s.records_emitted, 250u);
  EXPECT_EQ(s.packets_dropped_queue_full, 0u);
}

TEST(Pipeline, TimesBecomeUnixMilliseconds) {
  FakeSink sink;
  Pipeline p(rawOptions(), nullptr, {&sink});
  const std::int64_t unix_ms = test::realtimeNowMs() - 5000;
  p.onPacket(makePacket(1, 1, 2, 17, Direction::kIngress, 10, test::monotonicForUnixMs(unix_ms)));
  flow::Packet unstamped = makePacket(1, 1, 3);
  unstamped.timestamp_ns = 0;  // stamped when the pipeline takes it
  p.onPacket(unstamped);
  const std::int64_t before = test::realtimeNowMs();
  p.flush();
  const auto r = sink.records();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_NEAR(static_cast<double>(r[0].first_ms), static_cast<double>(unix_ms), 5.0);
  EXPECT_GE(r[1].first_ms, before - 5000);
  EXPECT_LE(r[1].first_ms, test::realtimeNowMs());
}

TEST(Pipeline, APartialBatchIsHandedOverEveryInterval) {
  FakeSink sink;
  PipelineOptions o;
  o.batch_interval = std::chrono::milliseconds(20);
  Pipeline p(o, nullptr, {&sink});
  for (int i = 0; i < 5; ++i) p.onPacket(makePacket(1, 1, 1));
  EXPECT_TRUE(eventually([&] { return sink.records().size() == 5; }));
}

TEST(Pipeline, EverySinkGetsTheSameBatches) {
  FakeSink a, b;
  Pipeline p(rawOptions(), nullptr, {&a, &b});
  for (int i = 0; i < 10; ++i) p.onPacket(makePacket(1, 1, 1));
  p.flush();
  ASSERT_EQ(a.batches().size(), 1u);
  ASSERT_EQ(b.batches().size(), 1u);
  EXPECT_EQ(a.batches()[0], b.batches()[0]);  // one shared batch, not a copy
  EXPECT_EQ(a.flushes, 1);
  EXPECT_EQ(b.flushes, 1);
}

TEST(Pipeline, AggregatedModeSumsPerFlowAndHandsAnEndedWindowOverByItself) {
  FakeSink sink;
  PipelineOptions o = rawOptions();
  o.aggregation_window_s = 1;
  Pipeline p(o, nullptr, {&sink});
  // A window that ended two seconds ago: handed over without a flush.
  const std::uint64_t past = test::monotonicForUnixMs((test::realtimeNowMs() / 1000 - 2) * 1000);
  for (int i = 0; i < 30; ++i) {
    p.onPacket(makePacket(1, 40000, 443, 6, Direction::kEgress, 100, past + i));
    p.onPacket(makePacket(1, 40000, 443, 6, Direction::kIngress, 1000, past + i));
  }
  p.syncForTest();  // taken now (fewer than a wake-up's worth): the ended window goes at once
  ASSERT_TRUE(eventually([&] { return sink.records().size() == 2; }));
  std::uint64_t packets = 0, bytes = 0;
  for (const auto& r : sink.records()) {
    packets += r.packets;
    bytes += r.bytes;
    EXPECT_EQ(r.packets, 30u);
  }
  EXPECT_EQ(packets, 60u);
  EXPECT_EQ(bytes, 33000u);
  EXPECT_EQ(p.stats().open_flows, 0u);
}

TEST(Pipeline, TooManyOpenFlowsAreHandedOverEarlyWithExactTotals) {
  FakeSink sink;
  PipelineOptions o = rawOptions();
  o.aggregation_window_s = 3600;
  o.max_open_flows = 10;
  Pipeline p(o, nullptr, {&sink});
  for (int i = 0; i < 25; ++i) p.onPacket(makePacket(1, static_cast<std::uint16_t>(i), 80));
  p.syncForTest();
  EXPECT_LE(p.stats().open_flows, 10u);
  EXPECT_GE(sink.records().size(), 15u);
  p.flush();
  EXPECT_EQ(sink.records().size(), 25u);
}

TEST(Pipeline, CheckpointsHandOverOpenWindowsAsProvisionalRecordsUntilTheFinalOne) {
  FakeSink sink;
  PipelineOptions o = rawOptions();
  o.aggregation_window_s = 3600;
  o.checkpoint_interval = std::chrono::milliseconds(10);
  Pipeline p(o, nullptr, {&sink});
  for (int i = 0; i < 10; ++i) p.onPacket(makePacket(1, 40000, 443, 6, Direction::kEgress, 100));
  const auto provisional_with = [&](std::uint64_t packets) {
    for (const auto& r : sink.records()) {
      if (r.state == RecordState::kProvisional && r.packets == packets) return true;
    }
    return false;
  };
  ASSERT_TRUE(eventually([&] { return provisional_with(10); }));
  for (int i = 0; i < 5; ++i) p.onPacket(makePacket(1, 40000, 443, 6, Direction::kEgress, 100));
  ASSERT_TRUE(eventually([&] { return provisional_with(15); }));
  EXPECT_TRUE(sink.finals().empty());
  EXPECT_GE(p.stats().records_checkpointed, 2u);
  EXPECT_EQ(p.stats().records_emitted, 0u);
  p.flush();
  const auto finals = sink.finals();
  ASSERT_EQ(finals.size(), 1u);
  EXPECT_EQ(finals[0].packets, 15u);
  EXPECT_EQ(finals[0].bytes, 1500u);
  for (const auto& r : sink.records()) EXPECT_EQ(r.update_key, finals[0].update_key);
  // Nothing changed since: no more checkpoints once the window is handed over.
  const std::size_t seen = sink.records().size();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(sink.records().size(), seen);
}

TEST(Pipeline, ARefusedCheckpointIsSentAgain) {
  FakeSink sink;
  sink.refuse_checkpoints = true;
  PipelineOptions o = rawOptions();
  o.aggregation_window_s = 3600;
  o.checkpoint_interval = std::chrono::milliseconds(5);
  Pipeline p(o, nullptr, {&sink});
  p.onPacket(makePacket(1, 40000, 443));
  p.onPacket(makePacket(2, 40000, 443));
  ASSERT_TRUE(eventually([&] { return p.stats().records_checkpointed >= 4; }));
  EXPECT_TRUE(sink.records().empty());
  sink.refuse_checkpoints = false;  // both flows come again though neither changed
  ASSERT_TRUE(eventually([&] { return sink.records().size() == 2; }));
  const std::uint64_t checkpointed = p.stats().records_checkpointed;
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(p.stats().records_checkpointed, checkpointed);  // taken: not sent again
}

TEST(Pipeline, ASinkThatLostACheckpointGetsEveryOpenFlowAtTheNext) {
  FakeSink sink;
  PipelineOptions o = rawOptions();
  o.aggregation_window_s = 3600;
  o.checkpoint_interval = std::chrono::milliseconds(5);
  Pipeline p(o, nullptr, {&sink});
  p.onPacket(makePacket(1, 40000, 443));
  p.onPacket(makePacket(2, 40000, 443));
  ASSERT_TRUE(eventually([&] { return sink.records().size() == 2; }));
  p.onPacket(makePacket(1, 40000, 443));
  ASSERT_TRUE(eventually([&] { return sink.records().size() == 3; }));  // the changed one
  sink.checkpoint_lost = true;                                          // e.g. its write failed
  ASSERT_TRUE(eventually([&] { return sink.records().size() == 5; }));  // both, unchanged
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(sink.records().size(), 5u);
}

class NamesFromPort final : public enrich::Enricher {
 public:
  void enrich(const flow::FlowKey& key, std::int64_t,
              enrich::ConnectionNames& names) const override {
    if (key.remote_port == 666) throw std::runtime_error("boom");
    if (key.remote_port == 443) {
      names.domain = "example.com";
      names.remote.hostname = "server";
      names.local.hostname = "client";
    }
  }
};

TEST(Pipeline, RecordsAreNamedByTheirConnectionAndAFailingSourceCostsOnlyTheNames) {
  FakeSink sink;
  NamesFromPort names;
  Pipeline p(rawOptions(), &names, {&sink});
  p.onPacket(makePacket(1, 40000, 443, 6, Direction::kEgress));
  flow::Packet reply = makePacket(1, 40000, 443, 6, Direction::kIngress);
  std::swap(reply.src, reply.dst);
  std::swap(reply.src_port, reply.dst_port);
  p.onPacket(reply);
  p.onPacket(makePacket(1, 40000, 80));
  p.onPacket(makePacket(1, 40000, 666));
  p.flush();
  const auto r = sink.records();
  ASSERT_EQ(r.size(), 4u);
  ASSERT_TRUE(r[0].names);
  EXPECT_EQ(r[0].names->domain, "example.com");
  EXPECT_EQ(r[0].srcNames()->hostname, "client");
  EXPECT_EQ(r[0].dstNames()->hostname, "server");
  ASSERT_TRUE(r[1].names);  // the reply belongs to the same connection
  EXPECT_EQ(r[1].srcNames()->hostname, "server");
  EXPECT_EQ(r[1].dstNames()->hostname, "client");
  EXPECT_FALSE(r[2].names);
  EXPECT_FALSE(r[3].names);
  EXPECT_EQ(p.stats().enrich_failures, 1u);
}

/// Holds the pipeline thread inside enrich() until released.
class Gate final : public enrich::Enricher {
 public:
  void enrich(const flow::FlowKey&, std::int64_t, enrich::ConnectionNames&) const override {
    std::unique_lock<std::mutex> lock(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [this] { return open; });
  }
  void waitEntered() {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [this] { return entered; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  mutable bool entered = false;
  bool open = false;
};

TEST(Pipeline, AFullQueueCountsDropsAndNeverBlocksTheCaller) {
  FakeSink sink;
  Gate gate;
  PipelineOptions o = rawOptions();
  o.batch_records = 1;
  o.queue_capacity = 10;
  Pipeline p(o, &gate, {&sink});
  p.onPacket(makePacket(1, 1, 1));
  gate.waitEntered();
  for (int i = 0; i < 15; ++i) p.onPacket(makePacket(2, 2, 2));
  PipelineStats s = p.stats();
  EXPECT_EQ(s.queue_depth, 10u);
  EXPECT_EQ(s.packets_dropped_queue_full, 5u);
  EXPECT_EQ(s.packets_queued, 11u);
  gate.release();
  p.flush();
  EXPECT_EQ(sink.records().size(), 11u);
  EXPECT_EQ(p.stats().queue_depth, 0u);
}

TEST(Pipeline, StopHandsEverythingOverAndLaterPacketsAreCounted) {
  FakeSink sink;
  PipelineOptions o = rawOptions();
  o.aggregation_window_s = 3600;
  Pipeline p(o, nullptr, {&sink});
  for (int i = 0; i < 1000; ++i) p.onPacket(makePacket(1, static_cast<std::uint16_t>(i % 7), 80));
  p.stop();
  std::uint64_t packets = 0;
  for (const auto& r : sink.records()) packets += r.packets;
  EXPECT_EQ(packets, 1000u);
  EXPECT_EQ(sink.records().size(), 7u);
  p.stop();   // idempotent
  p.flush();  // no-op after stop
  p.onPacket(makePacket(1, 1, 1));
  EXPECT_EQ(p.stats().packets_dropped_stopped, 1u);
}

TEST(Pipeline, ConcurrentSubmittersLoseNothingThatWasAccepted) {
  FakeSink sink;
  PipelineOptions o;
  o.batch_interval = std::chrono::milliseconds(20);
  Pipeline p(o, nullptr, {&sink});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&p, t] {
      for (int i = 0; i < 20000; ++i) {
        p.onPacket(makePacket(static_cast<std::uint32_t>(t), static_cast<std::uint16_t>(i), 80));
      }
    });
  }
  for (auto& t : threads) t.join();
  p.flush();
  const PipelineStats s = p.stats();
  EXPECT_EQ(s.packets_queued + s.packets_dropped_queue_full, 80000u);
  EXPECT_EQ(sink.records().size(), s.packets_queued);
}

TEST(Pipeline, MetricsShowTheCounters) {
  FakeSink sink;
  Pipeline p(rawOptions(), nullptr, {&sink});
  for (int i = 0; i < 3; ++i) p.onPacket(makePacket(1, 1, 1));
  p.flush();
  const std::string text = prometheus::TextSerializer{}.Serialize(p.metrics()->Collect());
  EXPECT_NE(text.find("ayaflow_pipeline_records_total 3"), std::string::npos) << text;
  EXPECT_NE(text.find("ayaflow_pipeline_packets_dropped_total{reason=\"queue_full\"} 0"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("ayaflow_pipeline_queue_packets 0"), std::string::npos) << text;
}

}  // namespace
}  // namespace ayaflow::pipeline
