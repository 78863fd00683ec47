// SPDX-License-Identifier: MIT OR Apache-2.0
// /metrics content without sockets: the agent's families, labels, exact values, process_*
// (unit tier).
#include "ayaflow/api/metrics.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "agent_metrics.h"
#include "ayaflow/common/interface_name.h"
#include "metrics_text.h"

namespace ayaflow::api {
namespace {

using fake::parseMetrics;

std::string render(const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer{}.Serialize(families);
}

TEST(MetricsTest, EveryFamilyOfTheAgentWithItsTypeHelpAndValue) {
  test::AgentMetrics agent;
  agent.stats.capture = fake::distinctCaptureStats();
  agent.stats.domains_resolved = 11;
  agent.stats.payload_records = 23;
  agent.stats.inspection.dns_names = 71;
  agent.stats.inspection.sni_names = 72;
  agent.stats.inspection.names_evicted = 73;
  agent.stats.inspection.tls_streams = 74;
  agent.stats.inspection.tls_stream_bytes = 75;
  agent.stats.inspection.tls_streams_evicted = 76;
  agent.stats.resolver.successes = 81;
  agent.stats.resolver.failures = 82;
  agent.stats.resolver.dropped = 83;
  agent.stats.resolver.evictions = 84;
  agent.stats.resolver_cache_entries = 85;
  agent.stats.resolver_pending = 86;
  agent.stats.cri.up = false;
  agent.stats.cri.errors = 87;
  agent.stats.cri.pods = 88;
  agent.stats.pipeline.packets_dropped_queue_full = 21;
  agent.stats.pipeline.packets_dropped_stopped = 22;
  agent.stats.pipeline.queue_depth = 24;
  agent.stats.pipeline.records_emitted = 1900;
  agent.stats.pipeline.records_checkpointed = 1700;
  agent.stats.storage.rows_stored = 1800;
  agent.stats.storage.queue.records_dropped_full = 25;
  agent.stats.storage.rows_dropped_write_error = 1;
  agent.stats.storage.queue.records_dropped_closed = 26;
  agent.stats.storage.queue.depth = 31;
  agent.stats.storage.rows_updated = 1600;
  agent.stats.storage.queue.checkpoint_records_refused = 27;
  agent.stats.storage.read_errors = 32;
  agent.stats.storage.write_failures = 33;
  agent.stats.storage.queries_timed_out = 34;
  agent.stats.storage.queries_busy = 35;
  // Disk budget (issue 19).
  agent.stats.storage.rows_deleted = 36;
  agent.stats.storage.rows_deleted_size = 37;
  agent.stats.storage.rows_dropped_disk_space = 38;
  agent.stats.storage.writes_paused = true;
  agent.stats.storage.db_bytes = 39;
  agent.stats.storage.db_file_bytes = 40;
  agent.stats.storage.max_db_bytes = 41;
  agent.stats.storage.disk_free_bytes = 42;
  agent.stats.storage.disk_floor_bytes = 43;
  // Flow export (issue 17).
  agent.stats.clickhouse.records = 3001;
  agent.stats.clickhouse.bytes = 3002;
  agent.stats.clickhouse.errors = 3003;
  agent.stats.clickhouse.retried = 3004;
  agent.stats.clickhouse.spooled = 3005;
  agent.stats.clickhouse.spool_depth = 3006;
  agent.stats.clickhouse.queue_depth = 3007;
  agent.stats.clickhouse.dropped_queue_full = 3008;
  agent.stats.clickhouse.dropped_spool_full = 3009;
  agent.stats.clickhouse.dropped_stopped = 3010;
  agent.stats.ipfix.records = 4001;
  agent.stats.ipfix.dropped_send = 4002;
  agent.stats.http = fake::distinctHttpStats();
  agent.stats.history.ok = 91;
  agent.stats.history.bad_request = 92;
  agent.stats.history.busy = 93;
  agent.stats.history.timeout = 94;
  agent.stats.history.failed = 95;
  agent.stats.history.queued = 96;
  agent.stats.history.running = 97;
  agent.stats.stream = fake::distinctStreamStats();
  agent.stats.tcp.results[static_cast<std::size_t>(flow::TcpState::kEstablished)] = 101;
  agent.stats.tcp.results[static_cast<std::size_t>(flow::TcpState::kRefused)] = 102;
  agent.stats.tcp.handshake.buckets[6] = 3;  // <= 10 ms
  agent.stats.tcp.handshake.count = 3;
  agent.stats.tcp.handshake.sum_us = 21000;
  agent.stats.health.totals.retrans_segs = 103;
  agent.stats.health.totals.drop_flow_overflow = 104;
  agent.stats.health.totals.drop_flow_rate_limited = 107;
  agent.stats.health.drops = {{"NETFILTER_DROP", 105}, {"SOCKET_RCVBUFF", 106}};
  const auto m = parseMetrics(renderMetrics(agent.registry));
  const std::map<std::string, std::string> values = {
      {"ayaflow_packets_total", "1957"},
      {"ayaflow_bytes_total", "736700"},
      {"ayaflow_active_connections", "42"},
      {"ayaflow_domains_resolved_total", "11"},
      {"ayaflow_deep_inspect_packets_total", "23"},
      {"ayaflow_deep_inspect_events_lost_total", "9"},
      {R"(ayaflow_domain_names{table="dns"})", "71"},
      {R"(ayaflow_domain_names{table="sni"})", "72"},
      {"ayaflow_domain_names_evicted_total", "73"},
      {"ayaflow_tls_streams", "74"},
      {"ayaflow_tls_stream_bytes", "75"},
      {"ayaflow_tls_streams_evicted_total", "76"},
      {R"(ayaflow_reverse_dns_lookups_total{result="success"})", "81"},
      {R"(ayaflow_reverse_dns_lookups_total{result="failure"})", "82"},
      {"ayaflow_reverse_dns_dropped_total", "83"},
      {"ayaflow_reverse_dns_cache_evicted_total", "84"},
      {"ayaflow_reverse_dns_cache_entries", "85"},
      {"ayaflow_reverse_dns_pending", "86"},
      {"ayaflow_cri_up", "0"},
      {R"(ayaflow_tcp_connections_total{result="established"})", "101"},
      {R"(ayaflow_tcp_connections_total{result="refused"})", "102"},
      {R"(ayaflow_tcp_connections_total{result="reset"})", "0"},
      {R"(ayaflow_tcp_rtt_seconds_bucket{kind="handshake",le="0.005"})", "0"},
      {R"(ayaflow_tcp_rtt_seconds_bucket{kind="handshake",le="0.01"})", "3"},
      {R"(ayaflow_tcp_rtt_seconds_bucket{kind="handshake",le="+Inf"})", "3"},
      {R"(ayaflow_tcp_rtt_seconds_count{kind="handshake"})", "3"},
      {R"(ayaflow_tcp_rtt_seconds_sum{kind="handshake"})", "0.021"},
      {R"(ayaflow_tcp_rtt_seconds_count{kind="smoothed"})", "0"},
      {R"(ayaflow_health_probe_up{probe="drops"})", "1"},
      {"ayaflow_tcp_retransmits_total", "103"},
      {R"(ayaflow_drop_flows_overflow_total{cause="map_full"})", "104"},
      {R"(ayaflow_drop_flows_overflow_total{cause="rate"})", "107"},
      {R"(ayaflow_drops_total{reason="NETFILTER_DROP"})", "105"},
      {R"(ayaflow_drops_total{reason="SOCKET_RCVBUFF"})", "106"},
      {"ayaflow_cri_errors_total", "87"},
      {"ayaflow_cri_pods", "88"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "900"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="ingress",protocol="tcp",family="ipv4"})",
       "1000"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="ingress",protocol="udp",family="ipv6"})",
       "50"},
      {R"(ayaflow_interface_packets_total{interface="eth1",direction="egress",protocol="udp",family="ipv4"})",
       "7"},
      {R"(ayaflow_interface_bytes_total{interface="eth0",direction="ingress",protocol="tcp",family="ipv4"})",
       "640000"},
      {R"(ayaflow_interface_events_lost_total{interface="eth0",direction="ingress",protocol="udp",family="ipv6"})",
       "2"},
      {R"(ayaflow_interface_super_packets_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "31"},
      {R"(ayaflow_interface_elsewhere_packets_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "23"},
      {R"(ayaflow_interface_elsewhere_bytes_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "2300"},
      {R"(ayaflow_events_lost_total{direction="ingress"})", "5"},
      {R"(ayaflow_events_lost_total{direction="egress"})", "0"},
      {"ayaflow_events_read_total", "1950"},
      {"ayaflow_events_malformed_total", "4"},
      {"ayaflow_flow_table_packets_total", "70000"},
      {"ayaflow_flow_table_overflow_total", "12"},
      {"ayaflow_connections_expired_total", "17"},
      {"ayaflow_interfaces_attached", "2"},
      {"ayaflow_interfaces_configured", "3"},
      {"ayaflow_ring_buffer_size_bytes", "262144"},
      {R"(ayaflow_pipeline_packets_dropped_total{reason="queue_full"})", "21"},
      {R"(ayaflow_pipeline_packets_dropped_total{reason="stopped"})", "22"},
      {"ayaflow_pipeline_queue_packets", "24"},
      {"ayaflow_pipeline_records_total", "1900"},
      {"ayaflow_pipeline_checkpoint_records_total", "1700"},
      {"ayaflow_storage_rows_stored_total", "1800"},
      {R"(ayaflow_storage_rows_dropped_total{reason="queue_full"})", "25"},
      {R"(ayaflow_storage_rows_dropped_total{reason="write_error"})", "1"},
      {R"(ayaflow_storage_rows_dropped_total{reason="stopped"})", "26"},
      {"ayaflow_storage_queue_rows", "31"},
      {"ayaflow_storage_rows_updated_total", "1600"},
      {"ayaflow_storage_checkpoint_records_refused_total", "27"},
      {R"(ayaflow_storage_errors_total{operation="read"})", "32"},
      {R"(ayaflow_storage_errors_total{operation="write"})", "33"},
      {R"(ayaflow_storage_queries_stopped_total{reason="timeout"})", "34"},
      {R"(ayaflow_storage_queries_stopped_total{reason="busy"})", "35"},
      {R"(ayaflow_storage_rows_deleted_total{reason="age"})", "36"},
      {R"(ayaflow_storage_rows_deleted_total{reason="size"})", "37"},
      {R"(ayaflow_storage_rows_dropped_total{reason="disk_space"})", "38"},
      {"ayaflow_storage_writes_paused", "1"},
      {"ayaflow_storage_db_size_bytes", "39"},
      {"ayaflow_storage_db_file_size_bytes", "40"},
      {"ayaflow_storage_db_size_limit_bytes", "41"},
      {"ayaflow_storage_disk_free_bytes", "42"},
      {"ayaflow_storage_disk_free_min_bytes", "43"},
      {R"(ayaflow_export_records_total{sink="clickhouse"})", "3001"},
      {R"(ayaflow_export_records_total{sink="ipfix"})", "4001"},
      {R"(ayaflow_export_bytes_total{sink="clickhouse"})", "3002"},
      {R"(ayaflow_export_errors_total{sink="clickhouse"})", "3003"},
      {R"(ayaflow_export_retried_records_total{sink="clickhouse"})", "3004"},
      {R"(ayaflow_export_spooled_records_total{sink="clickhouse"})", "3005"},
      {R"(ayaflow_export_spool_records{sink="clickhouse"})", "3006"},
      {R"(ayaflow_export_queue_depth{sink="clickhouse"})", "3007"},
      {R"(ayaflow_export_dropped_total{sink="clickhouse",reason="queue_full"})", "3008"},
      {R"(ayaflow_export_dropped_total{sink="clickhouse",reason="spool_full"})", "3009"},
      {R"(ayaflow_export_dropped_total{sink="clickhouse",reason="stopped"})", "3010"},
      {R"(ayaflow_export_dropped_total{sink="ipfix",reason="send_failed"})", "4002"},
      {R"(ayaflow_export_dropped_total{sink="ipfix",reason="queue_full"})", "0"},
      {"ayaflow_http_connections", "3"},
      {"ayaflow_http_connections_rejected_total", "5"},
      {"ayaflow_http_connections_denied_total", "6"},
      {"ayaflow_http_accept_errors_total", "8"},
      {"ayaflow_http_connections_evicted_total", "41"},
      {"ayaflow_http_connections_reserve_total", "42"},
      {"ayaflow_http_reserve_refused_total", "43"},
      {"ayaflow_http_handler_timeouts_total", "44"},
      {"ayaflow_http_responses_shed_total", "45"},
      {"ayaflow_http_response_bytes", "46"},
      {R"(ayaflow_http_request_errors_total{reason="bad_request"})", "51"},
      {R"(ayaflow_http_request_errors_total{reason="header_limit"})", "52"},
      {R"(ayaflow_http_request_errors_total{reason="header_count"})", "53"},
      {R"(ayaflow_http_request_errors_total{reason="body_limit"})", "54"},
      {R"(ayaflow_http_request_errors_total{reason="chunk_extension"})", "55"},
      {R"(ayaflow_http_request_errors_total{reason="trailer"})", "56"},
      {R"(ayaflow_http_request_errors_total{reason="timeout"})", "57"},
      {R"(ayaflow_http_request_errors_total{reason="websocket_handshake"})", "58"},
      {R"(ayaflow_http_responses_total{code="1xx"})", "12"},
      {R"(ayaflow_http_responses_total{code="2xx"})", "345"},
      {R"(ayaflow_http_responses_total{code="3xx"})", "0"},
      {R"(ayaflow_http_responses_total{code="4xx"})", "27"},
      {R"(ayaflow_http_responses_total{code="5xx"})", "2"},
      {R"(ayaflow_http_history_requests_total{result="ok"})", "91"},
      {R"(ayaflow_http_history_requests_total{result="bad_request"})", "92"},
      {R"(ayaflow_http_history_requests_total{result="busy"})", "93"},
      {R"(ayaflow_http_history_requests_total{result="timeout"})", "94"},
      {R"(ayaflow_http_history_requests_total{result="error"})", "95"},
      {"ayaflow_http_history_queries_queued", "96"},
      {"ayaflow_http_history_queries_running", "97"},
      {"ayaflow_stream_clients", "13"},
      {"ayaflow_stream_clients_connected_total", "19"},
      {"ayaflow_stream_clients_dropped_total", "2"},
      {"ayaflow_stream_frames_published_total", "61"},
      {"ayaflow_stream_frames_sent_total", "500"},
      {R"(ayaflow_build_info{version=")" AYAFLOW_TEST_VERSION R"("})", "1"},
  };
  for (const auto& [series, value] : values) {
    ASSERT_TRUE(m.has(series)) << series;
    EXPECT_EQ(m.at(series), value) << series;
  }
  const std::map<std::string, std::string> types = {
      {"ayaflow_packets_total", "counter"},
      {"ayaflow_bytes_total", "counter"},
      {"ayaflow_active_connections", "gauge"},
      {"ayaflow_domains_resolved_total", "counter"},
      {"ayaflow_deep_inspect_packets_total", "counter"},
      {"ayaflow_deep_inspect_events_lost_total", "counter"},
      {"ayaflow_domain_names", "gauge"},
      {"ayaflow_domain_names_evicted_total", "counter"},
      {"ayaflow_tls_streams", "gauge"},
      {"ayaflow_tls_stream_bytes", "gauge"},
      {"ayaflow_tls_streams_evicted_total", "counter"},
      {"ayaflow_reverse_dns_cache_entries", "gauge"},
      {"ayaflow_reverse_dns_pending", "gauge"},
      {"ayaflow_reverse_dns_cache_evicted_total", "counter"},
      {"ayaflow_reverse_dns_dropped_total", "counter"},
      {"ayaflow_reverse_dns_lookups_total", "counter"},
      {"ayaflow_interface_packets_total", "counter"},
      {"ayaflow_interface_bytes_total", "counter"},
      {"ayaflow_interface_events_lost_total", "counter"},
      {"ayaflow_interface_super_packets_total", "counter"},
      {"ayaflow_interface_elsewhere_packets_total", "counter"},
      {"ayaflow_interface_elsewhere_bytes_total", "counter"},
      {"ayaflow_events_lost_total", "counter"},
      {"ayaflow_events_read_total", "counter"},
      {"ayaflow_events_malformed_total", "counter"},
      {"ayaflow_flow_table_packets_total", "counter"},
      {"ayaflow_flow_table_overflow_total", "counter"},
      {"ayaflow_connections_expired_total", "counter"},
      {"ayaflow_connections_evicted_total", "counter"},
      {"ayaflow_connections_max", "gauge"},
      {"ayaflow_interfaces_attached", "gauge"},
      {"ayaflow_interfaces_configured", "gauge"},
      {"ayaflow_ring_buffer_size_bytes", "gauge"},
      {"ayaflow_pipeline_packets_dropped_total", "counter"},
      {"ayaflow_pipeline_queue_packets", "gauge"},
      {"ayaflow_pipeline_records_total", "counter"},
      {"ayaflow_pipeline_checkpoint_records_total", "counter"},
      {"ayaflow_storage_rows_stored_total", "counter"},
      {"ayaflow_storage_rows_dropped_total", "counter"},
      {"ayaflow_cri_up", "gauge"},
      {"ayaflow_tcp_connections_total", "counter"},
      {"ayaflow_tcp_rtt_seconds", "histogram"},
      {"ayaflow_health_probe_up", "gauge"},
      {"ayaflow_tcp_retransmits_total", "counter"},
      {"ayaflow_drop_flows_overflow_total", "counter"},
      {"ayaflow_drops_total", "counter"},
      {"ayaflow_cri_errors_total", "counter"},
      {"ayaflow_cri_pods", "gauge"},
      {"ayaflow_storage_queue_rows", "gauge"},
      {"ayaflow_storage_rows_updated_total", "counter"},
      {"ayaflow_storage_checkpoint_records_refused_total", "counter"},
      {"ayaflow_storage_errors_total", "counter"},
      {"ayaflow_storage_queries_stopped_total", "counter"},
      {"ayaflow_storage_rows_deleted_total", "counter"},
      {"ayaflow_storage_writes_paused", "gauge"},
      {"ayaflow_storage_db_size_bytes", "gauge"},
      {"ayaflow_storage_db_file_size_bytes", "gauge"},
      {"ayaflow_storage_db_size_limit_bytes", "gauge"},
      {"ayaflow_storage_disk_free_bytes", "gauge"},
      {"ayaflow_storage_disk_free_min_bytes", "gauge"},
      {"ayaflow_export_records_total", "counter"},
      {"ayaflow_export_bytes_total", "counter"},
      {"ayaflow_export_errors_total", "counter"},
      {"ayaflow_export_retried_records_total", "counter"},
      {"ayaflow_export_spooled_records_total", "counter"},
      {"ayaflow_export_spool_records", "gauge"},
      {"ayaflow_export_queue_depth", "gauge"},
      {"ayaflow_export_dropped_total", "counter"},
      {"ayaflow_http_connections", "gauge"},
      {"ayaflow_http_connections_rejected_total", "counter"},
      {"ayaflow_http_connections_denied_total", "counter"},
      {"ayaflow_http_accept_errors_total", "counter"},
      {"ayaflow_http_connections_evicted_total", "counter"},
      {"ayaflow_http_connections_reserve_total", "counter"},
      {"ayaflow_http_reserve_refused_total", "counter"},
      {"ayaflow_http_handler_timeouts_total", "counter"},
      {"ayaflow_http_responses_shed_total", "counter"},
      {"ayaflow_http_response_bytes", "gauge"},
      {"ayaflow_http_request_errors_total", "counter"},
      {"ayaflow_http_responses_total", "counter"},
      {"ayaflow_http_history_requests_total", "counter"},
      {"ayaflow_http_history_queries_queued", "gauge"},
      {"ayaflow_http_history_queries_running", "gauge"},
      {"ayaflow_stream_clients", "gauge"},
      {"ayaflow_stream_clients_connected_total", "counter"},
      {"ayaflow_stream_clients_dropped_total", "counter"},
      {"ayaflow_stream_frames_published_total", "counter"},
      {"ayaflow_stream_frames_sent_total", "counter"},
      {"ayaflow_build_info", "gauge"},
      {"process_cpu_seconds_total", "counter"},
      {"process_resident_memory_bytes", "gauge"},
      {"process_virtual_memory_bytes", "gauge"},
      {"process_open_fds", "gauge"},
      {"process_max_fds", "gauge"},
      {"process_start_time_seconds", "gauge"},
  };
  EXPECT_EQ(m.types, types);  // nothing missing, nothing extra
  for (const auto& [name, type] : types) {
    EXPECT_FALSE(m.helps.at(name).empty()) << name;
  }
}

TEST(MetricsTest, ExportFamiliesAbsentWhileEverySinkIsOff) {
  EXPECT_TRUE(exporter::exportFamilies({}).empty());
}

TEST(MetricsTest, LargeCountersAreExactUpTo2To53) {
  capture::CaptureStats s;
  s.packets = (std::uint64_t{1} << 53);
  s.bytes = (std::uint64_t{1} << 53) - 1;
  const auto m = parseMetrics(render(capture::captureFamilies(s)));
  EXPECT_EQ(m.at("ayaflow_packets_total"), "9007199254740992");
  EXPECT_EQ(m.at("ayaflow_bytes_total"), "9007199254740991");
}

TEST(MetricsTest, LabelValuesAreEscaped) {
  capture::CaptureStats s;
  s.counters = {{"we\"ird\\", 0, 6, 4, 1, 2, 0}};
  const auto m = parseMetrics(render(capture::captureFamilies(s)));
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
  const auto m = parseMetrics(render(processFamilies(p)));
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

TEST(MetricsTest, InterfaceLabels) {
  EXPECT_EQ(common::interfaceLabel(0), "other");
  const unsigned lo = if_nametoindex("lo");
  ASSERT_NE(lo, 0u);
  EXPECT_EQ(common::interfaceLabel(lo), "lo");
  EXPECT_EQ(common::interfaceLabel(0x7ffffff0), "ifindex_2147483632");
}

TEST(MetricsTest, RouteServesTheRegistryAtEveryScrapeAndTurnsAFailureInto500) {
  Router router;
  common::MetricsRegistry registry;
  std::atomic<int> calls{0};
  bool fail = false;
  registry.add([&] {
    if (fail) throw std::runtime_error("kernel read failed");
    capture::CaptureStats s;
    s.packets = static_cast<std::uint64_t>(++calls) * 100;
    return capture::captureFamilies(s);
  });
  registry.add(processMetrics());
  addMetricsRoute(router, registry);
  Request request;
  request.method = "GET";
  request.path = "/metrics";
  Response r = router.route(request);
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  auto m = parseMetrics(r.body);
  EXPECT_EQ(m.at("ayaflow_packets_total"), "100");
  EXPECT_TRUE(m.has("process_open_fds"));
  m = parseMetrics(router.route(request).body);
  EXPECT_EQ(m.at("ayaflow_packets_total"), "200");

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
