// SPDX-License-Identifier: MIT OR Apache-2.0
// /metrics content without sockets: families, labels, exact values, process_* (unit tier).
#include "ayaflow/api/metrics.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <sys/resource.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "metrics_text.h"

namespace ayaflow::api {
namespace {

using fake::distinctSnapshot;
using fake::parseMetrics;

std::vector<std::string> familyNames(const std::vector<prometheus::MetricFamily>& families) {
  std::vector<std::string> names;
  for (const auto& f : families) names.push_back(f.name);
  return names;
}

const prometheus::MetricFamily& family(const std::vector<prometheus::MetricFamily>& families,
                                       const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return f;
  }
  throw std::out_of_range("no family " + name);
}

TEST(MetricsTest, SpecFamiliesComeFirstWithTheirTypesAndExactValues) {
  const MetricsSnapshot s = distinctSnapshot();
  const auto families = metricFamilies(s, std::nullopt);
  ASSERT_GE(families.size(), 5u);
  const std::vector<std::string> first = {families[0].name, families[1].name, families[2].name,
                                          families[3].name, families[4].name};
  EXPECT_EQ(first, (std::vector<std::string>{
                       "ayaflow_packets_total", "ayaflow_bytes_total", "ayaflow_active_connections",
                       "ayaflow_domains_resolved_total", "ayaflow_deep_inspect_packets_total"}));
  for (int i : {0, 1, 3, 4}) {
    EXPECT_EQ(families[i].type, prometheus::MetricType::Counter) << families[i].name;
  }
  EXPECT_EQ(families[2].type, prometheus::MetricType::Gauge);
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(families[i].metric.size(), 1u) << families[i].name;
    EXPECT_TRUE(families[i].metric[0].label.empty()) << families[i].name << ": SPEC totals";
    EXPECT_FALSE(families[i].help.empty());
  }
  EXPECT_EQ(families[0].metric[0].counter.value, 1957.0);
  EXPECT_EQ(families[1].metric[0].counter.value, 736700.0);
  EXPECT_EQ(families[2].metric[0].gauge.value, 42.0);
  EXPECT_EQ(families[3].metric[0].counter.value, 11.0);
  EXPECT_EQ(families[4].metric[0].counter.value, 23.0);
}

