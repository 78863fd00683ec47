// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <vector>

namespace prometheus {
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::exporter {

/// What one export sink counts; each counter exact. The same shape for every sink, so
/// /metrics shows them as one family per counter with a `sink` label.
struct ExportStats {
  const char* sink = "";                 ///< "clickhouse", "ipfix"
  std::uint64_t records = 0;             ///< records delivered (ClickHouse: INSERT acknowledged;
                                         ///< IPFIX: in a message written to every collector socket)
  std::uint64_t bytes = 0;               ///< payload bytes sent (INSERT bodies; IPFIX messages)
  std::uint64_t errors = 0;              ///< failed attempts (connect, send, HTTP status)
  std::uint64_t retried = 0;             ///< records sent again after a failed attempt
  std::uint64_t spooled = 0;             ///< records that waited in the spool for a server away
  std::uint64_t spool_depth = 0;         ///< records in the spool now
  std::uint64_t queue_depth = 0;         ///< records waiting in the hand-off from the pipeline
  std::uint64_t dropped_queue_full = 0;  ///< the hand-off was full (the sink is behind)
  std::uint64_t dropped_spool_full = 0;  ///< the spool was full (the server away too long)
  std::uint64_t dropped_send = 0;        ///< a collector could not take a message (IPFIX)
  std::uint64_t dropped_stopped = 0;     ///< not sent by the time the agent stopped
};

/// The ayaflow_export_* families of the given sinks (none when the list is empty, so the
/// families are absent while every sink is off).
std::vector<prometheus::MetricFamily> exportFamilies(const std::vector<ExportStats>& sinks);

}  // namespace ayaflow::exporter
