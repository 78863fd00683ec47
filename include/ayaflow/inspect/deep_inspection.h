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

/// Sizes and evictions of deep inspection's bounded caches (what inspectionCacheFamilies()
/// exports).
struct InspectionCacheStats {
  std::uint64_t dns_names = 0;            ///< DomainMap address -> name entries
  std::uint64_t sni_names = 0;            ///< DomainMap (address, port) -> SNI entries
  std::uint64_t names_evicted = 0;        ///< unexpired names pushed out by a full table
  std::uint64_t tls_streams = 0;          ///< TLS streams tracked by the SNI tracker
  std::uint64_t tls_stream_bytes = 0;     ///< bytes they buffer
  std::uint64_t tls_streams_evicted = 0;  ///< streams pushed out by max_streams/max_total_bytes
};

/// ayaflow_domain_names{table}, ayaflow_domain_names_evicted_total, ayaflow_tls_streams,
/// ayaflow_tls_stream_bytes and ayaflow_tls_streams_evicted_total.
std::vector<prometheus::MetricFamily> inspectionCacheFamilies(const InspectionCacheStats& stats);

/// Deep inspection as one component: the kernel's payload records (DNS, TLS ClientHellos)
/// go through the PayloadInspector into a DomainMap, which names connections (see
/// DomainEnricher). It exists whether or not --deep-inspect is on, so its families are
/// always exported (zero when nothing is inspected).
///
/// Memory is bounded by Options (worst cases measured in tests/inspect/cache_bounds_test.cpp
/// and listed in docs/deep-inspection.md): the domain map's two tables at most
/// max_dns_entries / max_sni_entries names (~0.5 KB each with the longest names), the TLS
/// tracker at most max_streams streams and max_total_bytes buffered.
///
/// Threads: onPayload()/onTick() on the ingest thread; domains(), metrics() from any thread.
class DeepInspection final : public flow::PayloadSink {
 public:
  struct Options {
    DomainMap::Options domains;  ///< name tables: ttl, max_dns_entries, max_sni_entries
    /// The TLS stream tracker: max_streams, max_total_bytes, idle_timeout_ns, ...
    StreamReassembler::Options tls_streams = PayloadInspector::defaultTrackerOptions();
  };

  DeepInspection() : DeepInspection(Options{}) {}
  explicit DeepInspection(const Options& options)
      : domains_(options.domains), inspector_(domains_, options.tls_streams) {}
  DeepInspection(const DeepInspection&) = delete;
  DeepInspection& operator=(const DeepInspection&) = delete;

  void onPayload(const void* data, std::size_t size, std::uint64_t now_ns) noexcept override {
    inspector_.onRecord(data, size, now_ns);
  }
  /// Drops idle TLS streams and expired names.
  void onTick(std::uint64_t now_ns) noexcept override;

  const DomainMap& domains() const noexcept { return domains_; }
  const PayloadInspector& inspector() const noexcept { return inspector_; }

  /// Any thread.
  InspectionCacheStats cacheStats() const;

  /// inspectionFamilies() and inspectionCacheFamilies().
  std::shared_ptr<const prometheus::Collectable> metrics() const;

 private:
  DomainMap domains_;
  PayloadInspector inspector_;
};

}  // namespace ayaflow::inspect
