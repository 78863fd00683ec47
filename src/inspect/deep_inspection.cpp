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

std::vector<prometheus::MetricFamily> inspectionCacheFamilies(const InspectionCacheStats& s) {
  common::MetricFamilies f;
  using prometheus::MetricType;
  f.add("ayaflow_domain_names",
        "Names held by deep inspection's domain map, by table (dns: (client, address) -> name, "
        "at most max_dns_entries; sni: connection -> name, at most max_sni_entries).",
        MetricType::Gauge,
        {common::MetricFamilies::sample(MetricType::Gauge, static_cast<double>(s.dns_names),
                                        {{"table", "dns"}}),
         common::MetricFamilies::sample(MetricType::Gauge, static_cast<double>(s.sni_names),
                                        {{"table", "sni"}})});
  f.counter("ayaflow_domain_names_evicted_total",
            "Unexpired names pushed out of a full domain-map table (the one learnt longest "
            "ago goes).",
            s.names_evicted);
  f.gauge("ayaflow_tls_streams", "TLS client streams tracked for their SNI (at most max_streams).",
          static_cast<double>(s.tls_streams));
  f.gauge("ayaflow_tls_stream_bytes",
          "Bytes buffered by the TLS stream tracker (at most max_total_bytes).",
          static_cast<double>(s.tls_stream_bytes));
  f.counter("ayaflow_tls_streams_evicted_total",
            "TLS streams dropped before a verdict because the tracker was at max_streams or "
            "max_total_bytes (least recently used first).",
            s.tls_streams_evicted);
  return f.take();
}

InspectionCacheStats DeepInspection::cacheStats() const {
  InspectionCacheStats s;
  s.dns_names = domains_.dnsSize();
  s.sni_names = domains_.sniSize();
  s.names_evicted = domains_.counters().evictions;
  const PayloadInspector::Counters c = inspector_.counters();
  s.tls_streams = c.tls_streams;
  s.tls_stream_bytes = c.tls_stream_bytes;
  s.tls_streams_evicted = c.tls_streams_evicted;
  return s;
}

std::shared_ptr<const prometheus::Collectable> DeepInspection::metrics() const {
  return std::make_shared<const common::CallbackCollectable>([this] {
    auto families = inspectionFamilies(domains_.domainsResolved(), inspector_.counters().records);
    for (auto& f : inspectionCacheFamilies(cacheStats())) families.push_back(std::move(f));
    return families;
  });
}

}  // namespace ayaflow::inspect
