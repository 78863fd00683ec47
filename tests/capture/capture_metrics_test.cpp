// SPDX-License-Identifier: MIT OR Apache-2.0
// The capture's /metrics families from given stats: names, types, labels, exact values.
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <map>

#include "ayaflow/capture/capture.h"

namespace ayaflow::capture {
namespace {

CaptureStats distinctStats() {
  CaptureStats s;
  s.counters = {
      {"eth0", 0, 6, 4, 1000, 640000, 3}, {"eth0", 1, 6, 4, 900, 90000, 0, 31},
      {"eth0", 0, 17, 6, 50, 6000, 2},    {"eth1", 1, 17, 4, 7, 700, 0},
      {"eth1", 1, 17, 4, 3, 300, 1, 2},  // same labels (an interface renamed): summed
  };
  for (const auto& c : s.counters) {
    s.packets += c.packets;
    s.bytes += c.bytes;
    s.events_lost[c.direction] += c.events_lost;
  }
  s.payload_events_lost = 9;
  s.flow_table_overflow = 12;
  s.events_read = 1950;
  s.events_malformed = 4;
  s.flow_table_packets = 70000;
  s.active_connections = 42;
  s.connections_expired = 17;
  s.connections_evicted = 23;
  s.max_connections = 180000;
  s.interfaces_attached = 2;
  s.interfaces_configured = 3;
  s.ring_buffer_size = 262144;
  return s;
}

std::map<std::string, std::string> series(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    EXPECT_TRUE(out.emplace(line.substr(0, space), line.substr(space + 1)).second) << line;
  }
  return out;
}

TEST(CaptureMetrics, EveryFamilyWithExactValues) {
  const std::string text = prometheus::TextSerializer{}.Serialize(captureFamilies(distinctStats()));
  const auto m = series(text);
  const std::map<std::string, std::string> expected = {
      {"ayaflow_packets_total", "1960"},
      {"ayaflow_bytes_total", "737000"},
      {"ayaflow_active_connections", "42"},
      {"ayaflow_deep_inspect_events_lost_total", "9"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="ingress",protocol="tcp",family="ipv4"})",
       "1000"},
      {R"(ayaflow_interface_packets_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "900"},
      {R"(ayaflow_interface_bytes_total{interface="eth0",direction="ingress",protocol="udp",family="ipv6"})",
       "6000"},
      {R"(ayaflow_interface_packets_total{interface="eth1",direction="egress",protocol="udp",family="ipv4"})",
       "10"},
      {R"(ayaflow_interface_events_lost_total{interface="eth1",direction="egress",protocol="udp",family="ipv4"})",
       "1"},
      {R"(ayaflow_interface_super_packets_total{interface="eth0",direction="egress",protocol="tcp",family="ipv4"})",
       "31"},
      {R"(ayaflow_interface_super_packets_total{interface="eth1",direction="egress",protocol="udp",family="ipv4"})",
       "2"},
      {R"(ayaflow_events_lost_total{direction="ingress"})", "5"},
      {R"(ayaflow_events_lost_total{direction="egress"})", "1"},
      {"ayaflow_events_read_total", "1950"},
      {"ayaflow_events_malformed_total", "4"},
      {"ayaflow_flow_table_packets_total", "70000"},
      {"ayaflow_flow_table_overflow_total", "12"},
      {"ayaflow_connections_expired_total", "17"},
      {"ayaflow_connections_evicted_total", "23"},
      {"ayaflow_connections_max", "180000"},
      {"ayaflow_interfaces_attached", "2"},
      {"ayaflow_interfaces_configured", "3"},
      {"ayaflow_ring_buffer_size_bytes", "262144"},
  };
  for (const auto& [name, value] : expected) {
    ASSERT_TRUE(m.count(name)) << name << " missing in\n" << text;
    EXPECT_EQ(m.at(name), value) << name;
  }
  EXPECT_NE(text.find("# TYPE ayaflow_packets_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE ayaflow_active_connections gauge"), std::string::npos);
}

TEST(CaptureMetrics, NoBreakdownLeavesItsFamiliesOutButKeepsTheTotals) {
  const std::string text = prometheus::TextSerializer{}.Serialize(captureFamilies(CaptureStats{}));
  EXPECT_EQ(text.find("ayaflow_interface_packets_total"), std::string::npos);
  EXPECT_NE(text.find("ayaflow_packets_total 0"), std::string::npos);
  EXPECT_NE(text.find("ayaflow_active_connections 0"), std::string::npos);
}

}  // namespace
}  // namespace ayaflow::capture
