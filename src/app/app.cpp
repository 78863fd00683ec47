// SPDX-License-Identifier: MIT OR Apache-2.0
// The agent: the rooms, wired together. Each component owns its threads, its counters and
// its /metrics families; this file only builds them in order, connects them, and stops
// them in the reverse order.
#include "ayaflow/app/app.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <fstream>
#include <memory>
#include <string>
// Boost 1.74 Asio uses std::exchange without including <utility> (C++20).
#include <utility>

#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/dashboard_route.h"
#include "ayaflow/api/history_route.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/live_source.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/router.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/capture/capture.h"
#include "ayaflow/capture/link.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/memory.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/common/system_error.h"
#include "ayaflow/enrich/enricher.h"
#include "ayaflow/export/clickhouse_sink.h"
#include "ayaflow/export/export_stats.h"
#include "ayaflow/export/ipfix_sink.h"
#include "ayaflow/health/health_collector.h"
#include "ayaflow/health/health_probes.h"
#include "ayaflow/inspect/deep_inspection.h"
#include "ayaflow/inspect/enrichers.h"
#include "ayaflow/inspect/reverse_resolver.h"
#include "ayaflow/k8s/name_table.h"
#include "ayaflow/k8s/pod_watcher.h"
#include "ayaflow/k8s/workload_metrics.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/store/history_reader.h"
#include "ayaflow/store/sqlite_sink.h"

namespace asio = boost::asio;

namespace ayaflow::app {
namespace {

constexpr auto kStreamInterval = std::chrono::seconds(1);
constexpr auto kHealthInterval = std::chrono::seconds(1);

/// A timer that runs `tick` every `interval` on the io_context until cancelled.
class Ticker {
 public:
  Ticker(asio::io_context& io, std::chrono::steady_clock::duration interval,
         std::function<void()> tick)
      : timer_(io), interval_(interval), tick_(std::move(tick)) {}
  void start() {
    timer_.expires_after(interval_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      tick_();
      start();
    });
  }
  void cancel() { timer_.cancel(); }

 private:
  asio::steady_timer timer_;
  std::chrono::steady_clock::duration interval_;
  std::function<void()> tick_;
};

/// Options the components take from more than one setting.
Config derived(Config c) {
  // Aggregated mode counts flows in the kernel: no event per packet.
  c.capture.flow_tables = c.pipeline.aggregation_window_s > 0;
  if (c.capture.flow_tables) {
    // A flow-table collection hands over up to a whole table at once, the shutdown one both
    // tables; the queues take them without dropping (their pages are touched only when used)
    // and the aggregator may hold two tables' worth of flows per window.
    const std::size_t tables = 2 * static_cast<std::size_t>(c.capture.flow_table_size);
    c.pipeline.queue_capacity += tables;
    c.pipeline.max_open_flows = std::max(c.pipeline.max_open_flows, tables);
    c.store.queue_rows = std::max(c.store.queue_rows, c.pipeline.max_open_flows + tables);
  }
  // Host-network ends are named by the node: the host name unless --node-name says.
  if (c.pods.node_name.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) c.pods.node_name = host;
  }
  return c;
}

}  // namespace

struct App::Impl {
  explicit Impl(Config c) : config(derived(std::move(c))) {}

  // Ingest thread: stop serving, stop capture (detach, last drain), hand the rest over, write
  // it, then let run() return.
  void shutdown() {
    if (stopping) return;
    stopping = true;
    logger("app")->info("shutting down");
    http->stop();
    if (health_collector) collectHealth();  // the last second's retransmissions and drops
    capture->stop();
    pipeline->stop();
    history->closeIdle();  // the writer's connection closes last: the WAL is checkpointed
    sqlite->stop();
    // Flow export: what the pipeline handed over is sent (bounded by each sink's stop time).
    if (clickhouse) clickhouse->stop();
    if (ipfix) ipfix->stop();
    if (pods) pods->stop();
    // A reverse lookup blocked in the system resolver (an unanswering DNS server: 5 s x 2
    // attempts by default, or more) must not hold up the exit; nothing waits for its answer.
    if (resolver && !resolver->stopWithin(std::chrono::milliseconds(500))) {
      logger("app")->warn(
          "reverse DNS: a lookup is still waiting for the system resolver; exiting without it");
      static_cast<void>(resolver.release());  // its workers end with the process
    }
    stream_ticker.cancel();
    health_ticker.cancel();
    signals.cancel();
    const store::SqliteSinkStats st = sqlite->stats();
    const pipeline::PipelineStats ps = pipeline->stats();
    logger("store")->info(
        "stored {} rows ({} packets); dropped {} packets (pipeline queue full), {} rows (SQLite "
        "queue full), {} rows (write errors), {} rows (disk space), {} (after stop); deleted {} "
        "rows (age), {} (size)",
        st.rows_stored, st.packets_stored, ps.packets_dropped_queue_full,
        st.queue.records_dropped_full, st.rows_dropped_write_error, st.rows_dropped_disk_space,
        ps.packets_dropped_stopped + st.queue.records_dropped_closed, st.rows_deleted,
        st.rows_deleted_size);
    // Flow export: what each sink delivered and dropped, by reason.
    for (const exporter::ExportStats& e :
         {clickhouse ? clickhouse->stats() : exporter::ExportStats{},
          ipfix ? ipfix->stats() : exporter::ExportStats{}}) {
      if (*e.sink == '\0') continue;
      logger("export")->info(
          "{}: exported {} records ({} bytes); dropped {} (queue full), {} (spool full), {} "
          "(send failed), {} (after stop)",
          e.sink, e.records, e.bytes, e.dropped_queue_full, e.dropped_spool_full, e.dropped_send,
          e.dropped_stopped);
    }
  }

