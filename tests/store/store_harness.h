// SPDX-License-Identifier: MIT OR Apache-2.0
// The SQLite history as the agent runs it: a real Pipeline feeding a real SqliteSink, and a
// HistoryReader on the same database, driven like one object.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ayaflow/enrich/enricher.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/store/history_reader.h"
#include "ayaflow/store/sqlite_sink.h"

namespace ayaflow::store::test {

/// An Enricher that runs a function (tests).
class FunctionEnricher final : public enrich::Enricher {
 public:
  using Fn = std::function<void(const flow::FlowKey&, enrich::ConnectionNames&)>;
  explicit FunctionEnricher(Fn fn) : fn_(std::move(fn)) {}
  void enrich(const flow::FlowKey& key, std::int64_t,
              enrich::ConnectionNames& names) const override {
    fn_(key, names);
  }

 private:
  Fn fn_;
};

/// The settings of both parts; batch_rows is also the pipeline's batch size.
struct HarnessOptions {
  std::string db_path = "traffic.db";
  std::uint32_t aggregation_window_s = 0;
  std::optional<std::uint64_t> retention_s;
  std::size_t batch_rows = 1000;
  std::chrono::milliseconds batch_interval{2000};
  std::size_t queue_capacity = 65536;
  std::size_t sink_queue_rows = std::size_t{1} << 20;  ///< tests of the queue set it lower
  std::chrono::milliseconds retention_interval{60000};
  std::size_t retention_chunk = 5000;
  std::size_t max_open_flows = 65536;
  std::chrono::milliseconds checkpoint_interval{0};  ///< aggregated mode; 0: none (tests)
  std::chrono::milliseconds log_interval{10000};
  std::chrono::milliseconds query_timeout{5000};
  std::size_t keys_per_bucket = 32768;
  std::uint64_t max_db_bytes = StoreOptions{}.max_db_bytes;
  std::uint64_t min_free_bytes = StoreOptions{}.min_free_bytes;  ///< with min_free_percent: floor
  std::uint32_t min_free_percent = StoreOptions{}.min_free_percent;
  FunctionEnricher::Fn enrich;  ///< empty: no names
};

class Harness {
 public:
  struct Stats {
    pipeline::PipelineStats pipeline;
    SqliteSinkStats sink;
  };

  explicit Harness(const HarnessOptions& o) {
    StoreOptions so;
    so.db_path = o.db_path;
    so.retention_s = o.retention_s;
    so.batch_rows = o.batch_rows;
    so.queue_rows = o.sink_queue_rows;
    so.retention_interval = o.retention_interval;
    so.retention_chunk = o.retention_chunk;
    so.log_interval = o.log_interval;
    so.query_timeout = o.query_timeout;
    so.keys_per_bucket = o.keys_per_bucket;
    so.max_db_bytes = o.max_db_bytes;
    so.min_free_bytes = o.min_free_bytes;
    so.min_free_percent = o.min_free_percent;
    pipeline::PipelineOptions po;
    po.aggregation_window_s = o.aggregation_window_s;
    po.batch_records = o.batch_rows;
    po.batch_interval = o.batch_interval;
    po.queue_capacity = o.queue_capacity;
    po.max_open_flows = o.max_open_flows;
    po.checkpoint_interval = o.checkpoint_interval;
    po.log_interval = o.log_interval;
    if (o.enrich) enricher_ = std::make_unique<FunctionEnricher>(o.enrich);
    sink_ = std::make_unique<SqliteSink>(so);
    reader_ = std::make_unique<HistoryReader>(*sink_);
    pipeline_ = std::make_unique<pipeline::Pipeline>(
        po, enricher_.get(), std::vector<pipeline::RecordSink*>{sink_.get()});
  }
  ~Harness() { stop(); }

  void submit(const flow::Packet& p) noexcept { pipeline_->onPacket(p); }
  void flush() { pipeline_->flush(); }
  /// The agent's shutdown order: the pipeline hands everything over, then the sink writes it.
  void stop() {
    pipeline_->stop();
    reader_->closeIdle();
    sink_->stop();
  }
  std::vector<flow::HistoryRow> query(const flow::HistoryQuery& q) const {
    return reader_->query(q);
  }
  std::string queryPlanForTest(const flow::HistoryQuery& q) const {
    return reader_->queryPlanForTest(q);
  }
  void syncForTest() {
    pipeline_->syncForTest();
    sink_->syncForTest();
  }
  Stats stats() const { return Stats{pipeline_->stats(), sink_->stats()}; }

  pipeline::Pipeline& pipeline() { return *pipeline_; }
  SqliteSink& sink() { return *sink_; }

 private:
  std::unique_ptr<FunctionEnricher> enricher_;
  std::unique_ptr<SqliteSink> sink_;
  std::unique_ptr<HistoryReader> reader_;
  std::unique_ptr<pipeline::Pipeline> pipeline_;
};

}  // namespace ayaflow::store::test
