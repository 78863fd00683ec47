// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ayaflow/flow/flow_key.h"

namespace ayaflow::enrich {

/// A pod of this node, as its container runtime describes it (see k8s/). Immutable and
/// shared: every connection to the pod points at the same one.
struct PodName {
  std::string ns;             ///< Kubernetes namespace
  std::string pod;            ///< pod name
  std::string workload;       ///< owning workload's name (the pod's own name for a bare pod)
  std::string workload_kind;  ///< "Deployment", "StatefulSet", "DaemonSet", "Job", ... "Pod"
};

/// What is known about one end of a connection. Each source fills its own fields.
struct EndpointNames {
  std::optional<std::string> hostname;  ///< reverse DNS (--resolve-dns)
  /// The pod this end's address belonged to when the connection was seen (k8s/).
  std::shared_ptr<const PodName> pod;
  /// The node's name when this end is the node itself: one of its own addresses, which a
  /// host-network pod shares (k8s/).
  std::shared_ptr<const std::string> node;

  bool empty() const noexcept { return !hostname && !pod && !node; }
};

/// Names of a connection (a FlowKey: local and remote end, as the live map orients it).
struct ConnectionNames {
  std::optional<std::string> domain;  ///< the remote end's name from DNS answers or TLS SNI
  EndpointNames local;
  EndpointNames remote;

  bool empty() const noexcept { return !domain && local.empty() && remote.empty(); }
};

/// A source of names for connections: deep inspection's domain map, reverse DNS, and (from
/// the node's container runtime) pod names. Looked up by binary key, never by text.
///
/// `seen_ms` (Unix ms) is when the connection, or the flow record being named, was seen: a
/// source whose answers change over time (a pod IP is reused once its pod is gone) answers
/// for that time, so a connection keeps the names it had.
///
/// Threads: enrich() is called concurrently from HTTP server threads (/api/live) and the
/// pipeline thread (history rows, exports); implementations must be thread-safe, must not
/// block on I/O (answer from what is known now; learn in the background) and should fill
/// only fields that are still empty, so an earlier source in a chain wins. Errors: may
/// throw (std::bad_alloc); callers count and carry on without the names.
class Enricher {
 public:
  virtual ~Enricher() = default;
  virtual void enrich(const flow::FlowKey& key, std::int64_t seen_ms,
                      ConnectionNames& names) const = 0;
};

/// Runs several enrichers in the order they were added. Borrows them: they must outlive the
/// chain. add() during start-up only; enrich() is then thread-safe if every link is.
class EnricherChain final : public Enricher {
 public:
  void add(const Enricher& enricher) { links_.push_back(&enricher); }
  bool empty() const noexcept { return links_.empty(); }
  void enrich(const flow::FlowKey& key, std::int64_t seen_ms,
              ConnectionNames& names) const override;

 private:
  std::vector<const Enricher*> links_;
};

}  // namespace ayaflow::enrich
