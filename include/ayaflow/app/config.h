// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ayaflow/common/cidr.h"

namespace ayaflow::app {

/// How the TC program is attached: TCX links (kernel >= 6.6) or netlink tc; auto tries TCX first.
enum class AttachMode { kAuto, kTcx, kTc };

/// Everything the agent is configured with. A plain aggregate: built once by parseConfig(),
/// then passed around as `const Config&`. The in-class defaults are the documented defaults.
struct Config {
  std::vector<std::string> interfaces{"eth0"};  // -i; non-empty, unique, each 1-15 chars
  std::uint16_t port = 3000;                    // -p; HTTP port, 1-65535
  std::string listen_address = "0.0.0.0";       // HTTP bind address, an IPv4/IPv6 literal
  std::string db_path = "traffic.db";           // SQLite file
  std::uint32_t connection_timeout_s = 60;      // idle seconds before a live entry is dropped; >= 1
  std::optional<std::uint64_t> data_retention_s;  // delete rows older than this; nullopt = off
  std::uint32_t aggregation_window_s = 0;         // 0 = a row per packet, N = per flow per N s
  std::vector<common::Cidr> allowed_ips;          // HTTP allowlist; empty = everyone
  std::optional<std::string> config_path;         // YAML file that was read, if any
  bool quiet = false;                             // errors only
  bool verbose = false;                           // debug logging, libbpf debug output included
  bool deep_inspect = false;                      // DNS + TLS SNI domain extraction
  bool enable_ipv6 = false;                       // capture IPv6 as well as IPv4
  bool resolve_dns = false;                       // reverse DNS for addresses
  std::uint32_t ring_buffer_size = 256 * 1024;    // bytes; power of two, 4 KiB..1 GiB
  std::uint32_t flow_table_size = 16384;          // aggregated mode: entries per kernel table
  AttachMode attach_mode = AttachMode::kAuto;     // TCX, netlink tc or auto
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

/// Checks what the config refers to on this host: every interface exists (if_nametoindex), and
/// db_path's directory exists and is writable (and db_path, if present, is a writable file).
/// Throws ayaflow::ConfigError naming the flag, e.g. "--interface: no such interface 'eth9'".
void validateEnvironment(const Config& config);

/// "auto", "tcx" or "tc".
std::string toString(AttachMode mode);

}  // namespace ayaflow::app
