// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ayaflow::exporter {

/// The ClickHouse sink's settings (docs/export.md). Off while `url` is empty.
struct ClickHouseOptions {
  /// http://host:port or https://host:port (the server's HTTP interface, port 8123 / 8443).
  std::string url;
  std::string database = "default";
  std::string table = "ayaflow_flows";
  /// Credentials (HTTP basic authentication); read from a file or the environment by the
  /// configuration, never from the command line. Empty user: ClickHouse's "default".
  std::string user;
  std::string password;
  /// https: a PEM file of CA certificates to verify the server with (empty: the system's).
  std::string ca_file;
  /// Run CREATE TABLE IF NOT EXISTS (the documented schema) at start-up.
  bool create_table = false;
  /// Drop daily partitions older than this many days (checked at start-up and hourly);
  /// nullopt keeps everything. ClickHouse 18.16 has no TTL, hence partitions.
  std::optional<std::uint32_t> retention_days;
  /// Rows per INSERT at most; records wait at most `flush_interval` for a fuller INSERT.
  std::size_t batch_rows = 20000;
  std::chrono::milliseconds flush_interval{1000};
  /// Records the hand-off from the pipeline holds (beyond it: dropped, counted queue_full).
  std::size_t queue_records = 200000;
  /// Records kept while the server cannot take them (beyond it: dropped, counted
  /// spool_full). Every spooled record is sent exactly once when the server is back.
  /// The default, about 28 MB of encoded rows, fits the DaemonSet's 128Mi limit with room
  /// for a 100 000-flow window; raise it with the limit.
  std::size_t spool_records = 200000;
  /// One HTTP exchange (connect, send, answer) at most this long.
  std::chrono::milliseconds timeout{10000};
  /// Retries back off exponentially between these bounds.
  std::chrono::milliseconds backoff_min{250};
  std::chrono::milliseconds backoff_max{30000};
  /// This node's name, written in every row (`node`).
  std::string node;
  /// At stop(), time left to send what is spooled before the rest is dropped (stopped).
  std::chrono::milliseconds stop_timeout{5000};

  bool enabled() const noexcept { return !url.empty(); }
};

/// IPFIX transport.
enum class IpfixTransport : std::uint8_t { kUdp, kTcp };

/// The IPFIX exporter's settings (docs/export.md). Off while `collectors` is empty.
struct IpfixOptions {
  /// host:port ([v6]:port) of each collector; every collector gets every record.
  std::vector<std::string> collectors;
  IpfixTransport transport = IpfixTransport::kUdp;
  /// The Observation Domain ID in every message header.
  std::uint32_t observation_domain = 1;
  /// UDP: templates (and RFC 5610 type records) are sent again this often, so a collector
  /// that restarts learns them within this time.
  std::chrono::seconds template_refresh{60};
  /// Largest IPFIX message in bytes (UDP: keep it under the path MTU minus 48 bytes of
  /// IPv6 + UDP headers; TCP: up to 65535).
  std::size_t max_message = 1400;
  /// Raw mode batching: records wait at most this long for a fuller message.
  std::chrono::milliseconds flush_interval{1000};
  /// Records the hand-off from the pipeline holds (beyond it: dropped, counted queue_full).
  std::size_t queue_records = 200000;
  /// TCP: connecting and each write wait at most this long; then the collector's messages
  /// are dropped (counted) and the connection is tried again after `reconnect`.
  std::chrono::milliseconds timeout{2000};
  std::chrono::milliseconds reconnect{1000};

  bool enabled() const noexcept { return !collectors.empty(); }
};

}  // namespace ayaflow::exporter
