// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// A real Prometheus server (the Debian `prometheus` package) for tests: the shipped
// monitoring/prometheus/prometheus.yml and alerts.yml pointed at one target, queried through
// its HTTP API, and the Grafana dashboard's expressions ready to evaluate.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ayaflow::test {

/// What to run and where the shipped monitoring files are.
struct PrometheusOptions {
  std::string binary;          ///< the `prometheus` executable
  std::string monitoring_dir;  ///< the repository's monitoring/ directory
  std::string target;          ///< "host:port" that job "ayaflow" scrapes
};

/// A Prometheus server as a child process, for the test that owns it (not thread-safe).
///
/// Its configuration is monitoring/prometheus/prometheus.yml as shipped, except: 1 s scrape and
/// evaluation intervals, the static target of job "ayaflow" is `options.target`, and the rule
/// files (alerts.yml) are given by absolute path. Configuration, TSDB and log live in a
/// temporary directory. The destructor stops the server (SIGTERM, SIGKILL after 5 s) and
/// removes the directory. The constructor throws std::runtime_error when the configuration
/// cannot be written or the process cannot be started.
class PrometheusRunner {
 public:
  explicit PrometheusRunner(PrometheusOptions options);
  ~PrometheusRunner();
  PrometheusRunner(const PrometheusRunner&) = delete;
  PrometheusRunner& operator=(const PrometheusRunner&) = delete;

  /// Waits until /-/ready answers 200. If the free port picked was taken in between, starts
  /// again on another one. false when the server exited or `timeout` passed.
  bool waitReady(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  /// Waits until job "ayaflow" has `n` successful scrapes in the last minute.
  bool waitForScrapes(int n, std::chrono::milliseconds timeout);
  bool running();
  /// Stops the server (idempotent).
  void stop();

  std::uint16_t port() const { return port_; }
  const std::string& dir() const { return dir_; }
  /// The server's output so far.
  std::string log() const;

  /// GET /api/v1/<what>, parsed; null when the server does not answer or the body is not JSON.
  nlohmann::json api(const std::string& what) const;
  /// GET /api/v1/query?query=<promql> (an instant query), parsed; null as api().
  nlohmann::json query(const std::string& promql) const;
  /// The value of the first sample of an instant query as Prometheus prints it ("42", "NaN");
  /// "" when the query failed or returned nothing.
  std::string value(const std::string& promql) const;

 private:
  void start();

  PrometheusOptions options_;
  std::string dir_;
  std::string config_path_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

/// Percent-encodes everything but [A-Za-z0-9_.-] (a query string value).
std::string urlEncode(const std::string& text);

/// One expression of the dashboard: where it is ("panel 11 \"Packets / s\" A") and its PromQL.
struct DashboardQuery {
  std::string where;
  std::string expr;
};

/// Every target expression of a Grafana dashboard JSON (panels and panels nested in rows),
/// with Grafana's variables expanded as Grafana would for a 1 s scrape interval, job
/// "ayaflow" and all instances: $__rate_interval 1m, $__interval 1s, $__range 1h. Throws
/// std::runtime_error on an unknown variable, nlohmann::json errors on a malformed file.
std::vector<DashboardQuery> dashboardQueries(const std::string& dashboard_path);

/// Evaluates every query, again until each returns data or `deadline` passes (a rate needs
/// two samples in its window). Returns one line per query that failed or returned no data at
/// the last attempt; empty when all returned data.
std::vector<std::string> queriesWithoutData(const PrometheusRunner& prometheus,
                                            const std::vector<DashboardQuery>& queries,
                                            std::chrono::steady_clock::time_point deadline);

/// Waits until Prometheus reports every rule of monitoring/prometheus/alerts.yml loaded and
/// healthy (evaluated without error), or `deadline`. Returns the problems; empty when none.
std::vector<std::string> alertRuleProblems(const PrometheusRunner& prometheus,
                                           const std::string& monitoring_dir,
                                           std::chrono::steady_clock::time_point deadline);

}  // namespace ayaflow::test
