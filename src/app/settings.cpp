// SPDX-License-Identifier: MIT OR Apache-2.0
#include "settings.h"

#include <chrono>
#include <limits>

namespace ayaflow::app::detail {
namespace {

constexpr std::uint32_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

std::string yesNo(bool value) { return value ? "true" : "false"; }

// clang-format off
const Setting kSettings[] = {
  {"-i,--interface", "--interface", "AYAFLOW_INTERFACE", "interface", ValueType::kList,
   "NAME[,NAME...]",
   "Interface(s) to attach to: names, shell patterns (veth*), or auto (pod interfaces and "
   "uplinks of a Kubernetes node); repeat or comma-separate",
   [](const Raw& r, Config& c) { c.capture.interfaces.include = parseInterfaces(r); },
   [](const Config& c) { return joined(c.capture.interfaces.include); }},
  {"--exclude-interface", "--exclude-interface", "AYAFLOW_EXCLUDE_INTERFACE", "exclude_interface",
   ValueType::kList, "NAME[,NAME...]",
   "Interface(s) never attached to, names or shell patterns; repeat or comma-separate",
   [](const Raw& r, Config& c) { c.capture.interfaces.exclude = parseInterfaces(r); },
   [](const Config& c) {
     return c.capture.interfaces.exclude.empty() ? std::string("none")
                                                 : joined(c.capture.interfaces.exclude);
   }},
  {"-p,--port", "--port", "AYAFLOW_PORT", "port", ValueType::kInteger, "PORT", "HTTP port, 1-65535",
   [](const Raw& r, Config& c) { c.http.port = parsePort(r.label, r.single()); },
   [](const Config& c) { return std::to_string(c.http.port); }},
  {"--listen-address", "--listen-address", "AYAFLOW_LISTEN_ADDRESS", "listen_address",
   ValueType::kString, "ADDR", "HTTP bind address, IPv4 or IPv6 literal",
   [](const Raw& r, Config& c) { c.http.address = parseListenAddress(r.label, r.single()); },
   [](const Config& c) { return c.http.address; }},
  {"--db-path", "--db-path", "AYAFLOW_DB_PATH", "db_path", ValueType::kString, "FILE",
   "SQLite database file",
   [](const Raw& r, Config& c) { c.store.db_path = parseDbPath(r.label, r.single()); },
   [](const Config& c) { return c.store.db_path; }},
  {"--connection-timeout", "--connection-timeout", "AYAFLOW_CONNECTION_TIMEOUT",
   "connection_timeout", ValueType::kInteger, "SECONDS",
   "Idle seconds before a live connection is dropped, >= 1",
   [](const Raw& r, Config& c) {
     c.capture.connection_timeout_s = static_cast<std::uint32_t>(
         parseRange(r.label, r.single(), 1, kMaxU32, "a timeout in seconds"));
   },
   [](const Config& c) { return std::to_string(c.capture.connection_timeout_s); }},
  {"--data-retention", "--data-retention", "AYAFLOW_DATA_RETENTION", "data_retention_seconds",
   ValueType::kInteger, "SECONDS", "Delete stored rows older than this, >= 1",
   [](const Raw& r, Config& c) {
     c.store.retention_s = parseRange(r.label, r.single(), 1, kMaxRetentionS,
                                      "a retention in seconds", "; omit it to keep rows forever");
   },
   [](const Config& c) {
     return c.store.retention_s ? std::to_string(*c.store.retention_s) : "keep forever";
   }},
  {"--max-db-size", "--max-db-size", "AYAFLOW_MAX_DB_SIZE", "max_db_size", ValueType::kSize,
   "BYTES",
   "Disk budget of the database (its -wal file included): past it the oldest rows are deleted; "
   "K/M/G/T suffix, 0 = unlimited, else at least 4M",
   [](const Raw& r, Config& c) { c.store.max_db_bytes = parseDbSize(r.label, r.single()); },
   [](const Config& c) {
     return c.store.max_db_bytes == 0 ? std::string("unlimited") : formatSize(c.store.max_db_bytes);
   }},
  {"--min-free-disk", "--min-free-disk", "AYAFLOW_MIN_FREE_DISK", "min_free_disk", ValueType::kSize,
   "BYTES|N%",
   "Free space kept on the database's file system: below it writes pause (rows dropped and "
   "counted) until space returns; bytes (K/M/G/T) or a percentage 0%-50%, 0 = no floor",
   [](const Raw& r, Config& c) {
     const MinFreeDisk m = parseMinFreeDisk(r.label, r.single());
     c.store.min_free_bytes = m.bytes;
     c.store.min_free_percent = m.percent;
   },
   [](const Config& c) {
     const std::uint64_t b = c.store.min_free_bytes;
     const std::uint32_t p = c.store.min_free_percent;
     if (b == 0 && p == 0) return std::string("none");
     if (b == 0) return std::to_string(p) + "%";
     if (p == 0) return formatSize(b);
     return std::to_string(p) + "%, at most " + formatSize(b);
   }},
  {"--aggregation-window", "--aggregation-window", "AYAFLOW_AGGREGATION_WINDOW",
   "aggregation_window_seconds", ValueType::kInteger, "SECONDS",
   "0 = one row per packet; N = one row per flow per N seconds",
   [](const Raw& r, Config& c) {
     c.pipeline.aggregation_window_s = static_cast<std::uint32_t>(
         parseRange(r.label, r.single(), 0, kMaxU32, "a window in seconds"));
   },
   [](const Config& c) { return std::to_string(c.pipeline.aggregation_window_s); }},
  {"--checkpoint-interval", "--checkpoint-interval", "AYAFLOW_CHECKPOINT_INTERVAL",
   "checkpoint_interval_seconds", ValueType::kInteger, "SECONDS",
   "Aggregated mode: write open windows' counts this often (what a crash can lose), "
   "0 = only when a window ends, 0-3600",
   [](const Raw& r, Config& c) {
     c.pipeline.checkpoint_interval = std::chrono::seconds(
         parseRange(r.label, r.single(), 0, 3600, "an interval in seconds"));
   },
   [](const Config& c) {
     return std::to_string(
         std::chrono::duration_cast<std::chrono::seconds>(c.pipeline.checkpoint_interval)
             .count());
   }},
  {"--allowed-ips", "--allowed-ips", "AYAFLOW_ALLOWED_IPS", "allowed_ips", ValueType::kList,
   "CIDR[,CIDR...]", "Only these networks may reach the HTTP API; repeat or comma-separate",
   [](const Raw& r, Config& c) { c.http.allowed_ips = parseCidrs(r); },
   [](const Config& c) {
     if (c.http.allowed_ips.empty()) return std::string("everyone");
     std::string out;
     for (const auto& cidr : c.http.allowed_ips) out += (out.empty() ? "" : ",") + cidr.toString();
     return out;
   }},
  {"--http-max-connections", "--http-max-connections", "AYAFLOW_HTTP_MAX_CONNECTIONS",
   "http_max_connections", ValueType::kInteger, "N",
   "HTTP connections at once (16 of them kept for /api/health and /metrics), 64-65536",
   [](const Raw& r, Config& c) {
     c.http.max_connections = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 64, 65536, "a number of connections"));
   },
   [](const Config& c) { return std::to_string(c.http.max_connections); }},
  {"--http-max-connections-per-client", "--http-max-connections-per-client",
   "AYAFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT", "http_max_connections_per_client",
   ValueType::kInteger, "N", "HTTP connections per client address, 0 = no limit, 0-65536",
   [](const Raw& r, Config& c) {
     c.http.max_connections_per_client = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 0, 65536, "a number of connections"));
   },
   [](const Config& c) { return std::to_string(c.http.max_connections_per_client); }},
  {"--history-query-timeout", "--history-query-timeout", "AYAFLOW_HISTORY_QUERY_TIMEOUT",
   "history_query_timeout_ms", ValueType::kInteger, "MS",
   "Time budget of one /api/history query (then 503), 100-60000 ms",
   [](const Raw& r, Config& c) {
     c.store.query_timeout = std::chrono::milliseconds(
         parseRange(r.label, r.single(), 100, 60000, "a time in milliseconds"));
   },
   [](const Config& c) { return std::to_string(c.store.query_timeout.count()); }},
  {"-q,--quiet", "--quiet", "AYAFLOW_QUIET", "quiet", ValueType::kBoolean, nullptr,
   "Log errors only",
   [](const Raw& r, Config& c) { c.log.quiet = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.log.quiet); }},
  {"-v,--verbose", "--verbose", "AYAFLOW_VERBOSE", "verbose", ValueType::kBoolean, nullptr,
   "Debug logging, libbpf messages included",
   [](const Raw& r, Config& c) { c.log.verbose = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.log.verbose); }},
  {"--deep-inspect", "--deep-inspect", "AYAFLOW_DEEP_INSPECT", "deep_inspect", ValueType::kBoolean,
   nullptr, "Extract domains from DNS and TLS SNI",
   [](const Raw& r, Config& c) { c.capture.deep_inspect = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.capture.deep_inspect); }},
  {"--enable-ipv6", "--enable-ipv6", "AYAFLOW_ENABLE_IPV6", "enable_ipv6", ValueType::kBoolean,
   nullptr, "Capture IPv6 as well as IPv4",
   [](const Raw& r, Config& c) { c.capture.enable_ipv6 = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.capture.enable_ipv6); }},
  {"--decapsulate", "--decapsulate", "AYAFLOW_DECAPSULATE", "decapsulate", ValueType::kBoolean,
   nullptr, "Count VXLAN, Geneve and IP-in-IP packets by their inner headers (default true)",
   [](const Raw& r, Config& c) { c.capture.decapsulate = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.capture.decapsulate); }},
  {"--tcp-state", "--tcp-state", "AYAFLOW_TCP_STATE", "tcp_state", ValueType::kBoolean, nullptr,
   "TCP flags, connection states and handshake RTT from the capture hook (default true)",
   [](const Raw& r, Config& c) { c.capture.tcp_state = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.capture.tcp_state); }},
  {"--tcp-rtt", "--tcp-rtt", "AYAFLOW_TCP_RTT", "tcp_rtt", ValueType::kBoolean, nullptr,
   "Kernel smoothed RTT of local TCP sockets, sampled about once a second per socket by a "
   "tracing probe (default true)",
   [](const Raw& r, Config& c) { c.health.rtt = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.health.rtt); }},
  {"--tcp-retransmits", "--tcp-retransmits", "AYAFLOW_TCP_RETRANSMITS", "tcp_retransmits",
   ValueType::kBoolean, nullptr,
   "TCP retransmissions per connection from the tcp_retransmit_skb tracepoint (default true)",
   [](const Raw& r, Config& c) { c.health.retransmits = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.health.retransmits); }},
  {"--drop-reasons", "--drop-reasons", "AYAFLOW_DROP_REASONS", "drop_reasons", ValueType::kBoolean,
   nullptr,
   "Packets the kernel drops, with its reason, per flow from the kfree_skb tracepoint "
   "(default true)",
   [](const Raw& r, Config& c) { c.health.drops = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.health.drops); }},
  {"--drop-flow-budget", "--drop-flow-budget", "AYAFLOW_DROP_FLOW_BUDGET", "drop_flow_budget",
   ValueType::kInteger, "N",
   "Drops attributed to their flow per CPU per second, 0-1000000 (0 = no limit); past it, in a "
   "drop storm, drops are counted per reason only, which keeps the probe's cost per packet low "
   "(default 10000)",
   [](const Raw& r, Config& c) {
     c.health.drop_flow_budget = static_cast<std::uint32_t>(
         parseRange(r.label, r.single(), 0, 1000000, "a number of drops"));
   },
   [](const Config& c) { return std::to_string(c.health.drop_flow_budget); }},
  {"--resolve-dns", "--resolve-dns", "AYAFLOW_RESOLVE_DNS", "resolve_dns", ValueType::kBoolean,
   nullptr, "Reverse-resolve addresses",
   [](const Raw& r, Config& c) { c.resolve_dns = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.resolve_dns); }},
  {"--cri-socket", "--cri-socket", "AYAFLOW_CRI_SOCKET", "cri_socket", ValueType::kString, "PATH",
   "Container runtime (CRI) socket that names pods: auto (containerd's or CRI-O's default "
   "socket), a path, or none",
   [](const Raw& r, Config& c) { c.pods.cri_socket = parseCriSocket(r.label, r.single()); },
   [](const Config& c) { return c.pods.cri_socket; }},
  {"--node-name", "--node-name", "AYAFLOW_NODE_NAME", "node_name", ValueType::kString, "NAME",
   "This node's name for its own addresses",
   [](const Raw& r, Config& c) { c.pods.node_name = parseNodeName(r.label, r.single()); },
   [](const Config& c) {
     return c.pods.node_name.empty() ? std::string("the host name") : c.pods.node_name;
   }},
  {"--workload-series-limit", "--workload-series-limit", "AYAFLOW_WORKLOAD_SERIES_LIMIT",
   "workload_series_limit", ValueType::kInteger, "N",
   "Most (workload, peer) label sets of the ayaflow_workload_* metrics, 0-10000; beyond it their "
   "traffic is summed into the series labelled _other",
   [](const Raw& r, Config& c) {
     c.workload_series_limit = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 0, 10000, "a number of series"));
   },
   [](const Config& c) { return std::to_string(c.workload_series_limit); }},
  {"--ring-buffer-size", "--ring-buffer-size", "AYAFLOW_RING_BUFFER_SIZE", "ring_buffer_size",
   ValueType::kSize, "BYTES", "Ring buffer size: a power of two from 4K to 1G, K/M/G suffix allowed",
   [](const Raw& r, Config& c) {
     c.capture.ring_buffer_size = parseRingBufferSize(r.label, r.single());
   },
   [](const Config& c) { return formatSize(c.capture.ring_buffer_size); }},
  {"--flow-table-size", "--flow-table-size", "AYAFLOW_FLOW_TABLE_SIZE", "flow_table_size",
   ValueType::kInteger, "FLOWS",
   "Aggregated mode: flows per kernel flow table (two are kept), 1024-1048576",
   [](const Raw& r, Config& c) {
     c.capture.flow_table_size = static_cast<std::uint32_t>(
         parseRange(r.label, r.single(), kMinFlowTable, kMaxFlowTable, "a number of flows"));
   },
   [](const Config& c) { return std::to_string(c.capture.flow_table_size); }},
  {"--max-live-connections", "--max-live-connections", "AYAFLOW_MAX_LIVE_CONNECTIONS",
   "max_live_connections", ValueType::kInteger, "N",
   "Live connections kept; past it the idlest are evicted, 1024-4194304",
   [](const Raw& r, Config& c) {
     c.capture.max_connections = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 1024, 4194304, "a number of connections"));
   },
   [](const Config& c) { return std::to_string(c.capture.max_connections); }},
  {"--max-domain-names", "--max-domain-names", "AYAFLOW_MAX_DOMAIN_NAMES", "max_domain_names",
   ValueType::kInteger, "N", "Deep inspection: names kept from DNS and from SNI (each), 256-1048576",
   [](const Raw& r, Config& c) {
     const auto n = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 256, 1048576, "a number of names"));
     c.inspection.domains.max_dns_entries = n;
     c.inspection.domains.max_sni_entries = n;
   },
   [](const Config& c) { return std::to_string(c.inspection.domains.max_dns_entries); }},
  {"--reverse-dns-cache-size", "--reverse-dns-cache-size", "AYAFLOW_REVERSE_DNS_CACHE_SIZE",
   "reverse_dns_cache_size", ValueType::kInteger, "N",
   "Reverse DNS: addresses cached, 256-1048576",
   [](const Raw& r, Config& c) {
     c.resolver.max_entries = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 256, 1048576, "a number of addresses"));
   },
   [](const Config& c) { return std::to_string(c.resolver.max_entries); }},
  {"--attach-mode", "--attach-mode", "AYAFLOW_ATTACH_MODE", "attach_mode", ValueType::kString,
   "MODE", "auto, tcx (kernel >= 6.6) or tc",
   [](const Raw& r, Config& c) { c.capture.attach_mode = parseAttachMode(r.label, r.single()); },
   [](const Config& c) { return std::string(bpf::toString(c.capture.attach_mode)); }},
  // ---- flow export (docs/export.md) ----
  {"--clickhouse-url", "--clickhouse-url", "AYAFLOW_CLICKHOUSE_URL", "clickhouse_url",
   ValueType::kString, "URL",
   "Export flow records to this ClickHouse HTTP interface (http://host:8123, https://...); "
   "empty = off",
   [](const Raw& r, Config& c) { c.clickhouse.url = parseExportUrl(r.label, r.single()); },
   [](const Config& c) { return c.clickhouse.url.empty() ? std::string("off") : c.clickhouse.url; }},
  {"--clickhouse-database", "--clickhouse-database", "AYAFLOW_CLICKHOUSE_DATABASE",
   "clickhouse_database", ValueType::kString, "NAME", "ClickHouse database of the flow table",
   [](const Raw& r, Config& c) { c.clickhouse.database = parseSqlName(r.label, r.single()); },
   [](const Config& c) { return c.clickhouse.database; }},
  {"--clickhouse-table", "--clickhouse-table", "AYAFLOW_CLICKHOUSE_TABLE", "clickhouse_table",
   ValueType::kString, "NAME", "ClickHouse table the flow records go to",
   [](const Raw& r, Config& c) { c.clickhouse.table = parseSqlName(r.label, r.single()); },
   [](const Config& c) { return c.clickhouse.table; }},
  {"--clickhouse-user", "--clickhouse-user", "AYAFLOW_CLICKHOUSE_USER", "clickhouse_user",
   ValueType::kString, "NAME", "ClickHouse user (the password comes from a file or "
   "AYAFLOW_CLICKHOUSE_PASSWORD, never a flag)",
   [](const Raw& r, Config& c) { c.clickhouse.user = r.single(); },
   [](const Config& c) { return c.clickhouse.user.empty() ? std::string("default") : c.clickhouse.user; }},
  {"--clickhouse-password-file", "--clickhouse-password-file",
   "AYAFLOW_CLICKHOUSE_PASSWORD_FILE", "clickhouse_password_file", ValueType::kString, "FILE",
   "File holding the ClickHouse password (first line)",
   [](const Raw& r, Config& c) { c.clickhouse_password_file = r.single(); },
   [](const Config& c) {
     return c.clickhouse_password_file.empty() ? std::string("none") : c.clickhouse_password_file;
   }},
  {"--clickhouse-ca-file", "--clickhouse-ca-file", "AYAFLOW_CLICKHOUSE_CA_FILE",
   "clickhouse_ca_file", ValueType::kString, "FILE",
   "https: CA certificates (PEM) to verify the ClickHouse server with",
   [](const Raw& r, Config& c) { c.clickhouse.ca_file = r.single(); },
   [](const Config& c) {
     return c.clickhouse.ca_file.empty() ? std::string("the system's") : c.clickhouse.ca_file;
   }},
  {"--clickhouse-create-table", "--clickhouse-create-table", "AYAFLOW_CLICKHOUSE_CREATE_TABLE",
   "clickhouse_create_table", ValueType::kBoolean, nullptr,
   "Create the ClickHouse table (CREATE TABLE IF NOT EXISTS) at start-up",
   [](const Raw& r, Config& c) { c.clickhouse.create_table = parseBool(r.label, r.single()); },
   [](const Config& c) { return yesNo(c.clickhouse.create_table); }},
  {"--clickhouse-retention-days", "--clickhouse-retention-days",
   "AYAFLOW_CLICKHOUSE_RETENTION_DAYS", "clickhouse_retention_days", ValueType::kInteger, "DAYS",
   "Drop ClickHouse daily partitions older than this, 1-36500",
   [](const Raw& r, Config& c) {
     c.clickhouse.retention_days =
         static_cast<std::uint32_t>(parseRange(r.label, r.single(), 1, 36500, "a number of days"));
   },
   [](const Config& c) {
     return c.clickhouse.retention_days ? std::to_string(*c.clickhouse.retention_days)
                                        : std::string("keep forever");
   }},
  {"--clickhouse-flush-interval", "--clickhouse-flush-interval",
   "AYAFLOW_CLICKHOUSE_FLUSH_INTERVAL", "clickhouse_flush_interval_ms", ValueType::kInteger, "MS",
   "Longest a record waits for a fuller ClickHouse INSERT, 10-60000 ms",
   [](const Raw& r, Config& c) {
     c.clickhouse.flush_interval = std::chrono::milliseconds(
         parseRange(r.label, r.single(), 10, 60000, "a time in milliseconds"));
   },
   [](const Config& c) { return std::to_string(c.clickhouse.flush_interval.count()); }},
  {"--clickhouse-spool-records", "--clickhouse-spool-records", "AYAFLOW_CLICKHOUSE_SPOOL_RECORDS",
   "clickhouse_spool_records", ValueType::kInteger, "N",
   "Records kept in memory while ClickHouse is away (past it: dropped, counted), 1-100000000",
   [](const Raw& r, Config& c) {
     c.clickhouse.spool_records = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 1, 100000000, "a number of records"));
   },
   [](const Config& c) { return std::to_string(c.clickhouse.spool_records); }},
  {"--ipfix-collector", "--ipfix-collector", "AYAFLOW_IPFIX_COLLECTOR", "ipfix_collector",
   ValueType::kList, "HOST:PORT[,...]",
   "Export flow records over IPFIX to these collectors; repeat or comma-separate",
   [](const Raw& r, Config& c) { c.ipfix.collectors = parseCollectors(r); },
   [](const Config& c) {
     return c.ipfix.collectors.empty() ? std::string("none") : joined(c.ipfix.collectors);
   }},
  {"--ipfix-transport", "--ipfix-transport", "AYAFLOW_IPFIX_TRANSPORT", "ipfix_transport",
   ValueType::kString, "udp|tcp", "IPFIX transport: udp or tcp",
   [](const Raw& r, Config& c) { c.ipfix.transport = parseIpfixTransport(r.label, r.single()); },
   [](const Config& c) {
     return std::string(c.ipfix.transport == exporter::IpfixTransport::kTcp ? "tcp" : "udp");
   }},
  {"--ipfix-observation-domain", "--ipfix-observation-domain",
   "AYAFLOW_IPFIX_OBSERVATION_DOMAIN", "ipfix_observation_domain", ValueType::kInteger, "ID",
   "IPFIX Observation Domain ID, 0-4294967295",
   [](const Raw& r, Config& c) {
     c.ipfix.observation_domain =
         static_cast<std::uint32_t>(parseRange(r.label, r.single(), 0, kMaxU32, "an id"));
   },
   [](const Config& c) { return std::to_string(c.ipfix.observation_domain); }},
  {"--ipfix-template-refresh", "--ipfix-template-refresh", "AYAFLOW_IPFIX_TEMPLATE_REFRESH",
   "ipfix_template_refresh_seconds", ValueType::kInteger, "SECONDS",
   "UDP: send the IPFIX templates again this often, 1-3600",
   [](const Raw& r, Config& c) {
     c.ipfix.template_refresh =
         std::chrono::seconds(parseRange(r.label, r.single(), 1, 3600, "an interval in seconds"));
   },
   [](const Config& c) { return std::to_string(c.ipfix.template_refresh.count()); }},
  {"--ipfix-max-message", "--ipfix-max-message", "AYAFLOW_IPFIX_MAX_MESSAGE",
   "ipfix_max_message", ValueType::kInteger, "BYTES",
   "Largest IPFIX message (UDP: under the path MTU), 512-65535",
   [](const Raw& r, Config& c) {
     c.ipfix.max_message = static_cast<std::size_t>(
         parseRange(r.label, r.single(), 512, 65535, "a size in bytes"));
   },
   [](const Config& c) { return std::to_string(c.ipfix.max_message); }},
  {"--ipfix-flush-interval", "--ipfix-flush-interval", "AYAFLOW_IPFIX_FLUSH_INTERVAL",
   "ipfix_flush_interval_ms", ValueType::kInteger, "MS",
   "Longest a record waits for a fuller IPFIX message, 10-60000 ms",
   [](const Raw& r, Config& c) {
     c.ipfix.flush_interval = std::chrono::milliseconds(
         parseRange(r.label, r.single(), 10, 60000, "a time in milliseconds"));
   },
   [](const Config& c) { return std::to_string(c.ipfix.flush_interval.count()); }},
  // ---- end of flow export ----
};
// clang-format on

}  // namespace

const Setting* settingsBegin() { return std::begin(kSettings); }
const Setting* settingsEnd() { return std::end(kSettings); }

}  // namespace ayaflow::app::detail
