// SPDX-License-Identifier: MIT OR Apache-2.0
// The agent's /metrics without a kernel: the families of every component the agent
// registers, in the agent's order (see src/app/app.cpp), built from counters the test sets;
// the reverse resolver's as with --resolve-dns (the largest output).
// Each component's metrics() is tested against the real component in its own room's tests.
// Link ayaflow_app to use it.
#pragma once

#include <cstdint>
#include <functional>

#include "ayaflow/api/history_route.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/capture/capture.h"
#include "ayaflow/capture/tcp_counters.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/export/export_stats.h"
#include "ayaflow/health/health_probes.h"
#include "ayaflow/inspect/deep_inspection.h"
#include "ayaflow/inspect/reverse_resolver.h"
#include "ayaflow/k8s/pod_watcher.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/store/sqlite_sink.h"

namespace ayaflow::test {

/// Counters read at every Collect(): change them between scrapes to grow them.
struct AgentStats {
  capture::CaptureStats capture;
  /// TCP results and RTT histograms (--tcp-state, on by default).
  capture::TcpCounterValues tcp;
  std::uint64_t domains_resolved = 0;
  std::uint64_t payload_records = 0;
  inspect::InspectionCacheStats inspection;
  inspect::ReverseResolver::Counters resolver;
  std::uint64_t resolver_cache_entries = 0;
  std::uint64_t resolver_pending = 0;
  /// The container runtime's: with an endpoint, as on a node.
  k8s::PodWatcher::Stats cri = [] {
    k8s::PodWatcher::Stats st;
    st.endpoint = "unix:///run/containerd/containerd.sock";
    st.up = true;
    return st;
  }();
  /// The tracing probes': every probe attached, as on this kernel.
  health::HealthStats health = [] {
    health::HealthStats st;
    for (auto& p : st.probes) p.enabled = p.attached = true;
    return st;
  }();
  pipeline::PipelineStats pipeline;
  store::SqliteSinkStats storage;
  /// Flow export, both sinks on (--clickhouse-url and --ipfix-collector).
  exporter::ExportStats clickhouse = [] {
    exporter::ExportStats s;
    s.sink = "clickhouse";
    return s;
  }();
  exporter::ExportStats ipfix = [] {
    exporter::ExportStats s;
    s.sink = "ipfix";
    return s;
  }();
  api::HttpServerStats http;
  api::HistoryRouteStats history;
  api::StreamHubStats stream;
};

class AgentMetrics {
 public:
  AgentStats stats;
  /// Called at the start of every scrape (e.g. to grow the counters).
  std::function<void(AgentStats&)> on_scrape;
  common::MetricsRegistry registry;

  AgentMetrics() {
    registry.add([this] {
      if (on_scrape) on_scrape(stats);
      auto families = capture::captureFamilies(stats.capture);
      for (auto& f : capture::tcpFamilies(stats.tcp)) families.push_back(std::move(f));
      return families;
    });
    registry.add([this] {
      auto families = inspect::inspectionFamilies(stats.domains_resolved, stats.payload_records);
      for (auto& f : inspect::inspectionCacheFamilies(stats.inspection)) {
        families.push_back(std::move(f));
      }
      return families;
    });
    registry.add([this] {
      return inspect::reverseDnsFamilies(stats.resolver, stats.resolver_cache_entries,
                                         stats.resolver_pending);
    });
    registry.add([this] { return k8s::criFamilies(stats.cri); });
    registry.add([this] { return health::healthFamilies(stats.health); });
    registry.add([this] { return pipeline::pipelineFamilies(stats.pipeline); });
    registry.add([this] { return store::storageFamilies(stats.storage); });
    registry.add([this] { return exporter::exportFamilies({stats.clickhouse, stats.ipfix}); });
    registry.add([this] { return api::httpServerFamilies(stats.http); });
    registry.add([this] { return api::historyRouteFamilies(stats.history); });
    registry.add([this] { return api::streamHubFamilies(stats.stream); });
    registry.add(api::processMetrics());
  }
  AgentMetrics(const AgentMetrics&) = delete;
  AgentMetrics& operator=(const AgentMetrics&) = delete;
};

}  // namespace ayaflow::test
