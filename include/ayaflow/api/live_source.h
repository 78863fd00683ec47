// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ayaflow/enrich/enricher.h"
#include "ayaflow/flow/connection_map.h"

namespace ayaflow::api {

/// One live connection as the REST routes show it.
struct LiveConnection {
  std::string connection;  ///< "local_ip:local_port -> remote_ip:remote_port"
  std::uint64_t bytes_sent = 0;
  std::uint64_t bytes_received = 0;
  std::uint64_t packets_count = 0;
  /// Where the connection's packets are counted: the interface of the local end's packets
  /// (else of the remote end's); "" if unknown.
  std::string interface;
  /// Every interface its packets are counted on (each direction's), without repeats.
  std::vector<std::string> interfaces;
  std::optional<std::string> domain;           ///< deep inspection: SNI or DNS name of the remote
  std::optional<std::string> local_hostname;   ///< --resolve-dns
  std::optional<std::string> remote_hostname;  ///< --resolve-dns
  /// The node's container runtime (k8s/): the pod, or the node, of each end when known.
  std::shared_ptr<const enrich::PodName> local_pod, remote_pod;
  std::shared_ptr<const std::string> local_node, remote_node;
  std::uint8_t protocol = 0;   ///< 6 TCP, 17 UDP
  flow::ConnectionHealth tcp;  ///< TCP flags, state, RTT, retransmissions, drops
  std::string drop_reason;     ///< the latest drop's reason by its kernel name ("" if none)
  /// Whether the retransmission and drop probes are attached: their counts are shown (0
  /// included) only then.
  bool counts_retransmits = false, counts_drops = false;
};

/// Adds the pod and node names of one end to a JSON object as `<prefix>namespace`,
/// `<prefix>pod`, `<prefix>workload`, `<prefix>workload_kind` and `<prefix>node`, each only
/// when known. Shared by /api/live and /api/history.
template <typename Json>
void addEndpointNames(Json& object, const char* prefix, const enrich::PodName* pod,
                      const std::string* node) {
  const std::string p(prefix);
  if (pod != nullptr) {
    object[p + "namespace"] = pod->ns;
    object[p + "pod"] = pod->pod;
    if (!pod->workload.empty()) object[p + "workload"] = pod->workload;
    if (!pod->workload_kind.empty()) object[p + "workload_kind"] = pod->workload_kind;
  }
  if (node != nullptr) object[p + "node"] = *node;
}

/// Read-only view of the live state that the core routes serve; implemented by the app
/// (and by fakes in tests). Methods are called concurrently from HTTP server threads and
/// must be thread-safe; they must not throw in normal operation (a throw becomes a 500).
class LiveSource {
 public:
  /// Global counters read together, so packets and bytes describe the same instant.
  struct Totals {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
  };

  virtual ~LiveSource() = default;

  virtual Totals totals() const = 0;
  virtual std::uint64_t activeConnections() const = 0;
  /// Seconds since the agent started (>= 0).
  virtual double uptimeSeconds() const = 0;
  /// At most `n` connections, sorted by packets_count descending.
  virtual std::vector<LiveConnection> topConnections(std::size_t n) const = 0;
};

/// The LiveConnection of a connection-map entry: connection text, counters and interface
/// name (domain and hostnames left unset).
LiveConnection toLiveConnection(const flow::ConnectionEntry& entry);

/// The agent's LiveSource: exact totals from `totals` (the kernel's counters), connections
/// from the live map, named by `enricher` (may be null). Borrows the map and the enricher;
/// `totals` must be thread-safe. Uptime counts from construction.
class MapLiveSource final : public LiveSource {
 public:
  MapLiveSource(std::function<Totals()> totals, const flow::ConnectionMap& map,
                const enrich::Enricher* enricher);

  Totals totals() const override { return totals_(); }
  std::uint64_t activeConnections() const override { return map_.size(); }
  double uptimeSeconds() const override;
  std::vector<LiveConnection> topConnections(std::size_t n) const override;

  /// Names the kernel's drop reasons (from its BTF); set before serving. Without it a
  /// connection's drop_reason stays empty.
  void setDropReasonNames(std::function<std::string(std::uint16_t)> names) {
    drop_reason_names_ = std::move(names);
  }
  /// Which of the probes' counts connections show (see LiveConnection); set before serving.
  void setHealthCounts(bool retransmits, bool drops) {
    counts_retransmits_ = retransmits;
    counts_drops_ = drops;
  }

 private:
  std::function<Totals()> totals_;
  std::function<std::string(std::uint16_t)> drop_reason_names_;
  bool counts_retransmits_ = false, counts_drops_ = false;
  const flow::ConnectionMap& map_;
  const enrich::Enricher* enricher_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace ayaflow::api
