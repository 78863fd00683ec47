// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "ayaflow/api/http_server.h"
#include "ayaflow/api/router.h"
#include "ayaflow/api/stream_hub.h"

namespace ayaflow::api {

/// Content type of GET /metrics (Prometheus text exposition format 0.0.4).
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

/// Exact kernel counters of one interface/direction/protocol/family (one stats-map slot,
/// summed over CPUs). Label values are free text chosen by the app; see the *Label()
/// helpers below. Samples with the same four labels are summed.
struct KernelCounterSample {
  std::string interface;  ///< "eth0"; "other" for the kernel's overflow slot
  std::string direction;  ///< "ingress" | "egress"
  std::string protocol;   ///< "tcp" | "udp" | "other"
  std::string family;     ///< "ipv4" | "ipv6" | "other"
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t events_lost = 0;  ///< events dropped because the ring buffer was full
};

/// Everything /metrics shows except the process_* families, read by the app at scrape
/// time. A plain value: the collector keeps no counters of its own, so a family shows
/// exactly what the app's sources say (the same kernel read /api/stats uses).
/// Counters must be monotonic over the process lifetime; gauges may move freely.
struct MetricsSnapshot {
  // ---- kernel (exact, from one read of the per-CPU counters)
  std::uint64_t packets_total = 0;  ///< ayaflow_packets_total: = /api/stats total_packets
  std::uint64_t bytes_total = 0;    ///< ayaflow_bytes_total: = /api/stats total_bytes
  std::uint64_t events_lost_ingress = 0;
  std::uint64_t events_lost_egress = 0;
  std::vector<KernelCounterSample> kernel_counters;  ///< the breakdown of the totals

  // ---- live state and ingest
  std::uint64_t active_connections = 0;        ///< gauge: entries in the connection map
  std::uint64_t connections_expired = 0;       ///< removed by the idle timeout
  std::uint64_t domains_resolved = 0;          ///< deep inspection: names learnt (DNS + SNI)
  std::uint64_t deep_inspect_packets = 0;      ///< payload events inspected
  std::uint64_t deep_inspect_events_lost = 0;  ///< payload events lost: ring buffer full
  std::uint64_t events_read = 0;               ///< ring-buffer records decoded
  std::uint64_t events_malformed = 0;          ///< ring-buffer records rejected by the decoder
  std::uint64_t flow_table_packets = 0;   ///< aggregated mode: packets collected from flow tables
  std::uint64_t flow_table_overflow = 0;  ///< aggregated mode: sent as events, flow table full

  // ---- storage
  std::uint64_t rows_stored = 0;  ///< rows committed to SQLite
  struct RowsDropped {
    std::uint64_t queue_full = 0;   ///< hand-off queue full: capture never waits
    std::uint64_t write_error = 0;  ///< SQLite refused the batch
  } rows_dropped;
  std::uint64_t storage_queue_rows = 0;  ///< gauge: rows waiting to be written

  // ---- configuration (gauges)
  std::uint64_t interfaces_attached = 0;    ///< those of interfaces_configured present now
  std::uint64_t interfaces_configured = 0;  ///< --interface names
  std::uint64_t ring_buffer_size_bytes = 0;

  // ---- serving
  HttpServerStats http;   ///< HttpServer::stats()
  StreamHubStats stream;  ///< StreamHub::stats()
};

/// Standard process_* values of the calling process, read from /proc/self.
struct ProcessStats {
  double cpu_seconds = 0;  ///< user + system
  std::uint64_t resident_memory_bytes = 0;
  std::uint64_t virtual_memory_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;      ///< soft RLIMIT_NOFILE
  double start_time_seconds = 0;  ///< since the Unix epoch
};

/// Reads /proc/self/stat, /proc/stat (boot time), /proc/self/fd and RLIMIT_NOFILE.
/// nullopt when /proc is unreadable (the process_* families are then left out).
std::optional<ProcessStats> readProcessStats();

/// Label text for the kernel's numeric fields: direction 0 "ingress", 1 "egress";
/// protocol 6 "tcp", 17 "udp"; address type 4 "ipv4", 6 "ipv6"; anything else "other".
const char* directionLabel(std::uint8_t direction);
const char* protocolLabel(std::uint8_t protocol);
const char* familyLabel(std::uint8_t addr_type);
/// Interface name for `ifindex`: "other" for 0 (the kernel's overflow slot), the name
/// from if_indextoname(), or "ifindex_<n>" when the interface no longer exists. Answers are
/// reused for 5 s (thread-safe).
std::string interfaceLabel(std::uint32_t ifindex);

/// Every family of a snapshot, in a fixed order, plus the process_* families and
/// ayaflow_build_info. Families with labels and no samples are left out.
std::vector<prometheus::MetricFamily> metricFamilies(const MetricsSnapshot& snapshot,
                                                     const std::optional<ProcessStats>& process);

/// metricFamilies() serialised by prometheus::TextSerializer.
std::string renderMetrics(const MetricsSnapshot& snapshot,
                          const std::optional<ProcessStats>& process);

/// A prometheus-cpp Collectable that builds its families at Collect() time from `source`
/// and readProcessStats(). Keeps no state besides `source`.
///
/// Threads: Collect() may run concurrently; `source` must be thread-safe. Errors: whatever
/// `source` throws propagates (on /metrics the router turns it into a 500, so a failed
/// kernel read is a failed scrape, never a page of zeros).
class MetricsCollector final : public prometheus::Collectable {
 public:
  explicit MetricsCollector(std::function<MetricsSnapshot()> source);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::function<MetricsSnapshot()> source_;
};

/// Registers GET /metrics (HEAD too): a MetricsCollector over `source`, serialised by
/// prometheus::TextSerializer, content type kMetricsContentType. `source` runs on a server
/// thread for every scrape and must be thread-safe.
void addMetricsRoute(Router& router, std::function<MetricsSnapshot()> source);

}  // namespace ayaflow::api
