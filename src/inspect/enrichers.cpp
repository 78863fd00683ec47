// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/enrichers.h"

namespace ayaflow::inspect {

void DomainEnricher::enrich(const flow::FlowKey& key, std::int64_t /*seen_ms*/,
                            enrich::ConnectionNames& names) const {
  if (!names.domain) names.domain = domains_.lookup(key);
}

void ReverseDnsEnricher::enrich(const flow::FlowKey& key, std::int64_t /*seen_ms*/,
                                enrich::ConnectionNames& names) const {
  if (!names.local.hostname) names.local.hostname = resolver_.lookup(key.local);
  if (!names.remote.hostname) names.remote.hostname = resolver_.lookup(key.remote);
}

}  // namespace ayaflow::inspect