TEST(MetricsTest, EveryFamilyOfTheSnapshotInTextWithExactValues) {
  const auto m = parseMetrics(renderMetrics(distinctSnapshot(), std::nullopt));
  const std::map<std::string, std::string> expected = {
      {"ayaflow_packets_total", "1957"},
      {"ayaflow_bytes_total", "736700"},
      {"ayaflow_active_connections", "42"},
      {"ayaflow_domains_resolved_total", "11"},
      {"ayaflow_deep_inspect_packets_total", "23"},
      {"ayaflow_deep_inspect_events_lost_total", "9"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "900"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="ingress",protocol="tcp",family="ipv4"})",
       "1000"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="ingress",protocol="udp",family="ipv6"})",
       "50"},
      {R"(ayaflow_interface_packets_total{interface="eth1",direction="egress",protocol="udp",family="ipv4"})",
       "7"},
      {R"(ayaflow_interface_bytes_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "90000"},
      {R"(ayaflow_interface_bytes_total{interface="eth0",direction="ingress",protocol="tcp",family="ipv4"})",
       "640000"},
      {R"(ayaflow_interface_bytes_total{interface="eth0",direction="ingress",protocol="udp",family="ipv6"})",
       "6000"},
      {R"(ayaflow_interface_bytes_total{interface="eth1",direction="egress",protocol="udp",family="ipv4"})",
       "700"},
      {R"(ayaflow_interface_events_lost_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "0"},
      {R"(ayaflow_interface_events_lost_total{interface="eth0",direction="ingress",protocol="tcp",family="ipv4"})",
       "3"},
      {R"(ayaflow_interface_events_lost_total{interface="eth0",direction="ingress",protocol="udp",family="ipv6"})",
       "2"},
      {R"(ayaflow_interface_events_lost_total{interface="eth1",direction="egress",protocol="udp",family="ipv4"})",
       "0"},
      {R"(ayaflow_events_lost_total{direction="ingress"})", "5"},
      {R"(ayaflow_events_lost_total{direction="egress"})", "0"},
      {"ayaflow_events_read_total", "1950"},
      {"ayaflow_events_malformed_total", "4"},
      {"ayaflow_flow_table_packets_total", "70000"},
      {"ayaflow_flow_table_overflow_total", "12"},
      {"ayaflow_connections_expired_total", "17"},
      {"ayaflow_storage_rows_stored_total", "1800"},
      {R"(ayaflow_storage_rows_dropped_total{reason="queue_full"})", "9"},
      {R"(ayaflow_storage_rows_dropped_total{reason="write_error"})", "1"},
      {"ayaflow_storage_queue_rows", "31"},
      {"ayaflow_interfaces_attached", "2"},
      {"ayaflow_interfaces_configured", "3"},
      {"ayaflow_ring_buffer_size_bytes", "262144"},
      {"ayaflow_http_connections", "3"},
      {"ayaflow_http_connections_rejected_total", "5"},
      {"ayaflow_http_connections_denied_total", "6"},
      {"ayaflow_http_accept_errors_total", "8"},
      {R"(ayaflow_http_responses_total{code="1xx"})", "12"},
      {R"(ayaflow_http_responses_total{code="2xx"})", "345"},
      {R"(ayaflow_http_responses_total{code="3xx"})", "0"},
      {R"(ayaflow_http_responses_total{code="4xx"})", "27"},
      {R"(ayaflow_http_responses_total{code="5xx"})", "2"},
      {"ayaflow_stream_clients", "13"},
      {"ayaflow_stream_clients_connected_total", "19"},
      {"ayaflow_stream_clients_dropped_total", "2"},
      {"ayaflow_stream_frames_published_total", "61"},
      {"ayaflow_stream_frames_sent_total", "500"},
      {R"(ayaflow_build_info{version=")" AYAFLOW_TEST_VERSION R"("})", "1"},
  };
  EXPECT_EQ(m.values, expected);  // nothing missing, nothing extra (no process_* here)
  const std::map<std::string, std::string> types = {
      {"ayaflow_packets_total", "counter"},
      {"ayaflow_bytes_total", "counter"},
      {"ayaflow_active_connections", "gauge"},
      {"ayaflow_domains_resolved_total", "counter"},
      {"ayaflow_deep_inspect_packets_total", "counter"},
      {"ayaflow_deep_inspect_events_lost_total", "counter"},
      {"ayaflow_interface_packets_total", "counter"},
      {"ayaflow_interface_bytes_total", "counter"},
      {"ayaflow_interface_events_lost_total", "counter"},
      {"ayaflow_events_lost_total", "counter"},
      {"ayaflow_events_read_total", "counter"},
      {"ayaflow_events_malformed_total", "counter"},
      {"ayaflow_flow_table_packets_total", "counter"},
      {"ayaflow_flow_table_overflow_total", "counter"},
      {"ayaflow_connections_expired_total", "counter"},
      {"ayaflow_storage_rows_stored_total", "counter"},
      {"ayaflow_storage_rows_dropped_total", "counter"},
      {"ayaflow_storage_queue_rows", "gauge"},
      {"ayaflow_interfaces_attached", "gauge"},
      {"ayaflow_interfaces_configured", "gauge"},
      {"ayaflow_ring_buffer_size_bytes", "gauge"},
      {"ayaflow_http_connections", "gauge"},
      {"ayaflow_http_connections_rejected_total", "counter"},
      {"ayaflow_http_connections_denied_total", "counter"},
      {"ayaflow_http_accept_errors_total", "counter"},
      {"ayaflow_http_responses_total", "counter"},
      {"ayaflow_stream_clients", "gauge"},
      {"ayaflow_stream_clients_connected_total", "counter"},
      {"ayaflow_stream_clients_dropped_total", "counter"},
      {"ayaflow_stream_frames_published_total", "counter"},
      {"ayaflow_stream_frames_sent_total", "counter"},
      {"ayaflow_build_info", "gauge"},
  };
  EXPECT_EQ(m.types, types);
  for (const auto& [name, type] : types) {
    EXPECT_FALSE(m.helps.at(name).empty()) << name;
  }
}

