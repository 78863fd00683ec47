// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "ayaflow/flow/payload_sink.h"
#include "ayaflow/inspect/domain_map.h"
#include "ayaflow/inspect/payload_inspector.h"

namespace prometheus {
class Collectable;
struct MetricFamily;
}  // namespace prometheus

namespace ayaflow::inspect {

/// ayaflow_domains_resolved_total and ayaflow_deep_inspect_packets_total.
std::vector<prometheus::MetricFamily> inspectionFamilies(std::uint64_t domains_resolved,
                                                         std::uint64_t payload_records);

/// Deep inspection as one component: the kernel's payload records (DNS, TLS ClientHellos)
/// go through the PayloadInspector into a DomainMap, which names connections (see
/// DomainEnricher). It exists whether or not --deep-inspect is on, so its two families are
/// always exported (zero when nothing is inspected).
///
/// Threads: onPayload()/onTick() on the ingest thread; domains(), metrics() from any thread.
class DeepInspection final : public flow::PayloadSink {
 public:
  DeepInspection() : inspector_(domains_) {}
  DeepInspection(const DeepInspection&) = delete;
  DeepInspection& operator=(const DeepInspection&) = delete;

  void onPayload(const void* data, std::size_t size, std::uint64_t now_ns) noexcept override {
    inspector_.onRecord(data, size, now_ns);
  }
  /// Drops idle TLS streams and expired names.
  void onTick(std::uint64_t now_ns) noexcept override;

  const DomainMap& domains() const noexcept { return domains_; }
  const PayloadInspector& inspector() const noexcept { return inspector_; }

  /// ayaflow_domains_resolved_total and ayaflow_deep_inspect_packets_total.
  std::shared_ptr<const prometheus::Collectable> metrics() const;

 private:
  DomainMap domains_;
  PayloadInspector inspector_;
};

}  // namespace ayaflow::inspect
