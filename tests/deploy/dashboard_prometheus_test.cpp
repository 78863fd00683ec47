// SPDX-License-Identifier: MIT OR Apache-2.0
// The Grafana dashboard and the Prometheus configuration against real /metrics output and a
// real Prometheus server (Debian's `prometheus` package): every family the agent exports is
// on the dashboard, and every dashboard query, evaluated by Prometheus through its query API
// after it scraped the agent's real HttpServer with the shipped prometheus.yml and
// alerts.yml, returns data. No root needed: the metrics come from every component's
// families over counters that grow at every scrape, served by the route the agent uses, and
// from the workload sink (k8s/) fed named flow records at every scrape.
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent_metrics.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/router.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/capture/tcp_counters.h"
#include "ayaflow/health/health_probes.h"
#include "ayaflow/k8s/workload_metrics.h"
#include "prometheus_runner.h"

namespace ayaflow::deploy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;
using test::DashboardQuery;

constexpr const char* kHost = "127.0.0.1";
const std::string kRoot = AYAFLOW_SOURCE_DIR;
const std::string kDashboard = kRoot + "/monitoring/grafana/dashboards/ayaflow.json";

bool inCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::strcmp(ci, "true") == 0 || std::strcmp(ci, "1") == 0);
}

/// Every metric name (identifier) the dashboard's queries mention.
std::set<std::string> dashboardIdentifiers() {
  std::set<std::string> names;
  const std::regex identifier(R"([A-Za-z_:][A-Za-z0-9_:]*)");
  for (const DashboardQuery& q : test::dashboardQueries(kDashboard)) {
    for (std::sregex_iterator it(q.expr.begin(), q.expr.end(), identifier), end; it != end; ++it) {
      names.insert(it->str());
    }
  }
  return names;
}

/// Every counter of every component `step` times its base value: successive scrapes see
/// growing counters, so every rate() is positive. The HTTP server's are the real server's.
void grow(test::AgentStats& a, std::uint64_t step, const api::HttpServer* server) {
  a.cri.errors = step;  // a rate to plot
  a.cri.pods = 10 + step % 3;
  capture::CaptureStats& s = a.capture;
  s = capture::CaptureStats{};
  const char* interfaces[] = {"eth0", "eth1"};
  std::uint64_t i = 1;
  for (const char* ifname : interfaces) {
    for (std::uint8_t direction : {0, 1}) {
      for (std::uint8_t protocol : {6, 17}) {
        for (std::uint8_t family : {4, 6}) {
          capture::InterfaceCounter c{ifname,         direction,         protocol, family,
                                      100 * i * step, 150000 * i * step, i * step};
          s.packets += c.packets;
          s.bytes += c.bytes;
          s.events_lost[direction] += c.events_lost;
          s.counters.push_back(std::move(c));
          ++i;
        }
      }
    }
  }
  s.active_connections = 40 + step % 7;
  s.connections_expired = 3 * step;
  s.connections_evicted = step;
  s.max_connections = 180000;
  s.events_read = s.packets - s.events_lost[0] - s.events_lost[1];
  s.events_malformed = step;
  s.interfaces_attached = 2;
  s.interfaces_configured = 2;
  s.ring_buffer_size = 262144;
  a.domains_resolved = 5 * step;
  a.payload_records = 11 * step;
  a.inspection.dns_names = 30 + step % 5;
  a.inspection.sni_names = 20 + step % 3;
  a.inspection.names_evicted = step;
  a.inspection.tls_streams = 4;
  a.inspection.tls_stream_bytes = 2048;
  a.inspection.tls_streams_evicted = step;
  a.resolver.successes = 4 * step;
  a.resolver.failures = step;
  a.resolver.dropped = step;
  a.resolver.evictions = step;
  a.resolver_cache_entries = 50;
  a.resolver_pending = 3;
  a.pipeline.records_emitted = 95 * step;
  a.pipeline.packets_dropped_queue_full = step;
  a.pipeline.queue_depth = 9;
  a.pipeline.records_checkpointed = 40 * step;
  a.storage.rows_stored = 90 * step;
  a.storage.queue.records_dropped_full = 2 * step;
  a.storage.rows_dropped_write_error = step;
  a.storage.queue.depth = 17;
  a.storage.rows_updated = 35 * step;
  a.storage.queue.checkpoint_records_refused = step;
  a.storage.read_errors = step;
  a.storage.write_failures = step;
  a.storage.queries_timed_out = step;
  a.storage.queries_busy = step;
  a.storage.rows_deleted = 3 * step;
  a.storage.rows_deleted_size = 4 * step;
  a.storage.rows_dropped_disk_space = step;
  a.storage.writes_paused = step % 2 == 1;
  a.storage.db_bytes = 1000 * step;
  a.storage.db_file_bytes = 1100 * step;
  a.storage.max_db_bytes = 1u << 30;
  a.storage.disk_free_bytes = 5u << 30;
  a.storage.disk_floor_bytes = 512u << 20;
  if (server != nullptr) a.http = server->stats();
  a.history.ok = 6 * step;
  a.history.busy = step;
  a.history.timeout = step;
  a.history.queued = 1;
  a.history.running = 2;
  a.stream.clients = 1;
  a.stream.clients_total = step;
  a.stream.clients_dropped = step;
  a.stream.frames_published = step;
  a.stream.frames_sent = 2 * step;
  // TCP results, RTTs in a few buckets of each kind, retransmissions and two drop reasons.
  for (std::size_t r = 0; r < a.tcp.results.size(); ++r) a.tcp.results[r] = (r + 1) * step;
  for (capture::RttHistogram* h : {&a.tcp.handshake, &a.tcp.smoothed}) {
    *h = capture::RttHistogram{};
    for (std::size_t b : {3u, 5u, 8u}) {
      h->buckets[b] = (b + 1) * step;
      h->count += h->buckets[b];
      h->sum_us += h->buckets[b] * static_cast<std::uint64_t>(capture::kRttBucketsSeconds[b] * 1e6);
    }
  }
  a.health.totals.retrans_segs = 7 * step;
  a.health.totals.drop_flow_overflow = step;
  a.health.drops = {{"NETFILTER_DROP", 4 * step}, {"SOCKET_RCVBUFF", 2 * step}};
}

