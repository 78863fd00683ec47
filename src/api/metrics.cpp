// SPDX-License-Identifier: MIT OR Apache-2.0
// GET /metrics: MetricFamily objects built from one MetricsSnapshot per scrape, serialised
// by prometheus-cpp's TextSerializer. No counter lives here: the values are the app's.
#include "ayaflow/api/metrics.h"

#include <dirent.h>
#include <net/if.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>

#include <prometheus/text_serializer.h>

#ifndef AYAFLOW_VERSION
#define AYAFLOW_VERSION "unknown"
#endif

namespace ayaflow::api {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Counter values are doubles in the exposition format: integers are exact up to 2^53
// (9 PB of bytes), far beyond any process lifetime's packet count.
double asDouble(std::uint64_t v) { return static_cast<double>(v); }

ClientMetric sample(MetricType type, double value, Labels labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return m;
}

/// Builds the family list in order; a family is appended only if it has samples.
class Families {
 public:
  void add(const char* name, const char* help, MetricType type, std::vector<ClientMetric> samples) {
    if (samples.empty()) return;
    MetricFamily family;
    family.name = name;
    family.help = help;
    family.type = type;
    family.metric = std::move(samples);
    out_.push_back(std::move(family));
  }
  void counter(const char* name, const char* help, std::uint64_t value) {
    add(name, help, MetricType::Counter, {sample(MetricType::Counter, asDouble(value))});
  }
  void counter(const char* name, const char* help, double value) {
    add(name, help, MetricType::Counter, {sample(MetricType::Counter, value)});
  }
  void gauge(const char* name, const char* help, double value, Labels labels = {}) {
    add(name, help, MetricType::Gauge, {sample(MetricType::Gauge, value, std::move(labels))});
  }
  std::vector<MetricFamily> take() { return std::move(out_); }

 private:
  std::vector<MetricFamily> out_;
};

struct KernelSums {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t events_lost = 0;
};

void addKernelBreakdown(Families& families, const std::vector<KernelCounterSample>& counters) {
  // Sum duplicates (two slots that map to the same labels, e.g. an interface renamed):
  // a scrape must never carry the same series twice. std::map also fixes the order.
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  std::map<Key, KernelSums> sums;
  for (const auto& c : counters) {
    KernelSums& s = sums[Key{c.interface, c.direction, c.protocol, c.family}];
    s.packets += c.packets;
    s.bytes += c.bytes;
    s.events_lost += c.events_lost;
  }
  std::vector<ClientMetric> packets, bytes, lost;
  for (const auto& [key, s] : sums) {
    const Labels labels{{"interface", std::get<0>(key)},
                        {"direction", std::get<1>(key)},
                        {"protocol", std::get<2>(key)},
                        {"family", std::get<3>(key)}};
    packets.push_back(sample(MetricType::Counter, asDouble(s.packets), labels));
    bytes.push_back(sample(MetricType::Counter, asDouble(s.bytes), labels));
    lost.push_back(sample(MetricType::Counter, asDouble(s.events_lost), labels));
  }
  families.add("ayaflow_interface_packets_total",
               "Packets counted by the kernel program, by interface, direction, protocol and "
               "address family (exact; sums to ayaflow_packets_total).",
               MetricType::Counter, std::move(packets));
  families.add("ayaflow_interface_bytes_total",
               "IP bytes counted by the kernel program, by interface, direction, protocol and "
               "address family (exact; sums to ayaflow_bytes_total).",
               MetricType::Counter, std::move(bytes));
  families.add("ayaflow_interface_events_lost_total",
               "Packet events the kernel program could not queue (ring buffer full), by "
               "interface, direction, protocol and address family.",
               MetricType::Counter, std::move(lost));
}

void addProcess(Families& families, const ProcessStats& p) {
  families.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                   p.cpu_seconds);
  families.gauge("process_resident_memory_bytes", "Resident memory size in bytes.",
                 asDouble(p.resident_memory_bytes));
  families.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                 asDouble(p.virtual_memory_bytes));
  families.gauge("process_open_fds", "Number of open file descriptors.", asDouble(p.open_fds));
  families.gauge("process_max_fds", "Maximum number of open file descriptors.",
                 asDouble(p.max_fds));
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

