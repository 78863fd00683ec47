// SPDX-License-Identifier: MIT OR Apache-2.0
#include "prometheus_runner.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

#include "http_client.h"

extern char** environ;

namespace ayaflow::test {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kHost = "127.0.0.1";

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A loopback port nobody listens on right now (bound, read back, released).
std::uint16_t freeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok) throw std::runtime_error("no free loopback port");
  return ntohs(addr.sin_port);
}

/// prometheus.yml as shipped with the changes PrometheusRunner documents.
std::string writeConfig(const PrometheusOptions& options, const std::string& dir) {
  const std::string prometheus_dir = options.monitoring_dir + "/prometheus";
  YAML::Node config = YAML::LoadFile(prometheus_dir + "/prometheus.yml");
  config["global"]["scrape_interval"] = "1s";
  config["global"]["scrape_timeout"] = "1s";
  config["global"]["evaluation_interval"] = "1s";
  YAML::Node rules = YAML::Node(YAML::NodeType::Sequence);
  for (const auto& file : config["rule_files"]) {
    rules.push_back(prometheus_dir + "/" + file.as<std::string>());
  }
  config["rule_files"] = rules;
  int jobs = 0;
  for (auto job : config["scrape_configs"]) {
    if (job["job_name"].as<std::string>() != "ayaflow") continue;
    ++jobs;
    YAML::Node targets = YAML::Node(YAML::NodeType::Sequence);
    targets.push_back(options.target);
    job["static_configs"][0]["targets"] = targets;
  }
  if (jobs != 1) throw std::runtime_error("prometheus.yml: want exactly one job `ayaflow`");
  const std::string path = dir + "/prometheus.yml";
  std::ofstream out(path);
  out << config;
  if (!out) throw std::runtime_error("cannot write " + path);
  return path;
}

}  // namespace

PrometheusRunner::PrometheusRunner(PrometheusOptions options) : options_(std::move(options)) {
  std::string pattern = "/tmp/ayaflow-prometheus-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir_ = pattern;
  try {
    config_path_ = writeConfig(options_, dir_);
    start();
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
}

PrometheusRunner::~PrometheusRunner() {
  stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (ec) std::fprintf(stderr, "cannot remove %s: %s\n", dir_.c_str(), ec.message().c_str());
}

void PrometheusRunner::start() {
  port_ = freeLoopbackPort();
  const std::string log = dir_ + "/prometheus.log";
  const std::vector<std::string> argv = {
      options_.binary, "--config.file=" + config_path_, "--storage.tsdb.path=" + dir_ + "/data",
      "--web.listen-address=" + std::string(kHost) + ":" + std::to_string(port_)};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int rc = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    throw std::runtime_error("posix_spawn " + options_.binary + ": " + std::strerror(rc));
  }
}

bool PrometheusRunner::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) pid_ = -1;
  return pid_ > 0;
}

void PrometheusRunner::stop() {
  if (!running()) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 250 && running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (running()) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

std::string PrometheusRunner::log() const { return readFile(dir_ + "/prometheus.log"); }

bool PrometheusRunner::waitReady(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int restarts = 0;
  while (Clock::now() < deadline) {
    if (!running()) {
      // Someone took the port between freeLoopbackPort() and Prometheus' bind: retry.
      if (++restarts <= 5 && log().find("address already in use") != std::string::npos) {
        start();
        continue;
      }
      return false;
    }
    try {
      if (httpGet(kHost, port_, "/-/ready", std::chrono::seconds(2)).status == 200) return true;
    } catch (const std::exception&) {
      // not listening yet
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

bool PrometheusRunner::waitForScrapes(int n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline && running()) {
    const std::string count = value("count_over_time(up{job=\"ayaflow\"}[1m])");
    if (!count.empty() && std::stoi(count) >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

json PrometheusRunner::api(const std::string& what) const {
  try {
    const HttpResult r = httpGet(kHost, port_, "/api/v1/" + what, std::chrono::seconds(5));
    return json::parse(r.body);
  } catch (const std::exception&) {
    return nullptr;
  }
}

json PrometheusRunner::query(const std::string& promql) const {
  return api("query?query=" + urlEncode(promql));
}

std::string PrometheusRunner::value(const std::string& promql) const {
  const json r = query(promql);
  if (!r.is_object() || r.value("status", "") != "success") return "";
  const json& result = r["data"]["result"];
  if (!result.is_array() || result.empty()) return "";
  return result[0]["value"][1].get<std::string>();
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

std::vector<DashboardQuery> dashboardQueries(const std::string& dashboard_path) {
  const json dash = json::parse(readFile(dashboard_path));
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

std::vector<std::string> queriesWithoutData(const PrometheusRunner& prometheus,
                                            const std::vector<DashboardQuery>& queries,
                                            Clock::time_point deadline) {
  std::vector<std::string> problems;
  do {
    problems.clear();
    for (const DashboardQuery& q : queries) {
      const json r = prometheus.query(q.expr);
      if (!r.is_object() || r.value("status", "") != "success") {
        problems.push_back(q.where + ": " + q.expr + " -> " +
                           (r.is_null() ? "no answer" : r.dump()));
      } else if (r["data"]["result"].empty()) {
        problems.push_back(q.where + ": " + q.expr + " -> no data");
      }
    }
    if (!problems.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  } while (!problems.empty() && Clock::now() < deadline);
  return problems;
}

std::vector<std::string> alertRuleProblems(const PrometheusRunner& prometheus,
                                           const std::string& monitoring_dir,
                                           Clock::time_point deadline) {
  std::size_t expected = 0;
  for (const auto& group : YAML::LoadFile(monitoring_dir + "/prometheus/alerts.yml")["groups"]) {
    expected += group["rules"].size();
  }
  if (expected == 0) return {"alerts.yml has no rules"};
  std::vector<std::string> problems;
  do {
    problems.clear();
    const json rules = prometheus.api("rules");
    std::size_t count = 0;
    if (rules.is_object() && rules.value("status", "") == "success") {
      for (const json& group : rules["data"]["groups"]) {
        for (const json& rule : group["rules"]) {
          ++count;
          if (rule.value("health", "") != "ok")
            problems.push_back("rule not healthy: " + rule.dump());
        }
      }
    }
    if (count != expected) {
      problems.push_back("Prometheus has " + std::to_string(count) + " rules, alerts.yml " +
                         std::to_string(expected) + ": " + rules.dump(2));
    }
    if (!problems.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
  } while (!problems.empty() && Clock::now() < deadline);
  return problems;
}

}  // namespace ayaflow::test
