// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "ayaflow/flow/packet.h"

namespace ayaflow::flow {

/// A row of the history table `packets` as read back: one packet in raw mode, or one
/// directional flow per aggregation window. Text columns as stored (a database migrated
/// from the original agent may hold rows written by it). Shared by the store (which reads
/// it) and the API (which renders it).
struct HistoryRow {
  std::int64_t id = 0;
  std::int64_t timestamp_ms = 0;  ///< Unix ms; the window's first packet when aggregated
  std::string src_ip;
  std::string dst_ip;
  std::uint16_t src_port = 0;
  std::uint16_t dst_port = 0;
  std::string protocol;            ///< "TCP", "UDP" or "IP(n)"
  std::uint64_t length = 0;        ///< bytes (IP length; the window's sum when aggregated)
  std::uint64_t packet_count = 1;  ///< 1 in raw rows
  std::string direction;           ///< "ingress" or "egress"
  std::optional<std::string> src_hostname;
  std::optional<std::string> dst_hostname;
  std::optional<std::string> domain;
  std::optional<std::string> interface;  ///< where its packets were counted (null: older rows)
  /// Kubernetes names of each end when known (null: unknown, or rows written before them):
  /// the pod's namespace, name, owning workload and its kind, or the node's name when the
  /// end is the node itself.
  std::optional<std::string> src_namespace, src_pod, src_workload, src_workload_kind, src_node;
  std::optional<std::string> dst_namespace, dst_pod, dst_workload, dst_workload_kind, dst_node;
  /// TCP health (null: UDP without drops, or rows written before them; see docs/api.md):
  /// the row's packets' TCP flags OR-ed (flow/tcp.h), the connection's state after them, its
  /// latest RTT and which one it is, and the retransmissions and drops the row stands for.
  std::optional<std::uint32_t> tcp_flags;
  std::optional<std::string> tcp_state;
  std::optional<std::uint32_t> rtt_us;
  std::optional<std::string> rtt_kind;
  std::optional<std::uint32_t> retransmits;
  std::optional<std::uint32_t> drops;
};

/// Filters of GET /api/history; all optional except the limit.
struct HistoryQuery {
  static constexpr std::size_t kDefaultLimit = 100;
  static constexpr std::size_t kMaxLimit = 1000;
  std::size_t limit = kDefaultLimit;     ///< 1..kMaxLimit
  std::optional<std::int64_t> since_ms;  ///< timestamp >= since (Unix ms)
  std::optional<std::int64_t> until_ms;  ///< timestamp <= until (Unix ms)
  std::optional<IpAddress> ip;           ///< src_ip or dst_ip equals it
  std::optional<std::uint16_t> port;     ///< src_port or dst_port equals it
  std::optional<std::uint8_t> protocol;  ///< 6 or 17
  std::optional<Direction> direction;
  /// Kubernetes names, exact text, each checked on its own: rows where either end has it.
  /// Checked on the rows the walk visits (no index or summary behind them).
  std::optional<std::string> ns;         ///< src_namespace or dst_namespace equals it
  std::optional<std::string> pod;        ///< src_pod or dst_pod equals it
  std::optional<std::string> workload;   ///< src_workload or dst_workload equals it
  std::optional<std::string> tcp_state;  ///< tcp_state equals it ("reset", "refused", ...)
};

}  // namespace ayaflow::flow
