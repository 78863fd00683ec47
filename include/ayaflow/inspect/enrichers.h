// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include "ayaflow/enrich/enricher.h"
#include "ayaflow/inspect/domain_map.h"
#include "ayaflow/inspect/reverse_resolver.h"

namespace ayaflow::inspect {

/// Names a connection from deep inspection (DomainMap::lookup: the connection's own SNI,
/// else its local end's DNS name for the remote address, else any client's). Borrows the map.
/// Thread-safe, non-blocking.
class DomainEnricher final : public enrich::Enricher {
 public:
  explicit DomainEnricher(const DomainMap& domains) : domains_(domains) {}
  void enrich(const flow::FlowKey& key, std::int64_t seen_ms,
              enrich::ConnectionNames& names) const override;

 private:
  const DomainMap& domains_;
};

/// Host names of both ends from reverse DNS (ReverseResolver::lookup: from its cache; an
/// address not cached yet is queued and named on a later call). Borrows the resolver.
/// Thread-safe, non-blocking.
class ReverseDnsEnricher final : public enrich::Enricher {
 public:
  explicit ReverseDnsEnricher(ReverseResolver& resolver) : resolver_(resolver) {}
  void enrich(const flow::FlowKey& key, std::int64_t seen_ms,
              enrich::ConnectionNames& names) const override;

 private:
  ReverseResolver& resolver_;
};

}  // namespace ayaflow::inspect
