// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// The kernel tracing probes (bpf/tracing/tcp_health.bpf.c): TCP smoothed RTT of local sockets,
// retransmitted segments and packet drops with the kernel's reason. HealthProbes loads and
// attaches them and reads their maps; HealthCollector (health_collector.h) turns the maps'
// cumulative values into per-flow deltas.

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ayaflow/abi/health.h"
#include "ayaflow/bpf/skeleton.h"
#include "ayaflow/health/drop_reasons.h"

struct ayaflow_health_bpf;
struct bpf_link;

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::health {

/// What to load. Each probe is switched separately; a probe switched on but missing in the
/// running kernel is left out with one log line (never an error).
struct HealthOptions {
  bool rtt = true;          ///< smoothed RTT of local TCP sockets (suggested flag --tcp-rtt)
  bool retransmits = true;  ///< retransmitted segments per socket (--tcp-retransmits)
  bool drops = true;        ///< drops with the kernel's reason per flow (--drop-reasons)
  std::uint32_t socket_entries = AYAFLOW_SOCK_HEALTH_ENTRIES;   ///< sock_health (LRU) size
  std::uint32_t drop_flow_entries = AYAFLOW_DROP_FLOW_ENTRIES;  ///< drop_flows size
  /// Drops attributed to flows per CPU per second (about); past it a drop is counted per
  /// reason only (HealthTotals::drop_flow_rate_limited). 0 = no limit.
  std::uint32_t drop_flow_budget = AYAFLOW_DROP_FLOW_BUDGET;
  /// At most one RTT sample per socket per interval (and one as it leaves ESTABLISHED).
  std::chrono::milliseconds rtt_sample_interval{1000};
  /// Attach points to treat as absent, e.g. "tp_btf/kfree_skb": how tests stand in for a
  /// kernel without them. Empty in production.
  std::vector<std::string> absent_hooks;
};

enum class Probe { Rtt = 0, Retransmits = 1, Drops = 2 };
inline constexpr std::array<Probe, 3> kProbes{Probe::Rtt, Probe::Retransmits, Probe::Drops};
/// "rtt", "retransmits", "drops": the probe label of ayaflow_health_probe_up.
const char* probeName(Probe probe);

struct ProbeStatus {
  bool enabled = false;      ///< switched on in HealthOptions
  bool attached = false;     ///< loaded and attached: its figures are real
  std::string attach_point;  ///< e.g. "fentry/tcp_rcv_established"; empty when not attached
  std::string missing;       ///< why an enabled probe is not attached (the logged line)
};

/// The per-CPU totals of the kernel side, summed over CPUs (see ayaflow_health_totals).
struct HealthTotals {
  std::uint64_t retrans_segs = 0;
  std::uint64_t drop_flow_overflow = 0;
  std::uint64_t rtt_samples = 0;
  std::uint64_t sock_overflow = 0;
  std::uint64_t drop_flow_rate_limited = 0;
};

/// What the probes' /metrics families show, read at each scrape.
struct HealthStats {
  std::array<ProbeStatus, 3> probes;  ///< indexed by Probe
  HealthTotals totals;
  /// Exact drops by the kernel's reason name ("OTHER": reasons past the counted slots).
  std::vector<std::pair<std::string, std::uint64_t>> drops;
};

/// ayaflow_health_probe_up{probe}, ayaflow_drops_total{reason},
/// ayaflow_drop_flows_overflow_total and ayaflow_tcp_retransmits_total, each probe's figures
/// only while it is attached.
std::vector<prometheus::MetricFamily> healthFamilies(const HealthStats& stats);

/// The probes' per-flow maps as the collector reads them (HealthProbes reads the kernel's;
/// a test can give its own).
class HealthMaps {
 public:
  using SocketVisitor = std::function<void(const ayaflow_tuple&, const ayaflow_sock_health&)>;
  using DropVisitor = std::function<void(const ayaflow_drop_key&, const ayaflow_drop_value&)>;
  virtual ~HealthMaps() = default;
  /// Every sock_health / drop_flows entry (nothing when the map is not loaded). Entries
  /// added or removed during the walk may be missed or seen once more.
  virtual void forEachSocket(const SocketVisitor& visit) const = 0;
  virtual void forEachDrop(const DropVisitor& visit) const = 0;
  /// Deletes entries (the collector prunes keys idle for long). A drop or retransmission
  /// racing with the deletion is lost for its flow, never for the totals.
  virtual void removeSockets(const std::vector<ayaflow_tuple>& keys) = 0;
  virtual void removeDrops(const std::vector<ayaflow_drop_key>& keys) = 0;
};

/// Owns the probes' BPF object: loads it and attaches the switched-on probes in the
/// constructor, detaches and unloads in the destructor.
///
/// Threads: any thread may call the const readers concurrently (each is a few map syscalls;
/// nothing in the object changes after construction); remove*() from one thread (the
/// collector's). Costs: forEachSocket/forEachDrop read the whole map (one syscall per 256
/// entries with batch lookup, else two per entry); dropTotals() one syscall per reason slot
/// (512, reading every CPU's value); totals() one syscall.
class HealthProbes final : public HealthMaps {
 public:
  /// Throws SystemError only for real failures (out of memory, no permission to load BPF);
  /// never for a hook the kernel lacks.
  explicit HealthProbes(const HealthOptions& options);
  ~HealthProbes();
  HealthProbes(const HealthProbes&) = delete;
  HealthProbes& operator=(const HealthProbes&) = delete;

  const ProbeStatus& status(Probe probe) const { return status_[static_cast<int>(probe)]; }
  bool anyAttached() const;
  /// The running kernel's drop reason names (read once at start when drops are attached).
  const DropReasonNames& reasonNames() const { return reason_names_; }

  void forEachSocket(const SocketVisitor& visit) const override;
  void forEachDrop(const DropVisitor& visit) const override;
  /// Exact drops per reason slot (index = reason; the last slot holds every reason at or
  /// above AYAFLOW_DROP_REASON_SLOTS - 1), summed over CPUs; only slots with drops.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> dropTotals() const;
  HealthTotals totals() const;

  void removeSockets(const std::vector<ayaflow_tuple>& keys) override;
  void removeDrops(const std::vector<ayaflow_drop_key>& keys) override;

  /// ayaflow_drops_total{reason}, ayaflow_tcp_retransmits_total,
  /// ayaflow_health_probe_up{probe}, ayaflow_drop_flows_overflow_total (see
  /// health_metrics.cpp); the probes object must outlive the collectable.
  std::shared_ptr<const prometheus::Collectable> metrics() const;
  /// What metrics() shows (a few map reads).
  HealthStats stats() const;

 private:
  bpf::SkeletonPtr<ayaflow_health_bpf> skel_;
  std::array<ProbeStatus, 3> status_;
  DropReasonNames reason_names_;
  std::vector<bpf_link*> links_;  // detached in the destructor, before the skeleton goes
  int ncpus_ = 1;
};

}  // namespace ayaflow::health