TEST(MetricsTest, BreakdownSumsDuplicateLabelSetsAndIsOrdered) {
  MetricsSnapshot s;
  s.kernel_counters = {
      {"eth1", "ingress", "tcp", "ipv4", 1, 10, 0},
      {"eth0", "ingress", "tcp", "ipv4", 2, 20, 1},
      {"eth1", "ingress", "tcp", "ipv4", 4, 40, 2},  // same labels as the first
  };
  const auto families = metricFamilies(s, std::nullopt);
  const auto& packets = family(families, "ayaflow_interface_packets_total");
  ASSERT_EQ(packets.metric.size(), 2u);
  EXPECT_EQ(packets.metric[0].label[0].value, "eth0");
  EXPECT_EQ(packets.metric[0].counter.value, 2.0);
  EXPECT_EQ(packets.metric[1].label[0].value, "eth1");
  EXPECT_EQ(packets.metric[1].counter.value, 5.0);
  EXPECT_EQ(family(families, "ayaflow_interface_bytes_total").metric[1].counter.value, 50.0);
  EXPECT_EQ(family(families, "ayaflow_interface_events_lost_total").metric[1].counter.value, 2.0);
  std::vector<std::string> label_names;
  for (const auto& l : packets.metric[0].label) label_names.push_back(l.name);
  EXPECT_EQ(label_names,
            (std::vector<std::string>{"interface", "direction", "protocol", "family"}));
}

TEST(MetricsTest, NoBreakdownLeavesItsFamiliesOutButKeepsTheTotals) {
  MetricsSnapshot s;
  const auto names = familyNames(metricFamilies(s, std::nullopt));
  for (const char* absent : {"ayaflow_interface_packets_total", "ayaflow_interface_bytes_total",
                             "ayaflow_interface_events_lost_total"}) {
    EXPECT_EQ(std::count(names.begin(), names.end(), absent), 0) << absent;
  }
  const auto m = parseMetrics(renderMetrics(s, std::nullopt));
  EXPECT_EQ(m.at("ayaflow_packets_total"), "0");
  EXPECT_EQ(m.at("ayaflow_bytes_total"), "0");
  EXPECT_EQ(m.at(R"(ayaflow_events_lost_total{direction="egress"})"), "0");
}

TEST(MetricsTest, LargeCountersAreExactUpTo2To53) {
  MetricsSnapshot s;
  s.packets_total = (std::uint64_t{1} << 53);
  s.bytes_total = (std::uint64_t{1} << 53) - 1;
  const auto m = parseMetrics(renderMetrics(s, std::nullopt));
  EXPECT_EQ(m.at("ayaflow_packets_total"), "9007199254740992");
  EXPECT_EQ(m.at("ayaflow_bytes_total"), "9007199254740991");
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  MetricsSnapshot s;
  s.kernel_counters = {{"we\"ird\\", "ingress", "tcp", "ipv4", 1, 2, 0}};
  const auto m = parseMetrics(renderMetrics(s, std::nullopt));
  EXPECT_TRUE(m.has(
      R"(ayaflow_interface_packets_total{interface="we\"ird\\",direction="ingress",protocol="tcp",family="ipv4"})"));
}

TEST(MetricsTest, ProcessFamiliesFromProcessStats) {
  ProcessStats p;
  p.cpu_seconds = 1.25;
  p.resident_memory_bytes = 10 << 20;
  p.virtual_memory_bytes = 100 << 20;
  p.open_fds = 12;
  p.max_fds = 1024;
  p.start_time_seconds = 1700000000.5;
  const auto m = parseMetrics(renderMetrics(MetricsSnapshot{}, p));
  EXPECT_EQ(m.at("process_cpu_seconds_total"), "1.25");
  EXPECT_EQ(m.at("process_resident_memory_bytes"), "10485760");
  EXPECT_EQ(m.at("process_virtual_memory_bytes"), "104857600");
  EXPECT_EQ(m.at("process_open_fds"), "12");
  EXPECT_EQ(m.at("process_max_fds"), "1024");
  EXPECT_EQ(m.at("process_start_time_seconds"), "1700000000.5");
  EXPECT_EQ(m.types.at("process_cpu_seconds_total"), "counter");
  for (const char* gauge : {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                            "process_open_fds", "process_max_fds", "process_start_time_seconds"}) {
    EXPECT_EQ(m.types.at(gauge), "gauge") << gauge;
  }
}

