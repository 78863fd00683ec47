// SPDX-License-Identifier: MIT OR Apache-2.0
// The capture's /metrics families, built from one CaptureStats per scrape.
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/capture/capture.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/flow/names.h"

namespace ayaflow::capture {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricType;
using Families = common::MetricFamilies;

struct Sums {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t events_lost = 0;
  std::uint64_t super_packets = 0;
  std::uint64_t elsewhere_packets = 0;
  std::uint64_t elsewhere_bytes = 0;
};

void addBreakdown(Families& families, const std::vector<InterfaceCounter>& counters) {
  // Sum duplicates (two slots that map to the same labels, e.g. an interface renamed): a
  // scrape must never carry the same series twice. std::map also fixes the order.
  using Key = std::tuple<std::string, std::string, std::string, std::string>;
  std::map<Key, Sums> sums;
  for (const auto& c : counters) {
    Sums& s = sums[Key{c.interface, flow::directionLabel(c.direction),
                       flow::protocolLabel(c.protocol), flow::familyLabel(c.addr_type)}];
    s.packets += c.packets;
    s.bytes += c.bytes;
    s.events_lost += c.events_lost;
    s.super_packets += c.super_packets;
    s.elsewhere_packets += c.elsewhere_packets;
    s.elsewhere_bytes += c.elsewhere_bytes;
  }
  std::vector<ClientMetric> packets, bytes, lost, super_packets, elsewhere_packets, elsewhere_bytes;
  for (const auto& [key, s] : sums) {
    const Families::Labels labels{{"interface", std::get<0>(key)},
                                  {"direction", std::get<1>(key)},
                                  {"protocol", std::get<2>(key)},
                                  {"family", std::get<3>(key)}};
    packets.push_back(
        Families::sample(MetricType::Counter, static_cast<double>(s.packets), labels));
    bytes.push_back(Families::sample(MetricType::Counter, static_cast<double>(s.bytes), labels));
    lost.push_back(
        Families::sample(MetricType::Counter, static_cast<double>(s.events_lost), labels));
    super_packets.push_back(
        Families::sample(MetricType::Counter, static_cast<double>(s.super_packets), labels));
    elsewhere_packets.push_back(
        Families::sample(MetricType::Counter, static_cast<double>(s.elsewhere_packets), labels));
    elsewhere_bytes.push_back(
        Families::sample(MetricType::Counter, static_cast<double>(s.elsewhere_bytes), labels));
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
  families.add("ayaflow_interface_super_packets_total",
               "GSO super-packets (egress) and GRO-merged packets (ingress) the kernel program "
               "saw, by interface, direction, protocol and address family: each is counted in "
               "the packet and byte totals as the segments it stands for on the wire.",
               MetricType::Counter, std::move(super_packets));
  families.add("ayaflow_interface_elsewhere_packets_total",
               "Packets that passed this interface's hook but are counted at another hook of the "
               "node (each packet is counted once per node, where it enters the node or where "
               "the node sends it), by interface, direction, protocol and address family. "
               "Packets seen here = ayaflow_interface_packets_total + this.",
               MetricType::Counter, std::move(elsewhere_packets));
  families.add("ayaflow_interface_elsewhere_bytes_total",
               "IP bytes of ayaflow_interface_elsewhere_packets_total.", MetricType::Counter,
               std::move(elsewhere_bytes));
}

}  // namespace

std::vector<prometheus::MetricFamily> captureFamilies(const CaptureStats& s) {
  Families f;
  f.counter("ayaflow_packets_total",
            "TCP/UDP packets seen at ingress and egress of the attached interfaces, counted "
            "exactly by the kernel program (= /api/stats total_packets).",
            s.packets);
  f.counter("ayaflow_bytes_total",
            "IP bytes of those packets (IPv4 total length, IPv6 payload length + 40), counted "
            "exactly by the kernel program (= /api/stats total_bytes).",
            s.bytes);
  f.gauge("ayaflow_active_connections", "Connections in the live connection map.",
          static_cast<double>(s.active_connections));
  f.counter("ayaflow_deep_inspect_events_lost_total",
            "Payload events the kernel program could not queue (payload ring buffer full).",
            s.payload_events_lost);

  addBreakdown(f, s.counters);
  f.labelledCounter("ayaflow_events_lost_total",
                    "Packet events the kernel program could not queue because the ring buffer "
                    "was full, by direction; the packet counters above still include those "
                    "packets.",
                    "direction",
                    {{"ingress", s.events_lost[AYAFLOW_DIR_INGRESS]},
                     {"egress", s.events_lost[AYAFLOW_DIR_EGRESS]}});

  f.counter("ayaflow_events_read_total", "Packet events read from the ring buffer and decoded.",
            s.events_read);
  f.counter("ayaflow_events_malformed_total",
            "Ring-buffer records and flow-table entries rejected by the decoder.",
            s.events_malformed);
  f.counter("ayaflow_flow_table_packets_total",
            "Aggregated mode: packets collected from the kernel flow tables.",
            s.flow_table_packets);
  f.counter("ayaflow_flow_table_overflow_total",
            "Aggregated mode: packets sent as events because the kernel flow table was full "
            "(still counted exactly, at a higher cost).",
            s.flow_table_overflow);
  f.counter("ayaflow_connections_expired_total",
            "Connections removed from the live map after the idle timeout.", s.connections_expired);
  f.counter("ayaflow_connections_evicted_total",
            "Connections removed from the live map to make room for a new one at the cap "
            "(max_connections), the idlest first; totals stay exact, an evicted connection's "
            "later packets start a new entry.",
            s.connections_evicted);
  f.gauge("ayaflow_connections_max", "The cap on the live connection map (max_connections).",
          static_cast<double>(s.max_connections));

  f.gauge("ayaflow_interfaces_attached", "Interfaces the kernel program is attached to.",
          static_cast<double>(s.interfaces_attached));
  f.gauge("ayaflow_interfaces_configured",
          "Interfaces selected by --interface (names, and present interfaces matching its "
          "patterns); more than attached while one is missing.",
          static_cast<double>(s.interfaces_configured));
  f.gauge("ayaflow_ring_buffer_size_bytes", "Size of the kernel event ring buffer.",
          static_cast<double>(s.ring_buffer_size));
  return f.take();
}

}  // namespace ayaflow::capture