const char* directionLabel(std::uint8_t direction) {
  switch (direction) {
    case 0:
      return "ingress";
    case 1:
      return "egress";
    default:
      return "other";
  }
}

const char* protocolLabel(std::uint8_t protocol) {
  switch (protocol) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    default:
      return "other";
  }
}

const char* familyLabel(std::uint8_t addr_type) {
  switch (addr_type) {
    case 4:
      return "ipv4";
    case 6:
      return "ipv6";
    default:
      return "other";
  }
}

std::string interfaceLabel(std::uint32_t ifindex) {
  if (ifindex == 0) return "other";
  // if_indextoname() costs a socket and an ioctl (~10 us), and /api/live names 50
  // connections per request: keep each answer for a few seconds. An interface renamed or
  // removed shows its new label once its entry is older than that.
  constexpr auto kTtl = std::chrono::seconds(5);
  constexpr std::size_t kMaxEntries = 4096;
  static std::mutex mu;
  static std::map<std::uint32_t, std::pair<std::string, std::chrono::steady_clock::time_point>>
      cache;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(ifindex);
    if (it != cache.end() && now - it->second.second < kTtl) return it->second.first;
  }
  char name[IF_NAMESIZE] = {};
  std::string label = ::if_indextoname(ifindex, name) != nullptr
                          ? std::string(name)
                          : "ifindex_" + std::to_string(ifindex);
  std::lock_guard<std::mutex> lock(mu);
  if (cache.size() >= kMaxEntries) cache.clear();
  cache[ifindex] = {label, now};
  return label;
}

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