/// The ayaflow_workload_* families (registered when the agent names pods): a sink with a
/// limit of 6 label sets fed at every call with pod-to-pod traffic both ways, traffic to and
/// from outside and a seventh label set, so every series grows, _other and the overflow too.
class WorkloadTraffic {
 public:
  explicit WorkloadTraffic(common::MetricsRegistry& registry) { registry.add(sink_.metrics()); }

  void feed() {
    pipeline::RecordBatch b;
    b.push_back(record(web_, db_, 20, 30000));
    b.push_back(record(db_, web_, 15, 1200));
    b.push_back(record(web_, nullptr, 5, 4000));
    b.push_back(record(nullptr, dns_, 3, 240));
    b.push_back(record(job_, nullptr, 2, 500));  // the fifth label set: _other
    sink_.consume(std::make_shared<const pipeline::RecordBatch>(std::move(b)), std::nullopt);
  }

 private:
  using Pod = std::shared_ptr<const enrich::PodName>;
  static Pod pod(const char* ns, const char* name, const char* workload, const char* kind) {
    return std::make_shared<const enrich::PodName>(enrich::PodName{ns, name, workload, kind});
  }
  static pipeline::FlowRecord record(const Pod& src, const Pod& dst, std::uint64_t packets,
                                     std::uint64_t bytes) {
    pipeline::FlowRecord r;
    r.direction = flow::Direction::kEgress;  // names->local is the source
    r.packets = packets;
    r.bytes = bytes;
    auto names = std::make_shared<enrich::ConnectionNames>();
    names->local.pod = src;
    names->remote.pod = dst;
    r.names = std::move(names);
    return r;
  }

  k8s::WorkloadMetrics sink_{6};
  const Pod web_ = pod("shop", "web-7c9f8b6d54-x7k2p", "web", "Deployment");
  const Pod db_ = pod("shop", "db-0", "db", "StatefulSet");
  const Pod dns_ = pod("kube-system", "coredns-5d78c9869d-8xkpm", "coredns", "Deployment");
  const Pod job_ = pod("ops", "backup-28391040-xk2lp", "backup", "CronJob");
};

TEST(DashboardFamilies, EveryFamilyOfRealMetricsOutputIsQueriedByTheDashboard) {
  test::AgentMetrics agent;
  WorkloadTraffic workloads(agent.registry);
  grow(agent.stats, 1, nullptr);
  workloads.feed();
  const std::string text = api::renderMetrics(agent.registry);
  const std::set<std::string> used = dashboardIdentifiers();
  std::istringstream lines(text);
  int families = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    const std::string family = line.substr(7, line.find(' ', 7) - 7);
    ++families;
    // A histogram is queried through its _bucket series (histogram_quantile).
    const bool histogram =
        line.size() > 10 && line.compare(line.size() - 10, 10, " histogram") == 0;
    EXPECT_TRUE(used.count(histogram ? family + "_bucket" : family))
        << "no dashboard query uses " << family;
  }
  // At least the 68 families the agent exports with --resolve-dns (listed with their types
  // in tests/api/metrics_test.cpp), so the loop above checked every one.
  EXPECT_GE(families, 68) << text;
}

