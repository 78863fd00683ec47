// SPDX-License-Identifier: MIT OR Apache-2.0
// The ayaflow_export_* families: one family per counter, a sample per enabled sink.
#include "ayaflow/common/metrics.h"
#include "ayaflow/export/export_stats.h"

namespace ayaflow::exporter {
namespace {

using prometheus::MetricType;
using Labels = common::MetricFamilies::Labels;

template <typename Get>
std::vector<prometheus::ClientMetric> perSink(const std::vector<ExportStats>& sinks,
                                              MetricType type, Get get) {
  std::vector<prometheus::ClientMetric> out;
  for (const ExportStats& s : sinks) {
    out.push_back(common::MetricFamilies::sample(type, static_cast<double>(get(s)),
                                                 Labels{{"sink", s.sink}}));
  }
  return out;
}

}  // namespace

std::vector<prometheus::MetricFamily> exportFamilies(const std::vector<ExportStats>& sinks) {
  common::MetricFamilies f;
  if (sinks.empty()) return f.take();
  const auto C = MetricType::Counter;
  const auto G = MetricType::Gauge;
  f.add("ayaflow_export_records_total",
        "Flow records delivered by an export sink: acknowledged by ClickHouse, or written to "
        "every IPFIX collector.",
        C, perSink(sinks, C, [](const ExportStats& s) { return s.records; }));
  f.add("ayaflow_export_bytes_total",
        "Bytes an export sink sent: INSERT bodies (ClickHouse) or IPFIX messages.", C,
        perSink(sinks, C, [](const ExportStats& s) { return s.bytes; }));
  f.add("ayaflow_export_errors_total",
        "Failed export attempts (connect, send, an HTTP error status); ClickHouse retries "
        "them from its spool.",
        C, perSink(sinks, C, [](const ExportStats& s) { return s.errors; }));
  f.add("ayaflow_export_retried_records_total",
        "Records sent again after a failed attempt (each is still stored once).", C,
        perSink(sinks, C, [](const ExportStats& s) { return s.retried; }));
  f.add("ayaflow_export_spooled_records_total",
        "Records that waited in the spool while the server could not take them.", C,
        perSink(sinks, C, [](const ExportStats& s) { return s.spooled; }));
  f.add("ayaflow_export_spool_records", "Records in the spool now, waiting for the server.", G,
        perSink(sinks, G, [](const ExportStats& s) { return s.spool_depth; }));
  f.add("ayaflow_export_queue_depth",
        "Records waiting in the hand-off from the pipeline to an export sink.", G,
        perSink(sinks, G, [](const ExportStats& s) { return s.queue_depth; }));
  std::vector<prometheus::ClientMetric> dropped;
  for (const ExportStats& s : sinks) {
    const std::pair<const char*, std::uint64_t> reasons[] = {{"queue_full", s.dropped_queue_full},
                                                             {"spool_full", s.dropped_spool_full},
                                                             {"send_failed", s.dropped_send},
                                                             {"stopped", s.dropped_stopped}};
    for (const auto& [reason, n] : reasons) {
      dropped.push_back(common::MetricFamilies::sample(
          C, static_cast<double>(n), Labels{{"sink", s.sink}, {"reason", reason}}));
    }
  }
  f.add("ayaflow_export_dropped_total",
        "Flow records an export sink dropped, by reason: queue_full (the sink was behind), "
        "spool_full (ClickHouse away past the spool's bound), send_failed (an IPFIX collector "
        "could not take a message) or stopped (not sent when the agent stopped).",
        C, std::move(dropped));
  return f.take();
}

}  // namespace ayaflow::exporter
