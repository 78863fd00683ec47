// SPDX-License-Identifier: MIT OR Apache-2.0
// /metrics against the real Prometheus tools from the Debian `prometheus` package (api
// tier): `promtool check metrics` lints the exposition, and a real Prometheus server
// scrapes the real HttpServer; the values it stores equal /api/stats exactly.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/capture/capture.h"
#include "ayaflow/common/metrics.h"
#include "fake_live_source.h"
#include "http_client.h"
#include "metrics_text.h"

extern char** environ;

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr const char* kHost = "127.0.0.1";

bool inCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::strcmp(ci, "true") == 0 || std::strcmp(ci, "1") == 0);
}

/// Skips (fails under CI=true: there the tools are installed by scripts/install-deps.sh)
/// when a tool of the `prometheus` package is missing.
#define REQUIRE_TOOL(path)                                                     \
  do {                                                                         \
    const std::string tool_path = (path);                                      \
    if (tool_path.empty() || ::access(tool_path.c_str(), X_OK) != 0) {         \
      if (inCi()) FAIL() << "missing " #path "; CI=true forbids skipping";     \
      GTEST_SKIP() << "Debian package `prometheus` not installed (" #path ")"; \
    }                                                                          \
  } while (0)

/// A temporary directory, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/ayaflow-prom-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    const std::string command = "rm -rf '" + path_ + "'";
    if (std::system(command.c_str()) != 0)
      std::fprintf(stderr, "cannot remove %s\n", path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// A child process with stdin from `input` (or /dev/null) and stdout+stderr into `log`.
/// The destructor always ends it: SIGTERM, then SIGKILL after 5 s.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log,
        const std::string& input = "/dev/null") {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, input.c_str(), O_RDONLY, 0);
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

  /// Waits for exit (up to `timeout`); the exit status, or -1 if still running.
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (pid_ > 0) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (Clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(20ms);
    }
    return status_;
  }
  bool running() { return wait(0ms) == -1; }

  void terminate() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    if (wait(5s) == -1) {
      ::kill(pid_, SIGKILL);
      wait(5s);
    }
  }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

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

class PrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // One set of values feeds both /api/stats and /metrics, as in the agent.
    capture_ = fake::distinctCaptureStats();
    source_.totals_value = {capture_.packets, capture_.bytes};
    source_.active = capture_.active_connections;
    source_.uptime = 10.0;
    addCoreRoutes(router_, source_);
    addStreamRoute(router_, hub_);
    registry_.add([this] { return capture::captureFamilies(capture_); });
    registry_.add([this] { return httpServerFamilies(server_->stats()); });
    registry_.add(hub_.metrics());
    registry_.add(processMetrics());
    addMetricsRoute(router_, registry_);
    HttpServerOptions opts;
    opts.address = kHost;
    opts.port = 0;
    server_ = std::make_unique<HttpServer>(opts, router_);
    server_->start();
  }

  capture::CaptureStats capture_;
  common::MetricsRegistry registry_;
  fake::FakeLiveSource source_;
  StreamHub hub_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(PrometheusTest, ContentTypeAndPromtoolCheckMetricsPasses) {
  REQUIRE_TOOL(AYAFLOW_PROMTOOL);
  const test::HttpResult r = test::httpGet(kHost, server_->port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r.header("cache-control"), "");  // not under /api/
  const auto parsed = fake::parseMetrics(r.body);
  for (const char* family :
       {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
        "process_max_fds", "process_start_time_seconds", "process_virtual_memory_bytes"}) {
    EXPECT_TRUE(parsed.has(family)) << family;
  }

  TempDir dir;
  const std::string input = dir.path() + "/metrics.txt";
  std::ofstream(input) << r.body;
  const std::string log = dir.path() + "/promtool.log";
  Child promtool({AYAFLOW_PROMTOOL, "check", "metrics"}, log, input);
  const int status = promtool.wait(30s);
  const std::string output = readFile(log);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "") << "lint findings:\n" << output;
}

