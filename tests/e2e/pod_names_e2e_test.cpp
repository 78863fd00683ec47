// SPDX-License-Identifier: MIT OR Apache-2.0
// Pod names end to end (root tier): a real containerd (CRI plugin) runs pod sandboxes on its
// own CNI bridge; the agent, attached to the pods' interfaces, names both ends of their
// connections from that runtime over CRI, in /api/live, history rows and filters, and the
// workload metrics, with counts exact against what the sockets sent and received. Then the
// parts that happen over time: a pod started while the agent runs, a pod IP reused by a new
// pod (old and new connections keep their own names), and the runtime going away and coming
// back.
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "agent_checks.h"
#include "agent_process.h"
#include "containerd_fixture.h"
#include "netns.h"
#include "prometheus_runner.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Pod = Containerd::Pod;

constexpr const char* kNode = "test-node-1";

/// Deployment "web" (ReplicaSet web-7d9f8c6b5d) in namespace shop.
Containerd::PodSpec webSpec(const std::string& suffix) {
  Containerd::PodSpec s;
  s.name = "web-7d9f8c6b5d-" + suffix;
  s.ns = "shop";
  s.labels = {{"app", "web"}, {"pod-template-hash", "7d9f8c6b5d"}};
  return s;
}

/// StatefulSet "db" in namespace data.
Containerd::PodSpec dbSpec() {
  Containerd::PodSpec s;
  s.name = "db-0";
  s.ns = "data";
  s.labels = {{"app", "db"},
              {"controller-revision-hash", "db-6c8f9d7b4"},
              {"statefulset.kubernetes.io/pod-name", "db-0"}};
  return s;
}

/// DaemonSet "node-cache" in namespace kube-system.
Containerd::PodSpec cacheSpec() {
  Containerd::PodSpec s;
  s.name = "node-cache-x7k2p";
  s.ns = "kube-system";
  s.labels = {{"k8s-app", "node-cache"},
              {"controller-revision-hash", "5f8b9c7d6"},
              {"pod-template-generation", "1"}};
  return s;
}

/// Polls `pred` every 50 ms until it holds or `timeout` passes; returns whether it held.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

/// The sum of the samples of `family` whose labels include every pair of `labels`.
double sampleSum(const std::string& text, const std::string& family,
                 const std::map<std::string, std::string>& labels) {
  double sum = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.compare(0, family.size() + 1, family + "{") != 0) continue;
    bool all = true;
    for (const auto& [k, v] : labels) {
      if (line.find("," + k + "=\"" + v + "\"") == std::string::npos &&
          line.find("{" + k + "=\"" + v + "\"") == std::string::npos) {
        all = false;
        break;
      }
    }
    if (all) sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

/// The names of one end of an /api/live entry or a history row ("<prefix>pod" etc.).
struct EndNames {
  std::string ns, pod, workload, kind, node;
};

EndNames endNames(const json& j, const std::string& prefix) {
  const auto text = [&](const std::string& key) {
    return j.contains(prefix + key) ? j.at(prefix + key).get<std::string>() : std::string();
  };
  return {text("namespace"), text("pod"), text("workload"), text("workload_kind"), text("node")};
}

