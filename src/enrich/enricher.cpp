// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/enrich/enricher.h"

namespace ayaflow::enrich {

void EnricherChain::enrich(const flow::FlowKey& key, std::int64_t seen_ms,
                           ConnectionNames& names) const {
  for (const Enricher* link : links_) link->enrich(key, seen_ms, names);
}

}  // namespace ayaflow::enrich
