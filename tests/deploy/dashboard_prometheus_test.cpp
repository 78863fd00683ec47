// SPDX-License-Identifier: MIT OR Apache-2.0
// The Grafana dashboard and the Prometheus configuration against real /metrics output and a
// real Prometheus server (Debian's `prometheus` package): every family the agent exports is
// on the dashboard, and every dashboard query, evaluated by Prometheus through its query API
// after it scraped the agent's real HttpServer with the shipped prometheus.yml and
// alerts.yml, returns data. No root needed: the metrics come from a snapshot that grows at
// every scrape, served by the same route the agent uses.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/router.h"
#include "ayaflow/api/stream_hub.h"
#include "http_client.h"

extern char** environ;

namespace ayaflow::deploy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kHost = "127.0.0.1";
const std::string kRoot = AYAFLOW_SOURCE_DIR;
const std::string kDashboard = kRoot + "/monitoring/grafana/dashboards/ayaflow.json";

bool inCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::strcmp(ci, "true") == 0 || std::strcmp(ci, "1") == 0);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/ayaflow-dashboard-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    const std::string command = "rm -rf '" + path_ + "'";
    if (std::system(command.c_str()) != 0)
      std::fprintf(stderr, "cannot remove %s\n", path_.c_str());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A child process, stdout and stderr into `log`. The destructor ends it: SIGTERM, then
/// SIGKILL after 5 s.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
  }
  ~Child() { terminate(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }

  void terminate() {
    if (!running()) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 250 && running(); ++i) std::this_thread::sleep_for(20ms);
    if (running()) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
};

/// A port nobody listens on right now (bound, read back, released).
std::uint16_t freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string urlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.') {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

/// One query of the dashboard: where it is and its PromQL with Grafana's variables expanded
/// as Grafana would for this test (job "ayaflow", all agents, 1 s scrapes).
struct DashboardQuery {
  std::string where;
  std::string expr;
};

std::vector<DashboardQuery> dashboardQueries() {
  const json dash = json::parse(readFile(kDashboard));
  std::vector<json> panels;
  for (const json& p : dash.at("panels")) {
    panels.push_back(p);
    for (const json& inner : p.value("panels", json::array())) panels.push_back(inner);
  }
  // Grafana's $__rate_interval is at least four scrape intervals; 1m covers it here.
  const std::map<std::string, std::string> values = {
      {"__rate_interval", "1m"}, {"__interval", "1s"}, {"__range", "1h"},
      {"job", "ayaflow"},        {"instance", ".+"},
  };
  const std::regex variable(R"(\$\{(\w+)(?::\w+)?\}|\$(\w+))");
  std::vector<DashboardQuery> out;
  for (const json& p : panels) {
    for (const json& t : p.value("targets", json::array())) {
      const std::string expr = t.at("expr").get<std::string>();
      std::string expanded;
      auto last = expr.cbegin();
      for (std::sregex_iterator it(expr.begin(), expr.end(), variable), end; it != end; ++it) {
        const std::string name = (*it)[1].matched ? (*it)[1].str() : (*it)[2].str();
        const auto value = values.find(name);
        if (value == values.end()) throw std::runtime_error("unknown variable in " + expr);
        expanded.append(last, (*it)[0].first);
        expanded += value->second;
        last = (*it)[0].second;
      }
      expanded.append(last, expr.cend());
      out.push_back({"panel " + std::to_string(p.at("id").get<int>()) + " \"" +
                         p.at("title").get<std::string>() + "\" " +
                         t.at("refId").get<std::string>(),
                     expanded});
    }
  }
  return out;
}

/// Every metric name (identifier) the dashboard's queries mention.
std::set<std::string> dashboardIdentifiers() {
  std::set<std::string> names;
  const std::regex identifier(R"([A-Za-z_:][A-Za-z0-9_:]*)");
  for (const DashboardQuery& q : dashboardQueries()) {
    for (std::sregex_iterator it(q.expr.begin(), q.expr.end(), identifier), end; it != end; ++it) {
      names.insert(it->str());
    }
  }
  return names;
}