TEST_F(PrometheusTest, PromtoolRejectsBrokenExpositionSoTheCheckAboveMeansSomething) {
  REQUIRE_TOOL(AYAFLOW_PROMTOOL);
  TempDir dir;
  const std::string input = dir.path() + "/bad.txt";
  // A counter without the _total suffix: a lint finding promtool must report.
  std::ofstream(input) << "# HELP ayaflow_packets x\n# TYPE ayaflow_packets counter\n"
                          "ayaflow_packets 1\n";
  const std::string log = dir.path() + "/promtool.log";
  Child promtool({AYAFLOW_PROMTOOL, "check", "metrics"}, log, input);
  EXPECT_NE(promtool.wait(30s), 0) << readFile(log);
}

TEST_F(PrometheusTest, RealPrometheusScrapesValuesEqualToApiStats) {
  REQUIRE_TOOL(AYAFLOW_PROMETHEUS);
  TempDir dir;
  const std::uint16_t prom_port = freePort();
  const std::string config = dir.path() + "/prometheus.yml";
  std::ofstream(config) << "global:\n"
                           "  scrape_interval: 1s\n"
                           "  scrape_timeout: 1s\n"
                           "scrape_configs:\n"
                           "  - job_name: ayaflow\n"
                           "    static_configs:\n"
                           "      - targets: ['127.0.0.1:"
                        << server_->port() << "']\n";
  const std::string log = dir.path() + "/prometheus.log";
  Child prometheus(
      {AYAFLOW_PROMETHEUS, "--config.file=" + config, "--storage.tsdb.path=" + dir.path() + "/data",
       "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
      log);

  // Instant query through Prometheus' HTTP API; "" until the series exists.
  auto query = [&](const std::string& promql) -> std::string {
    std::string encoded;
    for (unsigned char c : promql) {
      if (std::isalnum(c) || c == '_') {
        encoded.push_back(static_cast<char>(c));
      } else {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", c);
        encoded += hex;
      }
    }
    const test::HttpResult r =
        test::httpGet(kHost, prom_port, "/api/v1/query?query=" + encoded, 5s);
    if (r.status != 200) return "";
    const json body = json::parse(r.body);
    const json& result = body.at("data").at("result");
    if (result.empty()) return "";
    return result.at(0).at("value").at(1).get<std::string>();
  };

  // Bounded wait: start-up plus a couple of scrape intervals.
  std::string packets;
  const auto deadline = Clock::now() + 60s;
  while (Clock::now() < deadline && prometheus.running()) {
    try {
      packets = query("ayaflow_packets_total");
    } catch (const std::exception&) {
      packets.clear();  // not listening yet
    }
    if (!packets.empty()) break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_FALSE(packets.empty()) << "Prometheus never stored a scrape; its log:\n" << readFile(log);

  const test::HttpResult stats_reply = test::httpGet(kHost, server_->port(), "/api/stats");
  ASSERT_EQ(stats_reply.status, 200);
  const json stats = json::parse(stats_reply.body);
  EXPECT_EQ(packets, std::to_string(stats.at("total_packets").get<std::uint64_t>()));
  EXPECT_EQ(query("ayaflow_bytes_total"),
            std::to_string(stats.at("total_bytes").get<std::uint64_t>()));
  EXPECT_EQ(query("ayaflow_active_connections"),
            std::to_string(stats.at("active_connections").get<std::uint64_t>()));
  // The breakdown adds up to the totals, as Prometheus sees it too.
  EXPECT_EQ(query("sum(ayaflow_interface_packets_total)"), packets);
  EXPECT_EQ(query("sum(ayaflow_events_lost_total)"), "5");
  EXPECT_EQ(query("up{job=\"ayaflow\"}"), "1");
  EXPECT_EQ(query("ayaflow_build_info"), "1");
  prometheus.terminate();
}

}  // namespace
}  // namespace ayaflow::api
