// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ayaflow/capture/capture_options.h"
#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/packet_sink.h"
#include "ayaflow/flow/payload_sink.h"

namespace boost::asio {
class io_context;
}
namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::capture {

/// Exact kernel counters of one interface/direction/protocol/family, summed over CPUs, with
/// the interface's name ("other" for the kernel's overflow slot).
struct InterfaceCounter {
  std::string interface;
  std::uint8_t direction = 0;  // AYAFLOW_DIR_*
  std::uint8_t protocol = 0;
  std::uint8_t addr_type = 0;
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t events_lost = 0;
  std::uint64_t super_packets = 0;      // GSO/GRO skbs counted as more than one packet
  std::uint64_t elsewhere_packets = 0;  // passed this hook, counted at another of the node
  std::uint64_t elsewhere_bytes = 0;
};

/// What the capture counts. Kernel figures come from one read of the per-CPU counters.
struct CaptureStats {
  std::uint64_t packets = 0;               ///< TCP/UDP packets seen by the programs (exact)
  std::uint64_t bytes = 0;                 ///< their IP bytes (exact)
  std::uint64_t events_lost[2] = {0, 0};   ///< by AYAFLOW_DIR_*: ring buffer full
  std::vector<InterfaceCounter> counters;  ///< the breakdown of the three above
  std::uint64_t payload_events_lost = 0;   ///< deep inspection: payload ring buffer full
  std::uint64_t flow_table_overflow = 0;   ///< sent as events: kernel flow table full
  std::uint64_t events_read = 0;           ///< ring-buffer records decoded
  std::uint64_t events_malformed = 0;      ///< records and flow entries the decoder refused
  std::uint64_t flow_table_packets = 0;    ///< packets collected from the kernel flow tables
  std::uint64_t active_connections = 0;    ///< entries in the live connection map
  std::uint64_t connections_expired = 0;   ///< removed by the idle timeout
  std::uint64_t connections_evicted = 0;   ///< removed by the cap (max_connections)
  std::uint64_t max_connections = 0;       ///< the cap on the live connection map
  std::uint64_t interfaces_attached = 0;
  std::uint64_t interfaces_configured = 0;
  std::uint64_t ring_buffer_size = 0;
};

/// The ayaflow_* families of the capture (packets, bytes, the per-interface breakdown,
/// lost events, ingest, the live map, interfaces), built from `stats`.
std::vector<prometheus::MetricFamily> captureFamilies(const CaptureStats& stats);

/// Capture on the ingest thread: loads the classifier, keeps it attached to the selected
/// interfaces as they come and go (InterfaceSet, fed by rtnetlink link notifications),
/// drains its ring buffers and (aggregated mode) its flow tables once a second, decodes
/// every record into the live connection map (at most options.max_connections entries, the
/// idlest evicted first) and hands it to `history`; payload records go
/// to `payload`. Idle connections expire every 10 s (then freed heap goes back to the
/// kernel: malloc_trim); lost events are warned about at most
/// once per 10 s (totals stay exact).
///
/// Ownership: owns the BPF program, its attachments, readers and the connection map;
/// borrows `io` (whose thread is the ingest thread), `history` and `payload`, which must
/// outlive it. Threads: construction, start() and stop() on the ingest thread (or before
/// it runs); stats(), totals(), connections() and metrics() from any thread.
/// Errors: the constructor throws (ConfigError, SystemError) with one line naming what
/// failed, leaving nothing attached; at run time failures are logged and counted.
class Capture {
 public:
  struct Totals {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
  };

  Capture(boost::asio::io_context& io, const CaptureOptions& options, flow::PacketSink& history,
          flow::PayloadSink* payload);
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  /// Starts reading, following interfaces and the timers.
  void start();

  /// Calls `fn` (on the io_context's thread, after the interfaces were followed) whenever
  /// the node's interfaces change: a pod's interface appearing means a new pod. Set before
  /// start(); fn must not block.
  void onInterfacesChanged(std::function<void()> fn);

  /// Detaches (no new packets), collects the kernel flow tables, drains the ring buffers
  /// and logs what was counted. Idempotent.
  void stop();

  /// Ingest thread only (the io_context's): records a packet made elsewhere, such as a
  /// health-only update from the tracing probes (packets 0), as a decoded one is: the live
  /// connection first, then the history. A health update whose connection is not in the live
  /// map yet (its packets wait in a kernel flow table or the ring buffer) is applied when it
  /// arrives, at a later flow-table collection or update (for up to 5 s, at most 4096
  /// waiting); one of a connection the attached interfaces never see is dropped (the
  /// probes' totals on /metrics still count it).
  void ingest(flow::Packet& packet) noexcept;

  /// Exact kernel totals (the same read /metrics shows). Throws SystemError on a failed read.
  Totals totals() const;
  const flow::ConnectionMap& connections() const;
  CaptureStats stats() const;
  std::shared_ptr<const prometheus::Collectable> metrics() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::capture