std::vector<MetricFamily> metricFamilies(const MetricsSnapshot& s,
                                         const std::optional<ProcessStats>& process) {
  Families families;
  // SPEC §5: five fixed names and meanings.
  families.counter("ayaflow_packets_total",
                   "TCP/UDP packets seen at ingress and egress of the attached interfaces, "
                   "counted exactly by the kernel program (= /api/stats total_packets).",
                   s.packets_total);
  families.counter("ayaflow_bytes_total",
                   "IP bytes of those packets (IPv4 total length, IPv6 payload length + 40), "
                   "counted exactly by the kernel program (= /api/stats total_bytes).",
                   s.bytes_total);
  families.gauge("ayaflow_active_connections", "Connections in the live connection map.",
                 asDouble(s.active_connections));
  families.counter("ayaflow_domains_resolved_total",
                   "Domain names learnt by deep inspection (DNS questions and answers, TLS SNI).",
                   s.domains_resolved);
  families.counter("ayaflow_deep_inspect_packets_total",
                   "Payload events examined by deep inspection.", s.deep_inspect_packets);
  families.counter("ayaflow_deep_inspect_events_lost_total",
                   "Payload events the kernel program could not queue (payload ring buffer full).",
                   s.deep_inspect_events_lost);

  // Kernel breakdown and loss.
  addKernelBreakdown(families, s.kernel_counters);
  families.add(
      "ayaflow_events_lost_total",
      "Packet events the kernel program could not queue because the ring buffer was "
      "full, by direction; the packet counters above still include those packets.",
      MetricType::Counter,
      {sample(MetricType::Counter, asDouble(s.events_lost_ingress), {{"direction", "ingress"}}),
       sample(MetricType::Counter, asDouble(s.events_lost_egress), {{"direction", "egress"}})});

  // Ingest and live state.
  families.counter("ayaflow_events_read_total",
                   "Packet events read from the ring buffer and decoded.", s.events_read);
  families.counter("ayaflow_events_malformed_total",
                   "Ring-buffer records and flow-table entries rejected by the decoder.",
                   s.events_malformed);
  families.counter("ayaflow_flow_table_packets_total",
                   "Aggregated mode: packets collected from the kernel flow tables.",
                   s.flow_table_packets);
  families.counter("ayaflow_flow_table_overflow_total",
                   "Aggregated mode: packets sent as events because the kernel flow table was "
                   "full (still counted exactly, at a higher cost).",
                   s.flow_table_overflow);
  families.counter("ayaflow_connections_expired_total",
                   "Connections removed from the live map after the idle timeout.",
                   s.connections_expired);

  // Storage.
  families.counter("ayaflow_storage_rows_stored_total", "Rows committed to the SQLite database.",
                   s.rows_stored);
  families.add(
      "ayaflow_storage_rows_dropped_total",
      "Rows that could not be stored, by reason: queue_full (the hand-off to the "
      "writer was full; capture never waits) or write_error (SQLite failed).",
      MetricType::Counter,
      {sample(MetricType::Counter, asDouble(s.rows_dropped.queue_full), {{"reason", "queue_full"}}),
       sample(MetricType::Counter, asDouble(s.rows_dropped.write_error),
              {{"reason", "write_error"}})});
  families.gauge("ayaflow_storage_queue_rows", "Rows waiting to be written.",
                 asDouble(s.storage_queue_rows));

  // Configuration.
  families.gauge("ayaflow_interfaces_attached", "Interfaces the kernel program is attached to.",
                 asDouble(s.interfaces_attached));
  families.gauge("ayaflow_interfaces_configured",
                 "Interfaces named by --interface; more than attached while one is missing.",
                 asDouble(s.interfaces_configured));
  families.gauge("ayaflow_ring_buffer_size_bytes", "Size of the kernel event ring buffer.",
                 asDouble(s.ring_buffer_size_bytes));

  // HTTP server and WebSocket stream.
  families.gauge("ayaflow_http_connections", "Open HTTP connections, WebSocket sessions included.",
                 asDouble(s.http.active_connections));
  families.counter("ayaflow_http_connections_rejected_total",
                   "Connections closed at accept because the connection cap was reached.",
                   s.http.rejected_connections);
  families.counter("ayaflow_http_connections_denied_total",
                   "Connections from addresses outside --allowed-ips (answered 403).",
                   s.http.denied_connections);
  families.counter("ayaflow_http_accept_errors_total",
                   "Failed accept() calls (for example out of file descriptors).",
                   s.http.accept_errors);
  {
    static constexpr std::array<const char*, 5> kClasses = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    std::vector<ClientMetric> responses;
    for (std::size_t i = 0; i < kClasses.size(); ++i) {
      responses.push_back(
          sample(MetricType::Counter, asDouble(s.http.responses[i]), {{"code", kClasses[i]}}));
    }
    families.add("ayaflow_http_responses_total",
                 "HTTP responses sent, by status class (1xx: WebSocket upgrades).",
                 MetricType::Counter, std::move(responses));
  }
  families.gauge("ayaflow_stream_clients", "WebSocket clients subscribed to /api/stream.",
                 asDouble(s.stream.clients));
  families.counter("ayaflow_stream_clients_connected_total",
                   "WebSocket clients that subscribed to /api/stream.", s.stream.clients_total);
  families.counter("ayaflow_stream_clients_dropped_total",
                   "WebSocket clients closed because they fell too far behind.",
                   s.stream.clients_dropped);
  families.counter("ayaflow_stream_frames_published_total", "Frames published to /api/stream.",
                   s.stream.frames_published);
  families.counter("ayaflow_stream_frames_sent_total",
                   "Frames written to WebSocket clients (one per client per frame).",
                   s.stream.frames_sent);

  families.gauge("ayaflow_build_info", "Always 1; the labels describe the running build.", 1.0,
                 {{"version", AYAFLOW_VERSION}});
  if (process) addProcess(families, *process);
  return families.take();
}

std::string renderMetrics(const MetricsSnapshot& snapshot,
                          const std::optional<ProcessStats>& process) {
  return prometheus::TextSerializer{}.Serialize(metricFamilies(snapshot, process));
}

MetricsCollector::MetricsCollector(std::function<MetricsSnapshot()> source)
    : source_(std::move(source)) {}

std::vector<MetricFamily> MetricsCollector::Collect() const {
  return metricFamilies(source_(), readProcessStats());
}

void addMetricsRoute(Router& router, std::function<MetricsSnapshot()> source) {
  auto collector = std::make_shared<const MetricsCollector>(std::move(source));
  router.add("GET", "/metrics", [collector](const Request&) {
    Response response;
    response.content_type = kMetricsContentType;
    response.body = prometheus::TextSerializer{}.Serialize(collector->Collect());
    return response;
  });
}

}  // namespace ayaflow::api