  const Config config;
  asio::io_context io{1};
  asio::signal_set signals{io, SIGINT, SIGTERM};
  bool stopping = false;  // ingest thread only
  // Declaration order is construction order; teardown runs in reverse.
  inspect::DeepInspection inspection{config.inspection};
  std::unique_ptr<inspect::ReverseResolver> resolver;
  std::unique_ptr<inspect::DomainEnricher> domain_names;
  std::unique_ptr<inspect::ReverseDnsEnricher> host_names;
  k8s::NameTable pod_names;
  std::unique_ptr<k8s::PodWatcher> pods;
  std::unique_ptr<k8s::WorkloadMetrics> workloads;  // a sink the pipeline borrows
  enrich::EnricherChain names;
  std::unique_ptr<store::SqliteSink> sqlite;
  std::unique_ptr<store::HistoryReader> history;
  // Flow export (docs/export.md), each only when configured.
  std::unique_ptr<exporter::ClickHouseSink> clickhouse;
  std::unique_ptr<exporter::IpfixSink> ipfix;
  std::unique_ptr<pipeline::Pipeline> pipeline;
  std::unique_ptr<capture::Capture> capture;
  std::unique_ptr<health::HealthProbes> probes;
  std::unique_ptr<health::HealthCollector> health_collector;
  std::unique_ptr<api::MapLiveSource> live;
  common::MetricsRegistry metrics;
  api::StreamHub hub;  // outlives the server's WebSocket sessions
  api::Router router;
  std::unique_ptr<api::HttpServer> http;
  Ticker stream_ticker{io, kStreamInterval, [this] {
                         try {
                           hub.publish(api::streamFrame(*live));
                         } catch (const std::exception& e) {
                           logger("api")->error("stream frame: {}", e.what());
                         }
                       }};
  Ticker health_ticker{io, kHealthInterval, [this] { collectHealth(); }};

  // The tracing probes' changes into the live map and the history, on the ingest thread (this
  // io_context's); the live connection they belong to says which end is local.
  void collectHealth() noexcept {
    try {
      health_collector->collect([this](const health::HealthUpdate& u) {
        flow::Packet p = health::toPacket(u);
        capture->ingest(p);
      });
    } catch (const std::exception& e) {
      logger("health")->error("{}", e.what());
    }
  }
};

