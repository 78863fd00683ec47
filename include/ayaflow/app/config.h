// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "ayaflow/api/http_server.h"
#include "ayaflow/capture/capture_options.h"
#include "ayaflow/export/export_options.h"
#include "ayaflow/health/health_probes.h"
#include "ayaflow/inspect/deep_inspection.h"
#include "ayaflow/inspect/reverse_resolver.h"
#include "ayaflow/k8s/pod_watcher.h"
#include "ayaflow/pipeline/pipeline.h"
#include "ayaflow/store/store_options.h"

namespace ayaflow::app {

/// Logging settings.
struct LogOptions {
  bool quiet = false;    ///< errors only (wins over verbose)
  bool verbose = false;  ///< debug logging, libbpf debug output included
};

/// Everything the agent is configured with: the options of each component, as that
/// component takes them (the in-class defaults are the documented defaults). Built once by
/// parseConfig(), then passed around as `const Config&`. Each setting (flag, environment
/// variable, YAML key, help, default shown) is one row of the table in settings.cpp.
struct Config {
  capture::CaptureOptions capture;
  pipeline::PipelineOptions pipeline;
  store::StoreOptions store;
  api::HttpServerOptions http;
  inspect::DeepInspection::Options inspection;  ///< deep inspection's name tables and streams
  bool resolve_dns = false;  ///< reverse DNS for addresses (inspect::ReverseResolver)
  inspect::ReverseResolver::Options resolver;  ///< its cache and queue, when resolve_dns
  /// Pod and node names from the container runtime (node_name "": the host name).
  k8s::PodWatcherOptions pods;
  /// Label sets of the workload metrics (k8s::WorkloadMetrics) before the rest is summed.
  std::size_t workload_series_limit = 500;
  /// The kernel tracing probes: smoothed RTT, retransmissions, drops with reasons.
  health::HealthOptions health;
  LogOptions log;
  /// Flow export (docs/export.md): both off unless configured.
  exporter::ClickHouseOptions clickhouse;
  exporter::IpfixOptions ipfix;
  /// The file the ClickHouse password is read from at start-up (or AYAFLOW_CLICKHOUSE_PASSWORD).
  std::string clickhouse_password_file;
  std::optional<std::string> config_path;  ///< the YAML file that was read, if any
};

/// Result of parseConfig(): either a Config to run with, or text to print and an exit code.
struct ParseOutcome {
  bool exit_now = false;  // --help / --version handled: print `output`, exit with `exit_code`
  int exit_code = 0;
  std::string output;  // help/version text for stdout
  Config config;
};

/// Environment lookup, injected so tests need not touch the process environment.
/// Returns nullopt when the variable is not set. An empty value is treated as unset.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;

/// The real environment (::getenv). Not thread-safe against concurrent setenv, like getenv.
EnvLookup processEnvironment();

/// Parses flags, env vars (AYAFLOW_*) and the YAML file named by -c/--config or AYAFLOW_CONFIG,
/// with precedence flag > env > YAML > default, per setting. A flag that is given always wins,
/// even when it equals the default.
///
/// Throws ayaflow::ConfigError with one line naming the flag, env var or YAML key and the bad
/// value, e.g. "--port: 70000 is not a port (1-65535)", "config.yaml: unknown key 'prot' (did you
/// mean 'port'?)", "AYAFLOW_ALLOWED_IPS: '10.0.0.0/33' is not a valid CIDR",
/// "config.yaml: 'port' must be an integer". Checks syntax only; see validateEnvironment().
/// Thread: any; no global state.
ParseOutcome parseConfig(int argc, const char* const* argv, const EnvLookup& env);

/// Checks what the config refers to on this host: every interface named (not a pattern)
/// exists (if_nametoindex), and the database's directory exists and is writable (and the
/// file, if present, is a writable file). Throws ayaflow::ConfigError naming the flag, e.g.
/// "--interface: no such interface 'eth9'".
void validateEnvironment(const Config& config);

/// One documented setting, for tests that hold the documentation to the code.
struct SettingDoc {
  std::string flag;           ///< "--port"
  std::string env;            ///< "AYAFLOW_PORT"
  std::string yaml;           ///< "port"
  std::string default_value;  ///< as docs/configuration.md shows it: "3000", "keep forever"
};

/// Every setting, in --help order.
std::vector<SettingDoc> settingDocs();

}  // namespace ayaflow::app
