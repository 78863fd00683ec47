// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/deep_inspection.h"

#include "ayaflow/common/logging.h"
#include "ayaflow/common/metrics.h"

namespace ayaflow::inspect {

void DeepInspection::onTick(std::uint64_t now_ns) noexcept {
  inspector_.expire(now_ns);
  try {
    domains_.expire();
  } catch (const std::exception& e) {
    logger("inspect")->error("expiring domain names: {}", e.what());
  }
}

std::vector<prometheus::MetricFamily> inspectionFamilies(std::uint64_t domains_resolved,
                                                         std::uint64_t payload_records) {
  common::MetricFamilies f;
  f.counter("ayaflow_domains_resolved_total",
            "Domain names learnt by deep inspection (DNS questions and answers, TLS SNI).",
            domains_resolved);
  f.counter("ayaflow_deep_inspect_packets_total", "Payload events examined by deep inspection.",
            payload_records);
  return f.take();
}

std::shared_ptr<const prometheus::Collectable> DeepInspection::metrics() const {
  return std::make_shared<const common::CallbackCollectable>([this] {
    return inspectionFamilies(domains_.domainsResolved(), inspector_.counters().records);
  });
}

}  // namespace ayaflow::inspect