/// Everything the test builds: the runtime and its pods, the agent.
class PodNamesE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;  // each test skips (and fails under CI=true)
    const std::string subnet = Containerd::freeSubnet();
    const std::string base = subnet.substr(0, subnet.rfind('.') + 1);
    ContainerdOptions options;
    options.subnet = subnet;
    // Three addresses: a removed pod's address is the only one free for the next pod.
    options.range_start = base + "10";
    options.range_end = base + "12";
    runtime_ = new Containerd(options);
    prefix_ = "ayk" + std::to_string(getpid() % 100000);
    web_ = new Pod(runPod(webSpec("abcde")));
    db_ = new Pod(runPod(dbSpec()));
    agent_ = new AgentProcess({"--interface", prefix_ + "*", "--cri-socket", runtime_->endpoint(),
                               "--node-name", kNode, "--connection-timeout", "600"});
    agent_->waitReady();
    ASSERT_TRUE(eventually([] { return metric("ayaflow_cri_pods") == 2; }))
        << agent_->get("/metrics").body << agent_->log();
  }

  static void TearDownTestSuite() {
    delete agent_;
    agent_ = nullptr;
    delete web_;
    delete db_;
    web_ = db_ = nullptr;
    delete runtime_;
    runtime_ = nullptr;
  }

  void SetUp() override {
    AYAFLOW_REQUIRE_ROOT();
    ASSERT_NE(agent_, nullptr) << "set-up failed";
  }

  /// Runs a pod and gives its host-side interface a name of this test's own, which the
  /// agent's --interface pattern picks up (a CNI names it at random).
  static Pod runPod(const Containerd::PodSpec& spec) {
    Pod pod = runtime_->runPod(spec);
    const std::string name = prefix_ + std::to_string(next_link_++);
    sh("ip link set dev " + pod.host_veth + " down && ip link set dev " + pod.host_veth + " name " +
       name + " && ip link set dev " + name + " up");
    pod.host_veth = name;
    return pod;
  }

  /// Sends one datagram from `pod`:port to db and waits until /api/live names its end by
  /// the pod: the agent knows the pod.
  static bool waitNamed(const Pod& pod, std::uint16_t port) {
    int a = -1;
    inPod(pod, [&] { a = udpSocket(pod.ip, port); });
    udpSend(a, db_->ip, 42999, 1);
    ::close(a);
    return eventually([&] {
      const json e = liveEntry(pod.ip, port, db_->ip, 42999);
      if (e.is_null()) return false;
      const bool local = e.at("connection").get<std::string>().rfind(pod.ip + ":", 0) == 0;
      return endNames(e, local ? "local_" : "remote_").pod == pod.name;
    });
  }

  static double metric(const std::string& name) {
    const std::string text = agent_->get("/metrics").body;
    const std::uint64_t v = metricValue(text, name);
    return v == UINT64_MAX ? -1 : static_cast<double>(v);
  }

  /// UDP from `from`:from_port to `to`:to_port, `n` datagrams of `payload` bytes, then `m`
  /// of `payload_back` bytes back; every datagram received (the sockets are the truth).
  static void exchange(const Pod& from, std::uint16_t from_port, const Pod& to,
                       std::uint16_t to_port, int n, std::size_t payload, int m,
                       std::size_t payload_back) {
    int a = -1, b = -1;
    inPod(from, [&] { a = udpSocket(from.ip, from_port); });
    inPod(to, [&] { b = udpSocket(to.ip, to_port); });
    for (int i = 0; i < n; ++i) udpSend(a, to.ip, to_port, payload);
    udpReceive(b, n);
    for (int i = 0; i < m; ++i) udpSend(b, from.ip, from_port, payload_back);
    udpReceive(a, m);
    ::close(a);
    ::close(b);
  }

  /// The /api/live entry of the connection between the two endpoints (either end local).
  static json liveEntry(const std::string& ip_a, std::uint16_t port_a, const std::string& ip_b,
                        std::uint16_t port_b) {
    const std::string a = endpoint(ip_a, port_a), b = endpoint(ip_b, port_b);
    const json live = json::parse(agent_->get("/api/live").body);
    for (const json& c : live.at("connections")) {
      const std::string conn = c.at("connection").get<std::string>();
      if (conn == a + " -> " + b || conn == b + " -> " + a) return c;
    }
    return json();
  }

  /// Rows of one direction of a flow: count, packets and bytes, and the names of each end.
  struct Rows {
    std::uint64_t rows = 0, packets = 0, bytes = 0;
    std::vector<std::string> names;  // distinct "src_pod|src_namespace|...|dst_node" texts
  };
  static Rows rows(std::uint16_t src_port, std::uint16_t dst_port) {
    Rows r;
    for (const auto& row : queryRows(
             agent_->dbPath(),
             "SELECT count(*), sum(packet_count), sum(length), src_namespace, src_pod, "
             "src_workload, src_workload_kind, src_node, dst_namespace, dst_pod, dst_workload, "
             "dst_workload_kind, dst_node FROM packets WHERE src_port = " +
                 std::to_string(src_port) + " AND dst_port = " + std::to_string(dst_port) +
                 " GROUP BY 4, 5, 6, 7, 8, 9, 10, 11, 12, 13")) {
      r.rows += std::stoull(row[0]);
      r.packets += std::stoull(row[1]);
      r.bytes += std::stoull(row[2]);
      std::string text;
      for (std::size_t i = 3; i < row.size(); ++i) text += (i > 3 ? "|" : "") + row[i];
      r.names.push_back(text);
    }
    return r;
  }

  static inline Containerd* runtime_ = nullptr;
  static inline Pod* web_ = nullptr;
  static inline Pod* db_ = nullptr;
  static inline AgentProcess* agent_ = nullptr;
  static inline std::string prefix_;
  static inline int next_link_ = 0;
};

