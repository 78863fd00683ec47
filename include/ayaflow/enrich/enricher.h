// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ayaflow/flow/flow_key.h"

namespace ayaflow::enrich {

/// What is known about one end of a connection. Each source fills its own fields.
struct EndpointNames {
  std::optional<std::string> hostname;  ///< reverse DNS (--resolve-dns)

  bool empty() const noexcept { return !hostname; }
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
/// Threads: enrich() is called concurrently from HTTP server threads (/api/live) and the
/// pipeline thread (history rows, exports); implementations must be thread-safe, must not
/// block on I/O (answer from what is known now; learn in the background) and should fill
/// only fields that are still empty, so an earlier source in a chain wins. Errors: may
/// throw (std::bad_alloc); callers count and carry on without the names.
class Enricher {
 public:
  virtual ~Enricher() = default;
  virtual void enrich(const flow::FlowKey& key, ConnectionNames& names) const = 0;
};

/// Runs several enrichers in the order they were added. Borrows them: they must outlive the
/// chain. add() during start-up only; enrich() is then thread-safe if every link is.
class EnricherChain final : public Enricher {
 public:
  void add(const Enricher& enricher) { links_.push_back(&enricher); }
  bool empty() const noexcept { return links_.empty(); }
  void enrich(const flow::FlowKey& key, ConnectionNames& names) const override;

 private:
  std::vector<const Enricher*> links_;
};

}  // namespace ayaflow::enrich
