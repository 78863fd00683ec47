// SPDX-License-Identifier: MIT OR Apache-2.0
// GET /metrics: whatever the registry's collectables report, serialised by prometheus-cpp's
// TextSerializer, plus the process_* families. No counter lives here.
#include "ayaflow/api/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>

#include <prometheus/text_serializer.h>

#include "ayaflow/common/metrics.h"

#ifndef AYAFLOW_VERSION
#define AYAFLOW_VERSION "unknown"
#endif

namespace ayaflow::api {
namespace {

using Families = common::MetricFamilies;

void addProcess(Families& families, const ProcessStats& p) {
  families.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                   p.cpu_seconds);
  families.gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                 static_cast<double>(p.resident_memory_bytes));
  families.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                 static_cast<double>(p.virtual_memory_bytes));
  families.gauge("process_open_fds", "Number of open file descriptors.",
                 static_cast<double>(p.open_fds));
  families.gauge("process_max_fds", "Maximum number of open file descriptors.",
                 static_cast<double>(p.max_fds));
  families.gauge("process_start_time_seconds",
                 "Start time of the process since unix epoch in seconds.", p.start_time_seconds);
}

std::uint64_t countOpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  std::uint64_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  ::closedir(dir);
  // The directory stream's own descriptor was open while counting.
  return count > 0 ? count - 1 : 0;
}

/// Boot time (seconds since the epoch) from the "btime" line of /proc/stat.
std::optional<std::uint64_t> bootTime() {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("btime ", 0) == 0) {
      try {
        return std::stoull(line.substr(6));
      } catch (const std::exception&) {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<ProcessStats> readProcessStats() {
  std::string line;
  {
    std::ifstream in("/proc/self/stat");  // closed before the descriptors are counted
    if (!std::getline(in, line)) return std::nullopt;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are
  // counted from the last ')'. Field 3 (state) is the first after it.
  const auto paren = line.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(paren + 1));
  std::vector<std::string> f;  // f[0] is field 3
  for (std::string field; fields >> field;) f.push_back(std::move(field));
  if (f.size() < 22) return std::nullopt;  // need fields 3..24
  const auto field = [&f](int n) { return std::stoull(f[static_cast<std::size_t>(n - 3)]); };

  ProcessStats p;
  try {
    const long ticks = ::sysconf(_SC_CLK_TCK);
    const long page = ::sysconf(_SC_PAGESIZE);
    if (ticks <= 0 || page <= 0) return std::nullopt;
    p.cpu_seconds = static_cast<double>(field(14) + field(15)) / static_cast<double>(ticks);
    p.virtual_memory_bytes = field(23);
    p.resident_memory_bytes = field(24) * static_cast<std::uint64_t>(page);
    if (const auto boot = bootTime()) {
      p.start_time_seconds =
          static_cast<double>(*boot) + static_cast<double>(field(22)) / static_cast<double>(ticks);
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  p.open_fds = countOpenFds();
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    p.max_fds = limit.rlim_cur == RLIM_INFINITY ? 0 : static_cast<std::uint64_t>(limit.rlim_cur);
  }
  return p;
}

std::vector<prometheus::MetricFamily> processFamilies(const std::optional<ProcessStats>& process) {
  Families families;
  families.gauge("ayaflow_build_info", "Always 1; the labels describe the running build.", 1.0,
                 {{"version", AYAFLOW_VERSION}});
  if (process) addProcess(families, *process);
  return families.take();
}

std::shared_ptr<const prometheus::Collectable> processMetrics() {
  return std::make_shared<const common::CallbackCollectable>(
      [] { return processFamilies(readProcessStats()); });
}

std::string renderMetrics(const prometheus::Collectable& collectable) {
  return prometheus::TextSerializer{}.Serialize(collectable.Collect());
}

void addMetricsRoute(Router& router, const prometheus::Collectable& collectable) {
  router.add("GET", "/metrics", [&collectable](const Request&) {
    Response response;
    response.content_type = kMetricsContentType;
    response.body = renderMetrics(collectable);
    return response;
  });
}

}  // namespace ayaflow::api