App::App(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {
  Impl& s = *impl_;
  const Config& c = s.config;
  bpf::installLibbpfLogger(c.log.verbose);

  // Names for connections: deep inspection's domains, then reverse DNS.
  if (c.capture.deep_inspect) {
    s.domain_names = std::make_unique<inspect::DomainEnricher>(s.inspection.domains());
    s.names.add(*s.domain_names);
  }
  if (c.resolve_dns) {
    s.resolver = std::make_unique<inspect::ReverseResolver>(c.resolver);
    s.host_names = std::make_unique<inspect::ReverseDnsEnricher>(*s.resolver);
    s.names.add(*s.host_names);
  }
  // Pods and the node, from the node's container runtime.
  if (c.pods.cri_socket != "none") {
    k8s::PodWatcherOptions pods = c.pods;
    pods.node_addresses = capture::listAddresses;
    s.pods = std::make_unique<k8s::PodWatcher>(std::move(pods), s.pod_names);
    s.names.add(s.pod_names);
    s.workloads = std::make_unique<k8s::WorkloadMetrics>(c.workload_series_limit);
  }
  const enrich::Enricher* names = s.names.empty() ? nullptr : &s.names;

  // Storage first: a bad database stops start-up before anything is attached.
  s.sqlite = std::make_unique<store::SqliteSink>(c.store);
  s.history = std::make_unique<store::HistoryReader>(*s.sqlite);
  std::vector<pipeline::RecordSink*> sinks{s.sqlite.get()};
  if (s.workloads) sinks.push_back(s.workloads.get());
  // Flow export: ClickHouse and IPFIX collectors get the same final records.
  if (c.clickhouse.enabled()) {
    exporter::ClickHouseOptions ch = c.clickhouse;
    ch.node = c.pods.node_name;
    if (!c.clickhouse_password_file.empty()) {
      std::ifstream file(c.clickhouse_password_file);
      if (!file) {
        throw ConfigError("--clickhouse-password-file: cannot read '" + c.clickhouse_password_file +
                          "'");
      }
      std::getline(file, ch.password);
      while (!ch.password.empty() && (ch.password.back() == '\r' || ch.password.back() == ' ')) {
        ch.password.pop_back();
      }
    }
    s.clickhouse = std::make_unique<exporter::ClickHouseSink>(std::move(ch));
    sinks.push_back(s.clickhouse.get());
  }
  if (c.ipfix.enabled()) {
    s.ipfix = std::make_unique<exporter::IpfixSink>(c.ipfix);
    sinks.push_back(s.ipfix.get());
  }
  s.pipeline = std::make_unique<pipeline::Pipeline>(c.pipeline, names, std::move(sinks));
  s.capture = std::make_unique<capture::Capture>(s.io, c.capture, *s.pipeline,
                                                 c.capture.deep_inspect ? &s.inspection : nullptr);
  // Why traffic is slow or failing: the kernel's tracing probes (each switchable; a kernel
  // without one logs a line and goes on without it).
  if (c.health.rtt || c.health.retransmits || c.health.drops) {
    s.probes = std::make_unique<health::HealthProbes>(c.health);
    s.health_collector = std::make_unique<health::HealthCollector>(*s.probes);
  }
  // A new pod interface means a new pod: read the runtime's pods at once.
  if (s.pods) s.capture->onInterfacesChanged([pods = s.pods.get()] { pods->refreshSoon(); });
  s.live = std::make_unique<api::MapLiveSource>(
      [capture = s.capture.get()] {
        const capture::Capture::Totals t = capture->totals();
        return api::LiveSource::Totals{t.packets, t.bytes};
      },
      s.capture->connections(), names);
  if (s.probes) {
    s.live->setDropReasonNames([probes = s.probes.get()](std::uint16_t reason) {
      return probes->reasonNames().name(reason);
    });
    s.live->setHealthCounts(s.probes->status(health::Probe::Retransmits).attached,
                            s.probes->status(health::Probe::Drops).attached);
  }

  api::addCoreRoutes(s.router, *s.live);
  const auto history_route = api::addHistoryRoute(
      s.router,
      [history = s.history.get()](const flow::HistoryQuery& q) { return history->query(q); });
  api::addStreamRoute(s.router, s.hub);
  api::addMetricsRoute(s.router, s.metrics);
  api::addDashboardRoute(s.router);
  s.http = std::make_unique<api::HttpServer>(c.http, s.router);

  s.metrics.add(s.capture->metrics());
  s.metrics.add(s.inspection.metrics());
  if (s.resolver) s.metrics.add(s.resolver->metrics());
  if (s.pods) s.metrics.add(s.pods->metrics());
  if (s.workloads) s.metrics.add(s.workloads->metrics());
  if (s.probes) s.metrics.add(s.probes->metrics());
  s.metrics.add(s.pipeline->metrics());
  s.metrics.add(s.sqlite->metrics());
  if (s.clickhouse || s.ipfix) {
    s.metrics.add([&s] {
      std::vector<exporter::ExportStats> sinks;
      if (s.clickhouse) sinks.push_back(s.clickhouse->stats());
      if (s.ipfix) sinks.push_back(s.ipfix->stats());
      return exporter::exportFamilies(sinks);
    });
  }
  s.metrics.add(s.http->metrics());
  s.metrics.add(history_route->metrics());  // the router keeps the route alive
  s.metrics.add(s.hub.metrics());
  s.metrics.add(api::processMetrics());
  s.http->start();
}

App::~App() {
  if (impl_->http) impl_->http->stop();
}

int App::run() {
  Impl& s = *impl_;
  s.signals.async_wait([&s](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    logger("app")->info("received {}", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    s.shutdown();
  });
  if (s.pods) s.pods->start();
  s.capture->start();
  s.stream_ticker.start();
  if (s.health_collector) s.health_ticker.start();
  // Start-up is over: the loader, BTF/ELF and configuration parsing are not needed again.
  const common::PageRelease released = common::releaseStartupPages();
  logger("app")->debug("released start-up pages of {} mappings: RSS {} -> {} KiB",
                       released.mappings, released.rss_before / 1024, released.rss_after / 1024);
  s.io.run();
  return 0;
}

void App::requestStop() {
  asio::post(impl_->io, [this] { impl_->shutdown(); });
}

std::uint16_t App::httpPort() const { return impl_->http ? impl_->http->port() : 0; }

}  // namespace ayaflow::app
