// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ayaflow/enrich/enricher.h"
#include "ayaflow/flow/packet.h"

namespace ayaflow::k8s {

/// Who held an address over which time: one pod's tenure of one of its IPs.
struct Tenure {
  std::shared_ptr<const enrich::PodName> pod;
  std::int64_t from_ms = 0;  ///< the sandbox's creation (Unix ms)
  /// When the agent saw the sandbox stopped or gone (Unix ms); max while it lives.
  std::int64_t until_ms = std::numeric_limits<std::int64_t>::max();
};

/// What the name table answers from: built by the pod watcher, then never changed.
struct NameIndex {
  struct AddressHash {
    std::size_t operator()(const flow::IpAddress& a) const noexcept;
  };
  /// Tenures of each pod address, in no particular order.
  std::unordered_map<flow::IpAddress, std::vector<Tenure>, AddressHash> pods;
  /// The node's own addresses (a host-network pod has them too) and the node's name.
  std::unordered_set<flow::IpAddress, AddressHash> node_addresses;
  std::shared_ptr<const std::string> node;
};

/// Names the ends of connections by pod (namespace, pod, workload) and by node, from the
/// index the pod watcher publishes. An Enricher: lookups are two hash probes in an immutable
/// index; publish() swaps in a new one atomically, so readers never wait for the watcher.
///
/// Over time: an address is named by the pod that held it at `seen_ms` (when the connection
/// was first seen, or when a record's packets were): the latest tenure that held it then
/// (began no later and had not ended before), else the first that began within
/// kClockSlackMs after (the runtime's clock against the packets'). So a
/// connection to a pod that is gone keeps that pod's name, and a new connection to its
/// reused IP gets the new pod's. Pods elsewhere (other nodes) are not in the index: their
/// addresses stay unnamed.
///
/// Threads: enrich() from any thread, concurrently with publish() from the watcher.
class NameTable final : public enrich::Enricher {
 public:
  /// Slack for the runtime's clock against the agent's packet times.
  static constexpr std::int64_t kClockSlackMs = 1000;

  void publish(std::shared_ptr<const NameIndex> index);
  std::shared_ptr<const NameIndex> index() const;

  void enrich(const flow::FlowKey& key, std::int64_t seen_ms,
              enrich::ConnectionNames& names) const override;

  /// The pod and node names of one address at seen_ms (fills empty fields only).
  static void name(const NameIndex& index, const flow::IpAddress& address, std::int64_t seen_ms,
                   enrich::EndpointNames& names);

 private:
  mutable std::mutex mutex_;  // guards index_ (a pointer swap; held for a refcount only)
  std::shared_ptr<const NameIndex> index_;
};

}  // namespace ayaflow::k8s