TEST(DashboardFamilies, IdentifiersAreWholeMetricNames) {
  const std::set<std::string> used = dashboardIdentifiers();
  EXPECT_TRUE(used.count("ayaflow_events_lost_total"));
  EXPECT_FALSE(used.count("ayaflow_events_lost"));  // whole names only, not prefixes
  EXPECT_FALSE(used.count("ayaflow_not_a_family_total"));
}

class RealPrometheus : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string prometheus = AYAFLOW_PROMETHEUS;
    if (prometheus.empty() || ::access(prometheus.c_str(), X_OK) != 0) {
      if (inCi()) FAIL() << "prometheus missing; CI=true forbids skipping";
      GTEST_SKIP() << "Debian package `prometheus` not installed";
    }
    agent_.on_scrape = [this](test::AgentStats& a) {
      grow(a, ++scrapes_, server_.get());
      workloads_.feed();
    };
    api::addMetricsRoute(router_, agent_.registry);
    api::HttpServerOptions opts;
    opts.address = kHost;
    opts.port = 0;
    server_ = std::make_unique<api::HttpServer>(opts, router_);
    server_->start();
  }

  std::atomic<std::uint64_t> scrapes_{0};
  test::AgentMetrics agent_;
  WorkloadTraffic workloads_{agent_.registry};
  api::Router router_;
  std::unique_ptr<api::HttpServer> server_;
};

TEST_F(RealPrometheus, EveryDashboardQueryReturnsDataAndTheAlertRulesEvaluate) {
  test::PrometheusRunner prometheus({AYAFLOW_PROMETHEUS, kRoot + "/monitoring",
                                     std::string(kHost) + ":" + std::to_string(server_->port())});
  ASSERT_TRUE(prometheus.waitReady()) << "Prometheus did not start; its log:\n" << prometheus.log();

  // Wait for three successful scrapes: rate() then has samples to work on.
  const auto deadline = Clock::now() + 60s;
  ASSERT_TRUE(prometheus.waitForScrapes(3, 60s))
      << "Prometheus never scraped the server three times; its log:\n"
      << prometheus.log();

  // Every query, until all return data or the deadline passes (a rate needs two samples
  // inside its window; an expression error never goes away).
  const std::vector<DashboardQuery> queries = test::dashboardQueries(kDashboard);
  ASSERT_GE(queries.size(), 30u);
  for (const std::string& p : test::queriesWithoutData(prometheus, queries, deadline)) {
    ADD_FAILURE() << p;
  }

  // A few values, to see the expansion gave the intended series: one agent up, the
  // two interfaces and both directions.
  EXPECT_EQ(prometheus.value("sum(up{job=\"ayaflow\", instance=~\".+\"})"), "1");
  EXPECT_EQ(prometheus.value("sum(ayaflow_interfaces_attached{job=\"ayaflow\", instance=~\".+\"})"),
            "2");
  EXPECT_EQ(prometheus.value("count(count by (interface) (ayaflow_interface_packets_total))"), "2");
  EXPECT_EQ(prometheus.value("count(count by (direction) (ayaflow_events_lost_total))"), "2");
  // The workload sink: its 6 label sets, two of them with web as the peer.
  EXPECT_EQ(prometheus.value("count(ayaflow_workload_bytes_total{namespace!=\"_other\"})"), "6");
  EXPECT_EQ(prometheus.value("ayaflow_workload_series_limit"), "6");
  EXPECT_EQ(prometheus.value("count(ayaflow_workload_bytes_total{peer_workload=\"web\"})"), "2");

  // alerts.yml loaded and every rule evaluated without error.
  for (const std::string& p :
       test::alertRuleProblems(prometheus, kRoot + "/monitoring", deadline + 10s)) {
    ADD_FAILURE() << p;
  }

  // The snapshot's write errors keep growing: AyaflowStorageWriteErrors (no `for`) fires.
  bool firing = false;
  while (!firing && Clock::now() < deadline + 20s) {
    json alerts = prometheus.api("alerts");
    if (alerts.is_object()) {
      for (const json& a : alerts["data"]["alerts"]) {
        firing |= a["labels"].value("alertname", "") == "AyaflowStorageWriteErrors" &&
                  a.value("state", "") == "firing";
      }
    }
    if (!firing) std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(firing) << prometheus.api("alerts").dump(2);
}

}  // namespace
}  // namespace ayaflow::deploy