/// A snapshot with every field set, every counter `step` times its base value: successive
/// scrapes see growing counters, so every rate() is positive.
api::MetricsSnapshot grownSnapshot(std::uint64_t step) {
  api::MetricsSnapshot s;
  const char* interfaces[] = {"eth0", "eth1"};
  const char* directions[] = {"ingress", "egress"};
  const char* protocols[] = {"tcp", "udp"};
  const char* families[] = {"ipv4", "ipv6"};
  std::uint64_t i = 1;
  for (const char* ifname : interfaces) {
    for (const char* direction : directions) {
      for (const char* protocol : protocols) {
        for (const char* family : families) {
          api::KernelCounterSample c{ifname,         direction,         protocol, family,
                                     100 * i * step, 150000 * i * step, i * step};
          s.packets_total += c.packets;
          s.bytes_total += c.bytes;
          (std::strcmp(direction, "ingress") == 0 ? s.events_lost_ingress : s.events_lost_egress) +=
              c.events_lost;
          s.kernel_counters.push_back(std::move(c));
          ++i;
        }
      }
    }
  }
  s.active_connections = 40 + step % 7;
  s.connections_expired = 3 * step;
  s.domains_resolved = 5 * step;
  s.deep_inspect_packets = 11 * step;
  s.events_read = s.packets_total - s.events_lost_ingress - s.events_lost_egress;
  s.events_malformed = step;
  s.rows_stored = 90 * step;
  s.rows_dropped.queue_full = 2 * step;
  s.rows_dropped.write_error = step;
  s.storage_queue_rows = 17;
  s.interfaces_attached = 2;
  s.ring_buffer_size_bytes = 262144;
  s.http.active_connections = 1;
  s.http.rejected_connections = step;
  s.http.denied_connections = 2 * step;
  s.http.accept_errors = step;
  s.http.responses = {step, 10 * step, step, 2 * step, step};
  s.stream.clients = 1;
  s.stream.clients_total = step;
  s.stream.clients_dropped = step;
  s.stream.frames_published = step;
  s.stream.frames_sent = 2 * step;
  return s;
}

TEST(DashboardFamilies, EveryFamilyOfRealMetricsOutputIsQueriedByTheDashboard) {
  const std::string text = api::renderMetrics(grownSnapshot(1), api::readProcessStats());
  const std::set<std::string> used = dashboardIdentifiers();
  std::istringstream lines(text);
  int families = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("# TYPE ", 0) != 0) continue;
    const std::string family = line.substr(7, line.find(' ', 7) - 7);
    ++families;
    EXPECT_TRUE(used.count(family)) << "no dashboard query uses " << family;
  }
  // At least the 28 ayaflow_* families of the first release and the 6 process_* ones, so
  // the loop above checked something.
  EXPECT_GE(families, 34) << text;
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
    api::addMetricsRoute(router_, [this] {
      api::MetricsSnapshot s = grownSnapshot(++scrapes_);
      s.http = server_->stats();  // the real server's counters
      return s;
    });
    api::HttpServerOptions opts;
    opts.address = kHost;
    opts.port = 0;
    server_ = std::make_unique<api::HttpServer>(opts, router_);
    server_->start();
  }

  /// monitoring/prometheus/prometheus.yml as shipped, except: 1 s intervals, the static
  /// target is this test's server, and the rule file path is absolute.
  std::string writeConfig(const std::string& dir) {
    YAML::Node config = YAML::LoadFile(kRoot + "/monitoring/prometheus/prometheus.yml");
    config["global"]["scrape_interval"] = "1s";
    config["global"]["scrape_timeout"] = "1s";
    config["global"]["evaluation_interval"] = "1s";
    YAML::Node rules = YAML::Node(YAML::NodeType::Sequence);
    for (const auto& file : config["rule_files"]) {
      rules.push_back(kRoot + "/monitoring/prometheus/" + file.as<std::string>());
    }
    config["rule_files"] = rules;
    int jobs = 0;
    for (auto job : config["scrape_configs"]) {
      if (job["job_name"].as<std::string>() != "ayaflow") continue;
      ++jobs;
      YAML::Node targets = YAML::Node(YAML::NodeType::Sequence);
      targets.push_back(std::string(kHost) + ":" + std::to_string(server_->port()));
      job["static_configs"][0]["targets"] = targets;
    }
    if (jobs != 1) throw std::runtime_error("prometheus.yml: want exactly one job `ayaflow`");
    const std::string path = dir + "/prometheus.yml";
    std::ofstream(path) << config;
    return path;
  }

  /// GET /api/v1/<what> of the Prometheus on `port`; null when it does not answer yet.
  static json api(std::uint16_t port, const std::string& what) {
    try {
      const test::HttpResult r = test::httpGet(kHost, port, "/api/v1/" + what, 5s);
      return json::parse(r.body);
    } catch (const std::exception&) {
      return nullptr;
    }
  }

  std::atomic<std::uint64_t> scrapes_{0};
  api::Router router_;
  std::unique_ptr<api::HttpServer> server_;
};

