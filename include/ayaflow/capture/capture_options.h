// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>

#include "ayaflow/bpf/tc_attachment.h"
#include "ayaflow/capture/interface_selector.h"
#include "ayaflow/flow/connection_map.h"

namespace ayaflow::capture {

/// Settings of the capture (see Capture).
struct CaptureOptions {
  InterfaceSelector interfaces{{"eth0"}, {}};        ///< where to attach
  bpf::HookMode attach_mode = bpf::HookMode::kAuto;  ///< TCX links, tc filters, or auto
  std::uint32_t ring_buffer_size = 256 * 1024;       ///< bytes; power of two >= page size
  bool enable_ipv6 = false;                          ///< IPv6 as well as IPv4
  bool deep_inspect = false;                         ///< DNS/TLS payloads to the payload sink
  bool decapsulate = true;   ///< count VXLAN/Geneve/IP-in-IP packets as the packet inside
  bool flow_tables = false;  ///< count flows in the kernel (aggregated mode)
  bool tcp_state = true;     ///< TCP flags, connection states and handshake RTT from the hook
  std::uint32_t flow_table_size = 16384;    ///< entries per kernel flow table
  std::uint32_t connection_timeout_s = 60;  ///< idle seconds before a live entry goes
  /// Live connections kept at most (>= 1; sensible 1024 .. 4 000 000). A new connection
  /// beyond it evicts an idle one (ayaflow_connections_evicted_total). Memory at the cap:
  /// 16 tables of a power of two slots of 128 B, each holding its 1/16 share at load <= 0.7:
  /// 183 to 366 B per entry, depending on where the share falls between powers of two. The
  /// default, 180 000, fills its tables well: 32 MiB (186 B per entry).
  std::size_t max_connections = flow::ConnectionMap::kDefaultMaxEntries;
};

}  // namespace ayaflow::capture
