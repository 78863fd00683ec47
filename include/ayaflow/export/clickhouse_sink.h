// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <memory>

#include "ayaflow/export/export_options.h"
#include "ayaflow/export/export_stats.h"
#include "ayaflow/pipeline/flow_record.h"

namespace ayaflow::exporter {

/// Sends final flow records to a ClickHouse server over its HTTP interface (docs/export.md):
/// RowBinary INSERTs of at most batch_rows rows (one UTC day each, so each lands whole or
/// not at all), at least every flush_interval while records come.
///
/// Outages: an INSERT that fails stays in a bounded in-memory spool (spool_records) and is
/// retried with exponential back-off; later records join the spool, past its bound they are
/// dropped and counted (spool_full). Exactly once within the bound: every row carries its
/// INSERT's batch_id; an INSERT whose attempt failed after its bytes went out (the answer
/// was lost, the server hung) is looked up by that id before it is sent again.
///
/// Threads: consume() on the pipeline thread never waits (a full hand-off drops the batch,
/// counted queue_full); one thread of its own does all I/O; flush(), stop(), stats() from
/// any other thread. Provisional records (checkpoints) are ignored: final records alone
/// hold the exact totals.
class ClickHouseSink final : public pipeline::RecordSink {
 public:
  /// Throws ConfigError for a bad URL or an unreadable CA file. Contacts the server only
  /// from its thread (a server that is away at start-up is an outage like any other).
  explicit ClickHouseSink(ClickHouseOptions options);
  ~ClickHouseSink() override;  ///< stop()
  ClickHouseSink(const ClickHouseSink&) = delete;
  ClickHouseSink& operator=(const ClickHouseSink&) = delete;

  const char* name() const noexcept override { return "clickhouse"; }
  bool consume(pipeline::BatchPtr batch, Deadline room_until) noexcept override;
  /// Returns once every batch consumed before the call was tried once (sent or spooled).
  void flush() override;
  /// Sends what it holds (at most stop_timeout, the rest dropped: stopped) and stops.
  void stop() override;

  ExportStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::exporter
