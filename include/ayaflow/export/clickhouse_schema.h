// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <string>

#include "ayaflow/pipeline/flow_record.h"

namespace ayaflow::exporter {

/// The record -> ClickHouse row mapping (docs/export.md, "ClickHouse schema").
///
/// Directional: one row per FlowRecord, i.e. per directional flow and interval (a packet in
/// raw mode, a flow's window in aggregated mode), as the SQLite history stores it. A
/// connection's two directions are two rows; `direction` says which way the packets went
/// as seen from this node, so "bytes a pod sent" is a plain sum over src_pod.
///
/// Text columns hold '' where nothing is known (ClickHouse 18.16's Nullable columns cost
/// more and sort last anyway). `start` (DateTime in UTC) is the first packet's second: the
/// partition (one per UTC day, for retention) and the first sort key (time ranges).
/// `batch_id` identifies the INSERT a row came with: a retried INSERT whose first attempt
/// actually landed is found by it and not sent twice.

/// CREATE TABLE IF NOT EXISTS `database`.`table` (...) ENGINE = MergeTree ...
std::string clickHouseCreateTable(const std::string& database, const std::string& table);

/// The column list INSERTs name, in RowBinary order.
const char* clickHouseColumns();

/// Values of a row that do not come from the record itself.
struct RowContext {
  const std::string* node = nullptr;       ///< this node's name
  const std::string* interface = nullptr;  ///< the record's interface name
  std::uint64_t batch_id = 0;
};

/// Appends `r` as one RowBinary row (clickHouseColumns() order) to `out`.
void appendRowBinary(const pipeline::FlowRecord& r, const RowContext& context, std::string& out);

/// The UTC day (days since 1970-01-01) of a Unix time in ms: rows of one INSERT share it, so
/// the INSERT writes one partition and lands whole or not at all.
inline std::int64_t utcDay(std::int64_t unix_ms) noexcept {
  const std::int64_t day_ms = 86400000;
  return unix_ms >= 0 ? unix_ms / day_ms : (unix_ms - day_ms + 1) / day_ms;
}

}  // namespace ayaflow::exporter
