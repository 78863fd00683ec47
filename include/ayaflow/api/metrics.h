// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "ayaflow/api/router.h"

namespace ayaflow::api {

/// Content type of GET /metrics (Prometheus text exposition format 0.0.4).
inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

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

/// The process_* families of `process` (none for nullopt) and ayaflow_build_info.
std::vector<prometheus::MetricFamily> processFamilies(const std::optional<ProcessStats>& process);

/// A collectable of processFamilies(readProcessStats()), read at every scrape.
std::shared_ptr<const prometheus::Collectable> processMetrics();

/// The families of `collectable` in the text format (prometheus::TextSerializer).
std::string renderMetrics(const prometheus::Collectable& collectable);

/// Registers GET /metrics (HEAD too): `collectable` (the agent's registry, see
/// common::MetricsRegistry) serialised at every scrape, content type kMetricsContentType.
/// Collect() runs on a server thread and must be thread-safe; when it throws (a failed
/// kernel read), the router answers 500: a failed scrape, never a page of zeros. Borrowed:
/// it must outlive the router's users.
void addMetricsRoute(Router& router, const prometheus::Collectable& collectable);

}  // namespace ayaflow::api
