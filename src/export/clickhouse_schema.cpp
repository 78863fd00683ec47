// SPDX-License-Identifier: MIT OR Apache-2.0
// The ClickHouse table and its RowBinary rows (little-endian fixed-width numbers, strings
// as a LEB128 length and the bytes; Enum8 as its Int8 value; DateTime as UInt32 seconds).
#include "ayaflow/export/clickhouse_schema.h"

#include <cstring>

#include "ayaflow/flow/packet.h"

namespace ayaflow::exporter {
namespace {

template <typename T>
void put(std::string& out, T value) {
  char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));  // x86-64 and arm64 are little-endian, as RowBinary
  out.append(raw, sizeof(T));
}

void putString(std::string& out, const char* data, std::size_t len) {
  std::size_t n = len;
  do {
    auto byte = static_cast<std::uint8_t>(n & 0x7f);
    n >>= 7;
    if (n != 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (n != 0);
  out.append(data, len);
}

void putString(std::string& out, const std::string& s) { putString(out, s.data(), s.size()); }

void putAddress(std::string& out, const flow::IpAddress& a) {
  char text[flow::kMaxAddressText];
  putString(out, text, flow::formatAddress(a, text));
}

/// One end's names: hostname, namespace, pod, workload, workload kind, node.
void putEnd(std::string& out, const enrich::EndpointNames* names) {
  static const std::string kNone;
  const enrich::PodName* pod = names != nullptr ? names->pod.get() : nullptr;
  putString(out, names != nullptr && names->hostname ? *names->hostname : kNone);
  putString(out, pod != nullptr ? pod->ns : kNone);
  putString(out, pod != nullptr ? pod->pod : kNone);
  putString(out, pod != nullptr ? pod->workload : kNone);
  putString(out, pod != nullptr ? pod->workload_kind : kNone);
  putString(out, names != nullptr && names->node ? *names->node : kNone);
}

}  // namespace

std::string clickHouseCreateTable(const std::string& database, const std::string& table) {
  return "CREATE TABLE IF NOT EXISTS " + database + "." + table +
         " (\n"
         "  start DateTime('UTC'),\n"
         "  start_ms Int64,\n"
         "  end_ms Int64,\n"
         "  node String,\n"
         "  interface String,\n"
         "  direction Enum8('ingress' = 0, 'egress' = 1),\n"
         "  protocol UInt8,\n"
         "  src String,\n"
         "  dst String,\n"
         "  src_port UInt16,\n"
         "  dst_port UInt16,\n"
         "  packets UInt64,\n"
         "  bytes UInt64,\n"
         "  tcp_flags UInt16,\n"
         "  tcp_state Enum8('unknown' = 0, 'opening' = 1, 'established' = 2, 'closed' = 3, "
         "'reset' = 4, 'refused' = 5, 'unanswered' = 6),\n"
         "  rtt_us UInt32,\n"
         "  rtt_kind Enum8('none' = 0, 'handshake' = 1, 'smoothed' = 2),\n"
         "  retransmits UInt32,\n"
         "  drops UInt32,\n"
         "  domain String,\n"
         "  src_hostname String,\n"
         "  src_namespace String,\n"
         "  src_pod String,\n"
         "  src_workload String,\n"
         "  src_workload_kind String,\n"
         "  src_node String,\n"
         "  dst_hostname String,\n"
         "  dst_namespace String,\n"
         "  dst_pod String,\n"
         "  dst_workload String,\n"
         "  dst_workload_kind String,\n"
         "  dst_node String,\n"
         "  batch_id UInt64\n"
         ") ENGINE = MergeTree\n"
         "PARTITION BY toYYYYMMDD(start)\n"
         "ORDER BY (start, node, src, dst)";
}

const char* clickHouseColumns() {
  return "start, start_ms, end_ms, node, interface, direction, protocol, src, dst, src_port, "
         "dst_port, packets, bytes, tcp_flags, tcp_state, rtt_us, rtt_kind, retransmits, drops, "
         "domain, src_hostname, src_namespace, src_pod, src_workload, src_workload_kind, "
         "src_node, dst_hostname, dst_namespace, dst_pod, dst_workload, dst_workload_kind, "
         "dst_node, batch_id";
}

void appendRowBinary(const pipeline::FlowRecord& r, const RowContext& c, std::string& out) {
  static const std::string kNone;
  const std::int64_t start_s = r.first_ms >= 0 ? r.first_ms / 1000 : 0;
  put<std::uint32_t>(out, static_cast<std::uint32_t>(start_s));
  put<std::int64_t>(out, r.first_ms);
  put<std::int64_t>(out, r.last_ms);
  putString(out, c.node != nullptr ? *c.node : kNone);
  putString(out, c.interface != nullptr ? *c.interface : kNone);
  put<std::int8_t>(out, static_cast<std::int8_t>(r.direction));
  put<std::uint8_t>(out, r.protocol);
  putAddress(out, r.src);
  putAddress(out, r.dst);
  put<std::uint16_t>(out, r.src_port);
  put<std::uint16_t>(out, r.dst_port);
  put<std::uint64_t>(out, r.packets);
  put<std::uint64_t>(out, r.bytes);
  put<std::uint16_t>(out, r.tcp_flags);
  put<std::int8_t>(out, static_cast<std::int8_t>(r.tcp_state));
  put<std::uint32_t>(out, r.rtt_us);
  put<std::int8_t>(out, static_cast<std::int8_t>(r.rtt_kind));
  put<std::uint32_t>(out, r.retransmits);
  put<std::uint32_t>(out, r.drops);
  putString(out, r.names && r.names->domain ? *r.names->domain : kNone);
  putEnd(out, r.srcNames());
  putEnd(out, r.dstNames());
  put<std::uint64_t>(out, c.batch_id);
}

}  // namespace ayaflow::exporter
