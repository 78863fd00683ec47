// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/enrich/enricher.h"

namespace ayaflow::enrich {

void EnricherChain::enrich(const flow::FlowKey& key, ConnectionNames& names) const {
  for (const Enricher* link : links_) link->enrich(key, names);
}

}  // namespace ayaflow::enrich