TEST_F(RealPrometheus, EveryDashboardQueryReturnsDataAndTheAlertRulesEvaluate) {
  TempDir dir;
  const std::uint16_t port = freePort();
  const std::string log = dir.path() + "/prometheus.log";
  Child prometheus({AYAFLOW_PROMETHEUS, "--config.file=" + writeConfig(dir.path()),
                    "--storage.tsdb.path=" + dir.path() + "/data",
                    "--web.listen-address=" + std::string(kHost) + ":" + std::to_string(port)},
                   log);

  // Wait for three successful scrapes: rate() then has samples to work on.
  const auto deadline = Clock::now() + 60s;
  bool scraped = false;
  while (!scraped && Clock::now() < deadline && prometheus.running()) {
    json r = api(port, "query?query=" + urlEncode("count_over_time(up{job=\"ayaflow\"}[1m])"));
    scraped = r.is_object() && r.value("status", "") == "success" && !r["data"]["result"].empty() &&
              std::stoi(r["data"]["result"][0]["value"][1].get<std::string>()) >= 3;
    if (!scraped) std::this_thread::sleep_for(200ms);
  }
  ASSERT_TRUE(scraped) << "Prometheus never scraped the server three times; its log:\n"
                       << readFile(log);

  // Every query, until all return data or the deadline passes (a rate needs two samples
  // inside its window; an expression error never goes away).
  const std::vector<DashboardQuery> queries = dashboardQueries();
  ASSERT_GE(queries.size(), 30u);
  std::vector<std::string> problems;
  do {
    problems.clear();
    for (const DashboardQuery& q : queries) {
      json r = api(port, "query?query=" + urlEncode(q.expr));
      if (!r.is_object() || r.value("status", "") != "success") {
        problems.push_back(q.where + ": " + q.expr + " -> " +
                           (r.is_null() ? "no answer" : r.dump()));
      } else if (r["data"]["result"].empty()) {
        problems.push_back(q.where + ": " + q.expr + " -> no data");
      }
    }
    if (!problems.empty()) std::this_thread::sleep_for(500ms);
  } while (!problems.empty() && Clock::now() < deadline);
  for (const std::string& p : problems) ADD_FAILURE() << p;

  // A few values, to see the expansion gave the intended series: one agent up, the
  // two interfaces and both directions.
  const auto first = [&](const std::string& expr) {
    const json r = api(port, "query?query=" + urlEncode(expr));
    return r.at("data").at("result").at(0).at("value").at(1).get<std::string>();
  };
  EXPECT_EQ(first("sum(up{job=\"ayaflow\", instance=~\".+\"})"), "1");
  EXPECT_EQ(first("sum(ayaflow_interfaces_attached{job=\"ayaflow\", instance=~\".+\"})"), "2");
  EXPECT_EQ(first("count(count by (interface) (ayaflow_interface_packets_total))"), "2");
  EXPECT_EQ(first("count(count by (direction) (ayaflow_events_lost_total))"), "2");

  // alerts.yml loaded and every rule evaluated without error.
  std::size_t expected_rules = 0;
  for (const auto& group : YAML::LoadFile(kRoot + "/monitoring/prometheus/alerts.yml")["groups"]) {
    expected_rules += group["rules"].size();
  }
  ASSERT_GT(expected_rules, 0u);
  json rules;
  std::vector<std::string> unhealthy;
  std::size_t count = 0;
  do {
    rules = api(port, "rules");
    unhealthy.clear();
    count = 0;
    if (rules.is_object() && rules.value("status", "") == "success") {
      for (const json& group : rules["data"]["groups"]) {
        for (const json& rule : group["rules"]) {
          ++count;
          if (rule.value("health", "") != "ok") unhealthy.push_back(rule.dump());
        }
      }
    }
    if (count == 0 || !unhealthy.empty()) std::this_thread::sleep_for(500ms);
  } while ((count == 0 || !unhealthy.empty()) && Clock::now() < deadline + 10s);
  EXPECT_EQ(count, expected_rules) << rules.dump(2);
  for (const std::string& u : unhealthy) ADD_FAILURE() << "rule not healthy: " << u;

  // The snapshot's write errors keep growing: AyaflowStorageWriteErrors (no `for`) fires.
  bool firing = false;
  while (!firing && Clock::now() < deadline + 20s) {
    json alerts = api(port, "alerts");
    if (alerts.is_object()) {
      for (const json& a : alerts["data"]["alerts"]) {
        firing |= a["labels"].value("alertname", "") == "AyaflowStorageWriteErrors" &&
                  a.value("state", "") == "firing";
      }
    }
    if (!firing) std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(firing) << api(port, "alerts").dump(2);
  prometheus.terminate();
}

}  // namespace
}  // namespace ayaflow::deploy
