// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// Helpers for tests of /metrics: component counters with distinct values, and a small
// parser of the Prometheus text format (enough for what TextSerializer writes).

#include <cstdint>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/capture/capture.h"

namespace ayaflow::api::fake {

/// Capture counters whose every value is distinct, so a family wired to the wrong field
/// shows. Totals are the sums of the breakdown, as in the agent (one kernel read).
inline capture::CaptureStats distinctCaptureStats() {
  capture::CaptureStats s;
  s.counters = {
      {"eth0", 0, 6, 4, 1000, 640000, 3},
      {"eth0", 1, 6, 4, 900, 90000, 0, 31, 23, 2300},
      {"eth0", 0, 17, 6, 50, 6000, 2},
      {"eth1", 1, 17, 4, 7, 700, 0},
  };
  for (const auto& c : s.counters) {
    s.packets += c.packets;
    s.bytes += c.bytes;
    s.events_lost[c.direction] += c.events_lost;
  }
  s.active_connections = 42;
  s.connections_expired = 17;
  s.payload_events_lost = 9;
  s.events_read = 1950;
  s.events_malformed = 4;
  s.flow_table_packets = 70000;
  s.flow_table_overflow = 12;
  s.interfaces_attached = 2;
  s.interfaces_configured = 3;
  s.ring_buffer_size = 262144;
  return s;
}

inline HttpServerStats distinctHttpStats() {
  HttpServerStats s;
  s.active_connections = 3;
  s.rejected_connections = 5;
  s.denied_connections = 6;
  s.evicted_connections = 41;
  s.reserve_connections = 42;
  s.reserve_refused = 43;
  s.handler_timeouts = 44;
  s.responses_shed = 45;
  s.response_bytes = 46;
  s.accept_errors = 8;
  s.responses = {12, 345, 0, 27, 2};
  s.request_errors = {51, 52, 53, 54, 55, 56, 57, 58};
  return s;
}

inline StreamHubStats distinctStreamStats() {
  StreamHubStats s;
  s.clients = 13;
  s.clients_total = 19;
  s.clients_dropped = 2;
  s.frames_published = 61;
  s.frames_sent = 500;
  return s;
}

/// Parsed exposition text: series ("name{labels}" exactly as written) -> value text, and
/// family name -> TYPE. Throws on a line it does not understand or a repeated series.
struct ParsedMetrics {
  std::map<std::string, std::string> values;
  std::map<std::string, std::string> types;
  std::map<std::string, std::string> helps;

  bool has(const std::string& series) const { return values.count(series) != 0; }
  const std::string& at(const std::string& series) const {
    const auto it = values.find(series);
    if (it == values.end()) throw std::out_of_range("no series " + series);
    return it->second;
  }
};

inline ParsedMetrics parseMetrics(const std::string& text) {
  ParsedMetrics out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0) {
      const auto space = line.find(' ', 7);
      out.helps[line.substr(7, space - 7)] =
          space == std::string::npos ? "" : line.substr(space + 1);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      const auto space = line.find(' ', 7);
      if (space == std::string::npos) throw std::runtime_error("bad TYPE line: " + line);
      out.types[line.substr(7, space - 7)] = line.substr(space + 1);
      continue;
    }
    if (line[0] == '#') throw std::runtime_error("unexpected comment: " + line);
    const auto space = line.rfind(' ');
    if (space == std::string::npos) throw std::runtime_error("bad sample line: " + line);
    const std::string series = line.substr(0, space);
    if (!out.values.emplace(series, line.substr(space + 1)).second) {
      throw std::runtime_error("repeated series: " + series);
    }
  }
  return out;
}

}  // namespace ayaflow::api::fake
