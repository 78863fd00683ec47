// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "ayaflow/enrich/enricher.h"
#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/flow/tcp.h"

namespace ayaflow::pipeline {

/// Whether a record is a flow's last word for its interval or a snapshot of a window still open.
enum class RecordState : std::uint8_t {
  /// The record's sums are complete: a raw packet, or an aggregation window's sums once the
  /// window has ended (or was handed over early to bound memory).
  kFinal = 0,
  /// A checkpoint of a window still open: the sums so far (cumulative, not a delta). Later
  /// records with the same update_key (provisional again, then one final) supersede it.
  kProvisional = 1,
};

/// One directional flow over an interval: a single packet in raw mode, or a flow's sums over
/// an aggregation window. Binary (no text) until a sink writes it out; every sink (SQLite
/// history, exporters) consumes the same records.
///
/// Provisional vs final (aggregated mode): while a window is open the pipeline hands the sinks
/// a provisional record of each flow whose sums changed, every checkpoint interval, and a final
/// record when the window ends. All of them carry the same update_key and cumulative sums, so a
/// sink that can update in place (SQLite) keeps one row per key and a crash loses at most one
/// checkpoint interval; a sink that cannot update (an exporter sending each record once)
/// ignores provisional records: the final one alone holds the exact totals.
struct FlowRecord {
  flow::IpAddress src, dst;
  std::int64_t first_ms = 0;  ///< Unix ms of the first packet
  std::int64_t last_ms = 0;   ///< Unix ms of the latest packet (first_ms for one packet)
  std::uint64_t packets = 1;
  std::uint64_t bytes = 0;    ///< IP bytes
  std::uint32_t ifindex = 0;  ///< interface of the first packet
  std::uint16_t src_port = 0, dst_port = 0;
  std::uint8_t protocol = 0;  ///< 6 TCP, 17 UDP
  flow::Direction direction = flow::Direction::kIngress;
  std::uint8_t flags = 0;  ///< AYAFLOW_F_* of the first packet
  RecordState state = RecordState::kFinal;
  /// TCP health (0 where unknown or not TCP); see flow/tcp.h and docs/api.md.
  /// Flags of the record's packets OR-ed, synthetic SYN-ACK/FIN-ACK/RST-ACK bits included.
  std::uint16_t tcp_flags = 0;
  flow::TcpState tcp_state =
      flow::TcpState::kUnknown;  ///< the connection's, after the latest packet
  flow::RttKind rtt_kind = flow::RttKind::kNone;
  std::uint32_t rtt_us = 0;       ///< the latest RTT figure of the connection, of kind rtt_kind
  std::uint32_t retransmits = 0;  ///< segments the local socket retransmitted in this record
  std::uint32_t drops = 0;        ///< packets of this flow the kernel dropped (with a reason)
  /// Aggregated mode: identifies one (flow, window) sum across its provisional records and
  /// its final one (unique within a pipeline's life, never 0). 0 in raw mode.
  std::uint64_t update_key = 0;
  /// Aggregated mode: end (Unix ms, exclusive) of the record's window. 0 in raw mode.
  std::int64_t window_end_ms = 0;
  /// Names from the enrichment chain; null when nothing is known. Shared, never modified
  /// once the record is handed to the sinks.
  std::shared_ptr<const enrich::ConnectionNames> names;

  /// The connection this flow belongs to, oriented as the live map orients it: the local
  /// end is the source of egress packets and the destination of ingress ones.
  flow::FlowKey connection() const noexcept {
    flow::FlowKey k;
    const bool egress = direction == flow::Direction::kEgress;
    k.local = egress ? src : dst;
    k.remote = egress ? dst : src;
    k.local_port = egress ? src_port : dst_port;
    k.remote_port = egress ? dst_port : src_port;
    k.protocol = protocol;
    return k;
  }

  /// Names of the source and destination ends (nullptr when unknown).
  const enrich::EndpointNames* srcNames() const noexcept {
    if (!names) return nullptr;
    return direction == flow::Direction::kEgress ? &names->local : &names->remote;
  }
  const enrich::EndpointNames* dstNames() const noexcept {
    if (!names) return nullptr;
    return direction == flow::Direction::kEgress ? &names->remote : &names->local;
  }

  /// The record of one packet (or flow-table entry) with its times already in Unix ms.
  static FlowRecord fromPacket(const flow::Packet& p, std::int64_t first_ms,
                               std::int64_t last_ms) noexcept {
    FlowRecord r;
    r.src = p.src;
    r.dst = p.dst;
    r.first_ms = first_ms;
    r.last_ms = last_ms;
    r.packets = p.packets;
    r.bytes = p.length;
    r.ifindex = p.ifindex;
    r.src_port = p.src_port;
    r.dst_port = p.dst_port;
    r.protocol = p.protocol;
    r.direction = p.direction;
    r.flags = p.flags;
    r.tcp_flags = p.tcp_flags;
    r.tcp_state = p.tcp_state;
    r.rtt_kind = p.rtt_kind;
    r.rtt_us = p.rtt_us;
    r.retransmits = p.retransmits;
    r.drops = p.drops;
    return r;
  }
};

/// Records handed to the sinks together, in time order (first_ms). Immutable once
/// published: every sink gets the same shared batch.
using RecordBatch = std::vector<FlowRecord>;
using BatchPtr = std::shared_ptr<const RecordBatch>;

/// Where flow records go: the SQLite history, IPFIX collectors, ClickHouse.
///
/// Threads: consume() is called on the pipeline thread and must never block on I/O: a sink
/// queues the batch for its own thread (see BatchQueue) or drops it and counts the drop.
///
/// Batches: a batch holds either only final records or only provisional ones (a checkpoint).
/// A sink that cannot update in place returns true for a checkpoint and ignores it.
/// flush() and stop() are called from the owner's thread (never the pipeline's).
class RecordSink {
 public:
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;

  virtual ~RecordSink() = default;
  /// A short name for logs ("sqlite").
  virtual const char* name() const noexcept = 0;
  /// Takes a batch. `room_until` is set only while the pipeline flushes or stops (capture has
  /// stopped feeding it or waits for nothing): then a full queue waits for room until that
  /// time, so what was accepted before shutdown is written; otherwise a full queue drops.
  /// Returns false when the batch was dropped: the pipeline then sends the flows of a refused
  /// checkpoint again at the next one (their sums are cumulative, so nothing is counted twice).
  virtual bool consume(BatchPtr batch, Deadline room_until) noexcept = 0;
  /// True (once) when a checkpoint this sink took could not be stored (a write error): the
  /// pipeline then sends every open flow at its next checkpoint, not only the changed ones.
  /// Called on the pipeline thread before each checkpoint.
  virtual bool takeCheckpointLost() noexcept { return false; }
  /// Returns once every batch consumed before the call is written (or has failed).
  virtual void flush() = 0;
  /// Writes what it holds and stops its thread; consume() then drops and counts. Idempotent.
  virtual void stop() = 0;
};

}  // namespace ayaflow::pipeline
