// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "ayaflow/k8s/name_table.h"

namespace ayaflow::k8s {

struct PodWatcherOptions {
  /// "auto" (the first of defaultCriSockets() that exists, looked for again until one
  /// does), a socket path or "unix://" endpoint, or "none" (no pod names).
  std::string cri_socket = "auto";
  /// The node's name for its own addresses, once there is a runtime to read (on a plain
  /// host, without one, nothing is named); "" names no end by node.
  std::string node_name;
  /// The node's own addresses (those of the agent's network namespace, with hostNetwork),
  /// read at every refresh; unset: none. May throw (that refresh keeps the previous ones).
  std::function<std::vector<flow::IpAddress>()> node_addresses;
  /// How often the pod list is read (and sooner on the runtime's container events).
  std::chrono::milliseconds refresh{1000};
  /// Deadline of each CRI call.
  std::chrono::milliseconds timeout{2000};
  /// How long a pod that is gone stays in the index, so records and live connections first
  /// seen while it lived keep its name.
  std::chrono::milliseconds retain = std::chrono::minutes(10);
};

/// Keeps a NameTable current from the node's container runtime (CRI): every `refresh` it
/// lists the pod sandboxes (ListPodSandbox), reads the IPs of new ones (PodSandboxStatus),
/// marks the tenure of stopped or removed ones as ended, reads the node's own addresses,
/// and publishes a new index when anything changed. Where the runtime streams container
/// events (GetContainerEvents, containerd 1.7+), each event triggers a refresh at once.
///
/// When the runtime cannot be reached the agent keeps counting: names already known stay,
/// ayaflow_cri_up is 0, a warning is logged once per outage (and a line when it answers
/// again), and the watcher retries every `refresh`.
///
/// Threads: its own two (refresh, events). start() once; stop() (also from the destructor)
/// joins them within one CRI deadline.
class PodWatcher {
 public:
  struct Stats {
    bool up = false;              ///< the latest refresh reached the runtime
    std::uint64_t refreshes = 0;  ///< successful refreshes
    std::uint64_t errors = 0;     ///< failed CRI calls
    std::uint64_t pods = 0;       ///< live pods with an IP on this node (host-network excluded)
    std::uint64_t host_network_pods = 0;
    std::string endpoint;  ///< the runtime in use ("" while none is found)
  };

  PodWatcher(PodWatcherOptions options, NameTable& table);
  ~PodWatcher();
  PodWatcher(const PodWatcher&) = delete;
  PodWatcher& operator=(const PodWatcher&) = delete;

  void start();
  void stop();
  /// Asks for a refresh now (e.g. a new pod interface appeared). Any thread.
  void refreshSoon();
  Stats stats() const;
  /// ayaflow_cri_up, ayaflow_cri_errors_total, ayaflow_cri_pods.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

  /// One refresh on the caller's thread (tests).
  void refreshForTest();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

/// The ayaflow_cri_* families of `stats` (none while no runtime endpoint is known).
std::vector<prometheus::MetricFamily> criFamilies(const PodWatcher::Stats& stats);

}  // namespace ayaflow::k8s