std::uint64_t countFds() {
  DIR* dir = opendir("/proc/self/fd");
  std::uint64_t n = 0;
  while (const dirent* e = readdir(dir)) n += e->d_name[0] != '.';
  closedir(dir);
  return n - 1;  // the directory's own descriptor
}

TEST(MetricsTest, ReadProcessStatsDescribesThisProcess) {
  const auto before = countFds();
  const auto p = readProcessStats();
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->open_fds, before);
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  EXPECT_EQ(p->max_fds, limit.rlim_cur);
  EXPECT_GT(p->resident_memory_bytes, 1u << 20);  // a gtest binary is more than 1 MiB
  EXPECT_GE(p->virtual_memory_bytes, p->resident_memory_bytes);
  EXPECT_GE(p->cpu_seconds, 0.0);
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  // Started before now and (with clock-tick granularity) not long before this test.
  EXPECT_LE(p->start_time_seconds, static_cast<double>(now.tv_sec) + 1.0);
  EXPECT_GT(p->start_time_seconds, static_cast<double>(now.tv_sec) - 3600.0);
}

TEST(MetricsTest, ProcessFdCountFollowsOpenDescriptors) {
  const auto before = readProcessStats()->open_fds;
  std::vector<FILE*> files;
  for (int i = 0; i < 5; ++i) files.push_back(fopen("/proc/self/stat", "r"));
  EXPECT_EQ(readProcessStats()->open_fds, before + 5);
  for (FILE* f : files) fclose(f);
  EXPECT_EQ(readProcessStats()->open_fds, before);
}

TEST(MetricsTest, LabelHelpers) {
  EXPECT_STREQ(directionLabel(0), "ingress");
  EXPECT_STREQ(directionLabel(1), "egress");
  EXPECT_STREQ(directionLabel(2), "other");
  EXPECT_STREQ(protocolLabel(6), "tcp");
  EXPECT_STREQ(protocolLabel(17), "udp");
  EXPECT_STREQ(protocolLabel(0), "other");
  EXPECT_STREQ(familyLabel(4), "ipv4");
  EXPECT_STREQ(familyLabel(6), "ipv6");
  EXPECT_STREQ(familyLabel(0), "other");
  EXPECT_EQ(interfaceLabel(0), "other");
  const unsigned lo = if_nametoindex("lo");
  ASSERT_NE(lo, 0u);
  EXPECT_EQ(interfaceLabel(lo), "lo");
  EXPECT_EQ(interfaceLabel(0x7ffffff0), "ifindex_2147483632");
}

TEST(MetricsTest, CollectorReadsTheSourceOnEveryCollect) {
  std::atomic<int> calls{0};
  MetricsCollector collector([&calls] {
    MetricsSnapshot s;
    s.packets_total = static_cast<std::uint64_t>(++calls) * 100;
    return s;
  });
  EXPECT_EQ(family(collector.Collect(), "ayaflow_packets_total").metric[0].counter.value, 100.0);
  const auto families = collector.Collect();
  EXPECT_EQ(family(families, "ayaflow_packets_total").metric[0].counter.value, 200.0);
  EXPECT_EQ(calls.load(), 2);
  // The collector adds the process families itself.
  EXPECT_GT(family(families, "process_resident_memory_bytes").metric[0].gauge.value, 0.0);
}

TEST(MetricsTest, RouteServesTextFormatAndTurnsASourceFailureInto500) {
  Router router;
  bool fail = false;
  addMetricsRoute(router, [&fail] {
    if (fail) throw std::runtime_error("kernel read failed");
    return distinctSnapshot();
  });
  Request request;
  request.method = "GET";
  request.path = "/metrics";
  Response r = router.route(request);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const auto m = parseMetrics(r.body);
  EXPECT_EQ(m.at("ayaflow_packets_total"), "1957");
  EXPECT_TRUE(m.has("process_open_fds"));

  request.method = "HEAD";
  EXPECT_EQ(router.route(request).status, 200u);
  request.method = "POST";
  EXPECT_EQ(router.route(request).status, 405u);

  fail = true;
  request.method = "GET";
  r = router.route(request);
  EXPECT_EQ(r.status, 500u);
  EXPECT_EQ(r.body, R"({"error":"internal error"})");
}

}  // namespace
}  // namespace ayaflow::api