constexpr const char* kWebNames = "shop|web-7d9f8c6b5d-abcde|web|Deployment|";
constexpr const char* kDbNames = "data|db-0|db|StatefulSet|";

TEST_F(PodNamesE2E, PodToPodTrafficIsNamedAndExactInLiveRowsFiltersAndMetrics) {
  constexpr int kOut = 40, kBack = 25;
  constexpr std::size_t kPayload = 100, kPayloadBack = 120;
  exchange(*web_, 41000, *db_, 42000, kOut, kPayload, kBack, kPayloadBack);
  const std::uint64_t bytes_out = kOut * (kPayload + 28), bytes_back = kBack * (kPayloadBack + 28);

  // /api/live: one entry, both ends named, exact. Both ends are on this node: the first
  // packet (web's, counted where it left web) makes db the local end.
  json entry;
  ASSERT_TRUE(eventually([&] {
    entry = liveEntry(web_->ip, 41000, db_->ip, 42000);
    return !entry.is_null() && entry.at("stats").at("packets_count") == kOut + kBack;
  })) << agent_->get("/api/live").body;
  const bool db_local = entry.at("connection").get<std::string>().rfind(db_->ip + ":", 0) == 0;
  const EndNames db = endNames(entry, db_local ? "local_" : "remote_");
  const EndNames web = endNames(entry, db_local ? "remote_" : "local_");
  EXPECT_EQ(web.ns, "shop");
  EXPECT_EQ(web.pod, "web-7d9f8c6b5d-abcde");
  EXPECT_EQ(web.workload, "web");
  EXPECT_EQ(web.kind, "Deployment");
  EXPECT_EQ(db.ns, "data");
  EXPECT_EQ(db.pod, "db-0");
  EXPECT_EQ(db.workload, "db");
  EXPECT_EQ(db.kind, "StatefulSet");
  EXPECT_TRUE(web.node.empty() && db.node.empty());
  const auto& stats = entry.at("stats");
  EXPECT_EQ(
      stats.at("bytes_sent").get<std::uint64_t>() + stats.at("bytes_received").get<std::uint64_t>(),
      bytes_out + bytes_back);
  EXPECT_EQ(stats.at(db_local ? "bytes_received" : "bytes_sent").get<std::uint64_t>(), bytes_out);

  // Rows: one per packet, each naming its source and destination.
  Rows out, back;
  ASSERT_TRUE(eventually([&] {
    out = rows(41000, 42000);
    back = rows(42000, 41000);
    return out.packets == kOut && back.packets == kBack;
  })) << out.packets
      << " " << back.packets;
  EXPECT_EQ(out.bytes, bytes_out);
  EXPECT_EQ(back.bytes, bytes_back);
  EXPECT_EQ(out.names, std::vector<std::string>{std::string(kWebNames) + "|" + kDbNames});
  EXPECT_EQ(back.names, std::vector<std::string>{std::string(kDbNames) + "|" + kWebNames});

  // Filters: by namespace, pod and workload of either end.
  const auto history = [&](const std::string& query) {
    const HttpResult r = agent_->get("/api/history?limit=1000&port=41000&" + query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    return json::parse(r.body);
  };
  for (const char* q : {"namespace=shop", "namespace=data", "pod=db-0", "pod=web-7d9f8c6b5d-abcde",
                        "workload=web", "workload=db"}) {
    EXPECT_EQ(history(q).size(), static_cast<std::size_t>(kOut + kBack)) << q;
  }
  for (const char* q : {"namespace=kube-system", "pod=db-1", "workload=web-7d9f8c6b5d"}) {
    EXPECT_EQ(history(q).size(), 0u) << q;
  }
  // Each row names its own source and destination; both directions are ingress (each
  // packet is counted where it leaves its pod, entering the node).
  const json both = history("pod=db-0&direction=ingress");
  ASSERT_EQ(both.size(), static_cast<std::size_t>(kOut + kBack));
  for (const json& row : both) {
    const bool from_web = row.at("src_port") == 41000;
    EXPECT_EQ(row.value("src_workload_kind", ""), from_web ? "Deployment" : "StatefulSet");
    EXPECT_EQ(row.value("dst_workload_kind", ""), from_web ? "StatefulSet" : "Deployment");
  }
  EXPECT_EQ(agent_->get("/api/history?namespace=").status, 400);

  // Workload metrics: each end's view of the traffic, exact.
  const std::string text = agent_->get("/metrics").body;
  const auto workload = [&](const char* family, const char* ns, const char* name,
                            const char* direction, const char* peer_ns, const char* peer) {
    return sampleSum(text, family,
                     {{"namespace", ns},
                      {"workload", name},
                      {"direction", direction},
                      {"peer_namespace", peer_ns},
                      {"peer_workload", peer}});
  };
  EXPECT_EQ(workload("ayaflow_workload_packets_total", "shop", "web", "egress", "data", "db"),
            kOut);
  EXPECT_EQ(workload("ayaflow_workload_bytes_total", "shop", "web", "egress", "data", "db"),
            bytes_out);
  EXPECT_EQ(workload("ayaflow_workload_packets_total", "data", "db", "ingress", "shop", "web"),
            kOut);
  EXPECT_EQ(workload("ayaflow_workload_packets_total", "data", "db", "egress", "shop", "web"),
            kBack);
  EXPECT_EQ(workload("ayaflow_workload_bytes_total", "shop", "web", "ingress", "data", "db"),
            bytes_back);

  // A real Prometheus scrapes the agent: the dashboard's workload and runtime panels have
  // data, and its sums are the agent's.
  const std::string binary = AYAFLOW_PROMETHEUS;
  if (binary.empty() || ::access(binary.c_str(), X_OK) != 0) {
    if (inCi()) FAIL() << "prometheus missing; CI=true forbids skipping";
    GTEST_SKIP() << "Debian package `prometheus` not installed";
  }
  const std::string monitoring = std::string(AYAFLOW_SOURCE_DIR) + "/monitoring";
  PrometheusRunner prometheus({binary, monitoring, "127.0.0.1:" + std::to_string(agent_->port())});
  ASSERT_TRUE(prometheus.waitReady()) << prometheus.log();
  ASSERT_TRUE(prometheus.waitForScrapes(2, std::chrono::seconds(20))) << prometheus.log();
  std::vector<DashboardQuery> queries =
      dashboardQueries(monitoring + "/grafana/dashboards/ayaflow.json");
  queries.erase(std::remove_if(queries.begin(), queries.end(),
                               [](const DashboardQuery& q) {
                                 return q.expr.find("ayaflow_workload_") == std::string::npos &&
                                        q.expr.find("ayaflow_cri_") == std::string::npos;
                               }),
                queries.end());
  EXPECT_GE(queries.size(), 7u);
  for (const std::string& p :
       queriesWithoutData(prometheus, queries, Clock::now() + std::chrono::seconds(20))) {
    ADD_FAILURE() << p;
  }
  EXPECT_EQ(prometheus.value(R"(sum(ayaflow_workload_packets_total{namespace="shop", )"
                             R"(workload="web", direction="egress", peer_workload="db"}))"),
            std::to_string(kOut));
  EXPECT_EQ(prometheus.value("ayaflow_cri_pods"), "2");
}

TEST_F(PodNamesE2E, TheNodesOwnAddressIsNamedByTheNode) {
  constexpr int kOut = 12, kBack = 7;
  int host = -1, pod = -1;
  host = udpSocket(runtime_->gateway(), 43000);  // the node's own address on the bridge
  inPod(*web_, [&] { pod = udpSocket(web_->ip, 41001); });
  for (int i = 0; i < kOut; ++i) udpSend(host, web_->ip, 41001, 64);
  udpReceive(pod, kOut);
  for (int i = 0; i < kBack; ++i) udpSend(pod, runtime_->gateway(), 43000, 64);
  udpReceive(host, kBack);
  ::close(host);
  ::close(pod);

  json entry;
  ASSERT_TRUE(eventually([&] {
    entry = liveEntry(runtime_->gateway(), 43000, web_->ip, 41001);
    return !entry.is_null() && entry.at("stats").at("packets_count") == kOut + kBack;
  })) << agent_->get("/api/live").body;
  const bool node_local =
      entry.at("connection").get<std::string>().rfind(runtime_->gateway() + ":", 0) == 0;
  const EndNames node = endNames(entry, node_local ? "local_" : "remote_");
  const EndNames web = endNames(entry, node_local ? "remote_" : "local_");
  EXPECT_EQ(node.node, kNode);
  EXPECT_TRUE(node.pod.empty());
  EXPECT_EQ(web.pod, "web-7d9f8c6b5d-abcde");
  Rows out;
  ASSERT_TRUE(eventually([&] {
    out = rows(43000, 41001);
    return out.packets == kOut;
  }));
  EXPECT_EQ(out.names, std::vector<std::string>{std::string("||||") + kNode + "|" + kWebNames});
  // The pod's workload sees the node as a peer it cannot name.
  const std::string text = agent_->get("/metrics").body;
  EXPECT_EQ(sampleSum(text, "ayaflow_workload_packets_total",
                      {{"namespace", "shop"},
                       {"workload", "web"},
                       {"direction", "ingress"},
                       {"peer_namespace", ""},
                       {"peer_workload", ""}}),
            kOut);
}

TEST_F(PodNamesE2E, NewPodsReusedAddressesAndARuntimeThatGoesAwayAreAllNamedRight) {
  // A pod started while the agent runs is named within a couple of seconds.
  const auto started = Clock::now();
  const Pod cache = runPod(cacheSpec());
  ASSERT_TRUE(eventually([] { return metric("ayaflow_cri_pods") == 3; }, std::chrono::seconds(5)))
      << agent_->log();
  const auto named_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  std::printf("new pod named %lld ms after RunPodSandbox was called\n",
              static_cast<long long>(named_after.count()));
  exchange(cache, 41100, *db_, 42100, 5, 50, 5, 50);
  Rows cache_rows;
  ASSERT_TRUE(eventually([&] {
    cache_rows = rows(41100, 42100);
    return cache_rows.packets == 5;
  }));
  EXPECT_EQ(cache_rows.names,
            std::vector<std::string>{"kube-system|node-cache-x7k2p|node-cache|DaemonSet||" +
                                     std::string(kDbNames)});

  // An address reused: web goes, a new web pod gets its address. The old connection keeps
  // the old pod's name, the new one gets the new pod's.
  exchange(*web_, 41200, *db_, 42200, 6, 80, 4, 80);
  const std::string old_ip = web_->ip;
  runtime_->removePod(web_->id);
  const Pod web2 = runPod(webSpec("fghij"));
  ASSERT_EQ(web2.ip, old_ip) << "the range has one free address: the removed pod's";
  // Records are named when they are written: wait until the agent knows the new pod (within
  // about a second), as a pod's containers start after its sandbox.
  ASSERT_TRUE(waitNamed(web2, 41299)) << agent_->get("/api/live").body << agent_->log();
  exchange(web2, 41201, *db_, 42201, 9, 80, 3, 80);
  const auto live_pod = [&](std::uint16_t port) {
    const json e = liveEntry(old_ip, port, db_->ip, static_cast<std::uint16_t>(port + 1000));
    if (e.is_null()) return std::string("(none)");
    const bool web_local = e.at("connection").get<std::string>().rfind(old_ip + ":", 0) == 0;
    return endNames(e, web_local ? "local_" : "remote_").pod;
  };
  ASSERT_TRUE(eventually([&] { return live_pod(41201) == "web-7d9f8c6b5d-fghij"; }))
      << agent_->get("/api/live").body;
  EXPECT_EQ(live_pod(41200), "web-7d9f8c6b5d-abcde");
  Rows old_rows, new_rows;
  ASSERT_TRUE(eventually([&] {
    old_rows = rows(41200, 42200);
    new_rows = rows(41201, 42201);
    return old_rows.packets == 6 && new_rows.packets == 9;
  }));
  EXPECT_EQ(old_rows.names, std::vector<std::string>{std::string(kWebNames) + "|" + kDbNames});
  EXPECT_EQ(new_rows.names, std::vector<std::string>{"shop|web-7d9f8c6b5d-fghij|web|Deployment||" +
                                                     std::string(kDbNames)});

  // The runtime goes away: counting goes on, known pods keep their names, the agent says so.
  runtime_->stopDaemon();
  ASSERT_TRUE(eventually([] { return metric("ayaflow_cri_up") == 0; })) << agent_->log();
  EXPECT_GT(metric("ayaflow_cri_errors_total"), 0);
  EXPECT_NE(agent_->log().find("cannot be reached"), std::string::npos) << agent_->log();
  exchange(web2, 41202, *db_, 42202, 7, 90, 2, 90);
  Rows during;
  ASSERT_TRUE(eventually([&] {
    during = rows(41202, 42202);
    return during.packets == 7;
  }));
  EXPECT_EQ(during.bytes, 7u * (90 + 28));
  EXPECT_EQ(during.names, new_rows.names);

  // It comes back: the agent reaches it again and names a pod started since.
  runtime_->startDaemon();
  ASSERT_TRUE(eventually([] { return metric("ayaflow_cri_up") == 1; })) << agent_->log();
  runtime_->removePod(cache.id);
  Containerd::PodSpec late = webSpec("klmno");
  late.ns = "late";
  const Pod late_pod = runPod(late);
  ASSERT_TRUE(eventually(
      [&] {
        exchange(late_pod, 41300, *db_, 42300, 1, 10, 1, 10);
        const json e = liveEntry(late_pod.ip, 41300, db_->ip, 42300);
        if (e.is_null()) return false;
        const bool late_local =
            e.at("connection").get<std::string>().rfind(late_pod.ip + ":", 0) == 0;
        return endNames(e, late_local ? "local_" : "remote_").ns == "late";
      },
      std::chrono::seconds(5)))
      << agent_->get("/api/live").body << agent_->log();
  EXPECT_NE(agent_->log().find("answers"), std::string::npos);

  // A clean stop.
  agent_->signal(SIGTERM);
  EXPECT_EQ(agent_->waitExit(std::chrono::seconds(10)), 0) << agent_->log();
}

}  // namespace
}  // namespace ayaflow::test
