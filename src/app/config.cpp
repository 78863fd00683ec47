// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/app/config.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>
#include <string_view>
#include <utility>

// CLI11 is header-only and slow to compile: this is the only file that includes it.
#include <yaml-cpp/yaml.h>
#include <CLI/CLI.hpp>

#include "ayaflow/common/system_error.h"

#ifndef AYAFLOW_VERSION
#define AYAFLOW_VERSION "unknown"
#endif

namespace ayaflow::app {
namespace {

constexpr std::uint64_t kMaxRetentionS = 100ull * 365 * 24 * 3600;  // fits in int64 nanoseconds
constexpr std::uint64_t kMinRingBuffer = 4096;                      // one page
constexpr std::uint64_t kMaxRingBuffer = 1ull << 30;                // 1 GiB
constexpr std::uint64_t kMinFlowTable = 1024;
constexpr std::uint64_t kMaxFlowTable = 1ull << 20;
constexpr std::size_t kMaxConfigFileBytes = 1 << 20;
constexpr std::size_t kMaxIfNameLen = IFNAMSIZ - 1;

// ---------------------------------------------------------------------------------------------
// Error helpers: every error is one line "<label>: <what>".

/// Replaces control characters so a message never spans lines, whatever the input contained.
std::string oneLine(std::string text) {
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return text;
}

[[noreturn]] void fail(const std::string& label, const std::string& what) {
  throw ConfigError(oneLine(label + ": " + what));
}

/// YAML type errors read as a sentence: "config.yaml: 'port' must be an integer".
[[noreturn]] void failType(const std::string& key_label, const std::string& must_be) {
  throw ConfigError(oneLine(key_label + " must be " + must_be));
}

/// Shows a user value in a message: numbers as-is, anything else in single quotes; long values
/// are cut so one bad value cannot flood the log.
std::string show(std::string_view value) {
  constexpr std::size_t kMaxShown = 80;
  std::string text(value.substr(0, kMaxShown));
  if (value.size() > kMaxShown) text += "...";
  const bool numeric = !value.empty() && value.size() <= kMaxShown &&
                       std::all_of(value.begin(), value.end(), [](char c) {
                         return (c >= '0' && c <= '9') || c == '-' || c == '+';
                       });
  return numeric ? text : "'" + text + "'";
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view text) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  return text;
}

// ---------------------------------------------------------------------------------------------
// Value parsers shared by every source. `label` names where the text came from.

/// Strict unsigned decimal: digits only (no sign, no spaces, no junk), no overflow.
std::optional<std::uint64_t> parseDecimal(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::uint64_t parseRange(const std::string& label, std::string_view text, std::uint64_t min,
                         std::uint64_t max, const char* what, const char* hint = "") {
  const auto value = parseDecimal(text);
  if (!value || *value < min || *value > max) {
    fail(label, show(text) + " is not " + what + " (" + std::to_string(min) + "-" +
                    std::to_string(max) + ")" + hint);
  }
  return *value;
}

std::uint16_t parsePort(const std::string& label, std::string_view text) {
  return static_cast<std::uint16_t>(parseRange(label, text, 1, 65535, "a port"));
}

bool parseBool(const std::string& label, std::string_view text) {
  const std::string word = lower(text);
  if (word == "1" || word == "true" || word == "yes" || word == "on") return true;
  if (word == "0" || word == "false" || word == "no" || word == "off") return false;
  fail(label, show(text) + " is not a boolean (true/false, yes/no, on/off, 1/0)");
}

/// Bytes with an optional K/M/G suffix in binary units (256K = 262144); a power of two in
/// [4 KiB, 1 GiB], as the kernel requires for BPF_MAP_TYPE_RINGBUF.
std::uint32_t parseRingBufferSize(const std::string& label, std::string_view text) {
  std::string_view digits = text;
  std::uint64_t unit = 1;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K':
      case 'k':
        unit = 1ull << 10;
        break;
      case 'M':
      case 'm':
        unit = 1ull << 20;
        break;
      case 'G':
      case 'g':
        unit = 1ull << 30;
        break;
      default:
        break;
    }
    if (unit != 1) digits.remove_suffix(1);
  }
  const auto count = parseDecimal(digits);
  if (!count) fail(label, show(text) + " is not a size (bytes, or a number with a K/M/G suffix)");
  const std::uint64_t bytes =
      *count > kMaxRingBuffer / unit ? kMaxRingBuffer + 1 : *count * unit;  // saturate
  const bool power_of_two = bytes != 0 && (bytes & (bytes - 1)) == 0;
  if (!power_of_two || bytes < kMinRingBuffer || bytes > kMaxRingBuffer) {
    fail(label, show(text) + " is not a power of two from 4096 (4K) to 1073741824 (1G)");
  }
  return static_cast<std::uint32_t>(bytes);
}

std::string parseListenAddress(const std::string& label, std::string_view text) {
  const std::string addr(text);
  unsigned char buf[sizeof(in6_addr)];
  if (addr.find('\0') != std::string::npos ||
      (inet_pton(AF_INET, addr.c_str(), buf) != 1 && inet_pton(AF_INET6, addr.c_str(), buf) != 1)) {
    fail(label, show(text) + " is not an IPv4 or IPv6 address");
  }
  return addr;
}

std::string parseDbPath(const std::string& label, std::string_view text) {
  if (text.empty() || text.find('\0') != std::string_view::npos) {
    fail(label, show(text) + " is not a file path");
  }
  return std::string(text);
}

AttachMode parseAttachMode(const std::string& label, std::string_view text) {
  const std::string word = lower(text);
  if (word == "auto") return AttachMode::kAuto;
  if (word == "tcx") return AttachMode::kTcx;
  if (word == "tc") return AttachMode::kTc;
  fail(label, show(text) + " is not an attach mode (auto, tcx or tc)");
}

/// The kernel's dev_valid_name(): 1..IFNAMSIZ-1 chars, not "." or "..", no '/', ':' or space.
bool validInterfaceName(std::string_view name) {
  if (name.empty() || name.size() > kMaxIfNameLen || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) != 0 ||
           static_cast<unsigned char>(c) < 0x20;
  });
}

// ---------------------------------------------------------------------------------------------
// Raw values: the text a setting got from its winning source, before conversion.

/// A setting's value as found in one source, with the label errors must name.
struct Raw {
  std::string label;               // "--port", "AYAFLOW_PORT" or "config.yaml: 'port'"
  std::vector<std::string> items;  // one per flag occurrence, env value or YAML scalar/entry
  bool split_commas = true;        // false for YAML sequence entries (the list is the structure)
};

/// Splits comma lists ("a, b,c"), trimming blanks around items; rejects empty items.
std::vector<std::string> splitItems(const Raw& raw) {
  std::vector<std::string> out;
  for (const std::string& item : raw.items) {
    if (!raw.split_commas) {
      out.push_back(item);
      continue;
    }
    std::string_view rest = item;
    while (true) {
      const auto comma = rest.find(',');
      const std::string_view part = trim(rest.substr(0, comma));
      if (part.empty()) fail(raw.label, "empty item in " + show(item));
      out.emplace_back(part);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return out;
}

std::vector<std::string> parseInterfaces(const Raw& raw) {
  std::vector<std::string> out;
  for (std::string& name : splitItems(raw)) {
    if (!validInterfaceName(name)) {
      fail(raw.label, show(name) + " is not an interface name (1-" + std::to_string(kMaxIfNameLen) +
                          " characters, no '/', ':' or spaces)");
    }
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(std::move(name));
  }
  if (out.empty()) fail(raw.label, "at least one interface is needed");
  return out;
}

std::vector<common::Cidr> parseCidrs(const Raw& raw) {
  std::vector<common::Cidr> out;
  for (const std::string& text : splitItems(raw)) {
    const auto cidr = common::Cidr::parse(text);
    if (!cidr) fail(raw.label, show(text) + " is not a valid CIDR");
    if (std::find(out.begin(), out.end(), *cidr) == out.end()) out.push_back(*cidr);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The settings table: one row per configurable value, shared by CLI11, env and YAML.

/// What a YAML value must look like before its text is parsed.
enum class YamlType { kInteger, kBoolean, kString, kSize, kList };

enum class Key {
  kInterface,
  kPort,
  kListenAddress,
  kDbPath,
  kConnectionTimeout,
  kDataRetention,
  kAggregationWindow,
  kAllowedIps,
  kQuiet,
  kVerbose,
  kDeepInspect,
  kEnableIpv6,
  kResolveDns,
  kRingBufferSize,
  kFlowTableSize,
  kAttachMode,
};

struct Setting {
  Key key;
  const char* flags;      // CLI11 names, e.g. "-p,--port"
  const char* long_flag;  // the name errors use, e.g. "--port"
  const char* env;
  const char* yaml;
  YamlType yaml_type;
  const char* type_name;  // CLI11 placeholder; nullptr for boolean flags
  const char* help;
};

// clang-format off
constexpr Setting kSettings[] = {
  {Key::kInterface, "-i,--interface", "--interface", "AYAFLOW_INTERFACE", "interface",
   YamlType::kList, "NAME[,NAME...]",
   "Interface(s) to attach to; repeat or comma-separate (default eth0)"},
  {Key::kPort, "-p,--port", "--port", "AYAFLOW_PORT", "port", YamlType::kInteger, "PORT",
   "HTTP port, 1-65535 (default 3000)"},
  {Key::kListenAddress, "--listen-address", "--listen-address", "AYAFLOW_LISTEN_ADDRESS",
   "listen_address", YamlType::kString, "ADDR",
   "HTTP bind address, IPv4 or IPv6 literal (default 0.0.0.0)"},
  {Key::kDbPath, "--db-path", "--db-path", "AYAFLOW_DB_PATH", "db_path", YamlType::kString,
   "FILE", "SQLite database file (default traffic.db)"},
  {Key::kConnectionTimeout, "--connection-timeout", "--connection-timeout",
   "AYAFLOW_CONNECTION_TIMEOUT", "connection_timeout", YamlType::kInteger, "SECONDS",
   "Idle seconds before a live connection is dropped, >= 1 (default 60)"},
  {Key::kDataRetention, "--data-retention", "--data-retention", "AYAFLOW_DATA_RETENTION",
   "data_retention_seconds", YamlType::kInteger, "SECONDS",
   "Delete stored rows older than this, >= 1 (default: keep forever)"},
  {Key::kAggregationWindow, "--aggregation-window", "--aggregation-window",
   "AYAFLOW_AGGREGATION_WINDOW", "aggregation_window_seconds", YamlType::kInteger, "SECONDS",
   "0 = one row per packet; N = one row per flow per N seconds (default 0)"},
  {Key::kAllowedIps, "--allowed-ips", "--allowed-ips", "AYAFLOW_ALLOWED_IPS", "allowed_ips",
   YamlType::kList, "CIDR[,CIDR...]",
   "Only these networks may reach the HTTP API; repeat or comma-separate (default: everyone)"},
  {Key::kQuiet, "-q,--quiet", "--quiet", "AYAFLOW_QUIET", "quiet", YamlType::kBoolean, nullptr,
   "Log errors only"},
  {Key::kVerbose, "-v,--verbose", "--verbose", "AYAFLOW_VERBOSE", "verbose", YamlType::kBoolean,
   nullptr, "Debug logging, libbpf messages included"},
  {Key::kDeepInspect, "--deep-inspect", "--deep-inspect", "AYAFLOW_DEEP_INSPECT", "deep_inspect",
   YamlType::kBoolean, nullptr, "Extract domains from DNS and TLS SNI"},
  {Key::kEnableIpv6, "--enable-ipv6", "--enable-ipv6", "AYAFLOW_ENABLE_IPV6", "enable_ipv6",
   YamlType::kBoolean, nullptr, "Capture IPv6 as well as IPv4"},
  {Key::kResolveDns, "--resolve-dns", "--resolve-dns", "AYAFLOW_RESOLVE_DNS", "resolve_dns",
   YamlType::kBoolean, nullptr, "Reverse-resolve addresses"},
  {Key::kRingBufferSize, "--ring-buffer-size", "--ring-buffer-size", "AYAFLOW_RING_BUFFER_SIZE",
   "ring_buffer_size", YamlType::kSize, "BYTES",
   "Ring buffer size: a power of two from 4K to 1G, K/M/G suffix allowed (default 256K)"},
  {Key::kFlowTableSize, "--flow-table-size", "--flow-table-size", "AYAFLOW_FLOW_TABLE_SIZE",
   "flow_table_size", YamlType::kInteger, "FLOWS",
   "Aggregated mode: flows per kernel flow table (two are kept), 1024-1048576 (default 16384)"},
  {Key::kAttachMode, "--attach-mode", "--attach-mode", "AYAFLOW_ATTACH_MODE", "attach_mode",
   YamlType::kString, "MODE", "auto, tcx (kernel >= 6.6) or tc (default auto)"},
};
// clang-format on

constexpr const char* kConfigEnv = "AYAFLOW_CONFIG";

/// Raw command-line values as CLI11 stored them.
struct FlagValues {
  std::map<Key, CLI::Option*> options;
  std::map<Key, std::vector<std::string>> lists;
  std::map<Key, std::string> scalars;
  std::map<Key, bool> bools;
  std::string config_path;
  CLI::Option* config_option = nullptr;
};

// ---------------------------------------------------------------------------------------------
// YAML

/// The top-level mapping of the config file, keys validated.
struct YamlFile {
  std::string path;
  std::map<std::string, YAML::Node> values;
};

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

[[noreturn]] void failUnknownKey(const std::string& path, const std::string& key) {
  const char* best = nullptr;
  std::size_t best_distance = 3;  // suggest only close matches (typos, plurals)
  std::string known;
  for (const Setting& s : kSettings) {
    const std::size_t d = editDistance(lower(key), s.yaml);
    if (d < best_distance) best_distance = d, best = s.yaml;
    known += known.empty() ? "" : ", ";
    known += s.yaml;
  }
  const std::string hint =
      best ? " (did you mean '" + std::string(best) + "'?)" : " (known keys: " + known + ")";
  fail(path, "unknown key " + show(key) + hint);
}

std::string readFile(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (!file) fail(path, std::string("cannot read config file: ") + std::strerror(errno));
  std::string text;
  char buf[8192];
  while (true) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, file.get());
    text.append(buf, n);
    if (text.size() > kMaxConfigFileBytes) fail(path, "config file is larger than 1 MiB");
    if (n < sizeof buf) break;
  }
  if (std::ferror(file.get())) {
    fail(path, std::string("cannot read config file: ") + std::strerror(errno));
  }
  return text;
}

YamlFile loadYaml(const std::string& path) {
  YamlFile file{path, {}};
  YAML::Node root;
  try {
    root = YAML::Load(readFile(path));
  } catch (const YAML::Exception& e) {
    // Marks are 0-based; editors count lines from 1.
    std::string where = path;
    if (!e.mark.is_null()) {
      where += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    }
    fail(where, "YAML syntax error: " + e.msg);
  }
  if (root.IsNull()) return file;  // empty file or comments only
  if (!root.IsMap()) fail(path, "top level must be a mapping of key: value");
  for (const auto& entry : root) {
    if (!entry.first.IsScalar()) fail(path, "keys must be plain strings");
    const std::string key = entry.first.Scalar();
    const bool known = std::any_of(std::begin(kSettings), std::end(kSettings),
                                   [&](const Setting& s) { return key == s.yaml; });
    if (!known) failUnknownKey(path, key);
    if (!file.values.emplace(key, entry.second).second) {
      fail(path, "duplicate key " + show(key));
    }
  }
  return file;
}

/// Checks a YAML value's type and turns it into Raw text for the common parsers.
Raw rawFromYaml(const YamlFile& file, const Setting& s, const YAML::Node& node) {
  const std::string key_label = file.path + ": '" + s.yaml + "'";
  // A plain (unquoted) scalar has tag "?", a quoted one "!".
  const bool plain = node.IsScalar() && node.Tag() == "?";
  switch (s.yaml_type) {
    case YamlType::kInteger: {
      const std::string& text = plain ? node.Scalar() : std::string();
      const bool integer =
          plain && !text.empty() &&
          text.find_first_not_of("0123456789", text[0] == '-' ? 1 : 0) == std::string::npos &&
          text != "-";
      if (!integer) failType(key_label, "an integer");
      break;
    }
    case YamlType::kBoolean:
      if (!plain) failType(key_label, "a boolean (true or false)");
      break;
    case YamlType::kString:
      if (!node.IsScalar()) failType(key_label, "a string");
      break;
    case YamlType::kSize:
      if (!node.IsScalar()) failType(key_label, "a size in bytes (e.g. 262144 or 256K)");
      break;
    case YamlType::kList:
      if (node.IsSequence()) {
        Raw raw{key_label, {}, false};
        for (const auto& item : node) {
          if (!item.IsScalar()) failType(key_label, "a list of strings");
          raw.items.push_back(item.Scalar());
        }
        return raw;
      }
      if (!node.IsScalar()) failType(key_label, "a string or a list of strings");
      break;
  }
  return Raw{key_label, {node.Scalar()}, true};
}

// ---------------------------------------------------------------------------------------------
// Source selection: flag > env > YAML > default, per setting.

std::optional<std::string> envValue(const EnvLookup& env, const char* name) {
  auto value = env ? env(name) : std::nullopt;
  if (value && value->empty()) return std::nullopt;  // empty = unset
  return value;
}

std::optional<Raw> pickSource(const Setting& s, const FlagValues& flags, const EnvLookup& env,
                              const YamlFile* yaml) {
  if (flags.options.at(s.key)->count() > 0) {
    Raw raw{s.long_flag, {}, true};
    if (s.yaml_type == YamlType::kList) {
      raw.items = flags.lists.at(s.key);
    } else if (s.yaml_type == YamlType::kBoolean) {
      raw.items = {flags.bools.at(s.key) ? "true" : "false"};
    } else {
      raw.items = {flags.scalars.at(s.key)};
    }
    return raw;
  }
  if (auto value = envValue(env, s.env)) return Raw{s.env, {std::move(*value)}, true};
  if (yaml) {
    if (const auto it = yaml->values.find(s.yaml); it != yaml->values.end()) {
      return rawFromYaml(*yaml, s, it->second);
    }
  }
  return std::nullopt;
}

/// Converts the winning raw value of setting `s` into its Config field.
void apply(const Setting& s, const Raw& raw, Config& config) {
  const std::string& label = raw.label;
  const auto single = [&]() -> const std::string& { return raw.items.front(); };
  switch (s.key) {
    case Key::kInterface:
      config.interfaces = parseInterfaces(raw);
      break;
    case Key::kAllowedIps:
      config.allowed_ips = parseCidrs(raw);
      break;
    case Key::kPort:
      config.port = parsePort(label, single());
      break;
    case Key::kListenAddress:
      config.listen_address = parseListenAddress(label, single());
      break;
    case Key::kDbPath:
      config.db_path = parseDbPath(label, single());
      break;
    case Key::kConnectionTimeout:
      config.connection_timeout_s = static_cast<std::uint32_t>(parseRange(
          label, single(), 1, std::numeric_limits<std::uint32_t>::max(), "a timeout in seconds"));
      break;
    case Key::kDataRetention:
      config.data_retention_s =
          parseRange(label, single(), 1, kMaxRetentionS, "a retention in seconds",
                     "; omit it to keep rows forever");
      break;
    case Key::kAggregationWindow:
      config.aggregation_window_s = static_cast<std::uint32_t>(parseRange(
          label, single(), 0, std::numeric_limits<std::uint32_t>::max(), "a window in seconds"));
      break;
    case Key::kQuiet:
      config.quiet = parseBool(label, single());
      break;
    case Key::kVerbose:
      config.verbose = parseBool(label, single());
      break;
    case Key::kDeepInspect:
      config.deep_inspect = parseBool(label, single());
      break;
    case Key::kEnableIpv6:
      config.enable_ipv6 = parseBool(label, single());
      break;
    case Key::kResolveDns:
      config.resolve_dns = parseBool(label, single());
      break;
    case Key::kRingBufferSize:
      config.ring_buffer_size = parseRingBufferSize(label, single());
      break;
    case Key::kFlowTableSize:
      config.flow_table_size = static_cast<std::uint32_t>(
          parseRange(label, single(), kMinFlowTable, kMaxFlowTable, "a number of flows"));
      break;
    case Key::kAttachMode:
      config.attach_mode = parseAttachMode(label, single());
      break;
  }
}

std::string envHelp(const char* env) { return std::string(" [env ") + env + "]"; }

/// Declares every flag; values land in `flags`, which must outlive parsing.
void declareFlags(CLI::App& app, FlagValues& flags) {
  app.set_help_flag("-h,--help", "Print this help and exit");
  app.set_version_flag("--version", std::string("ayaflow ") + AYAFLOW_VERSION,
                       "Print the version and exit");
  flags.config_option =
      app.add_option(
             "-c,--config", flags.config_path,
             std::string("YAML config file (keys as below, e.g. port: 3000)") + envHelp(kConfigEnv))
          ->type_name("FILE");
  for (const Setting& s : kSettings) {
    const std::string help = s.help + envHelp(s.env) + " [yaml " + s.yaml + "]";
    CLI::Option* option = nullptr;
    switch (s.yaml_type) {
      case YamlType::kList:
        // One value per occurrence (-i a -i b,c); never swallow following words.
        option = app.add_option(s.flags, flags.lists[s.key], help)->allow_extra_args(false);
        break;
      case YamlType::kBoolean:
        option = app.add_flag(s.flags, flags.bools[s.key], help);
        break;
      default:
        option = app.add_option(s.flags, flags.scalars[s.key], help);
        break;
    }
    if (s.type_name) option->type_name(s.type_name);
    flags.options[s.key] = option;
  }
  app.footer(
      "Precedence: flag > environment variable > YAML file > default. Empty environment "
      "variables count as unset; booleans accept 1/0, true/false, yes/no, on/off.");
}

}  // namespace

EnvLookup processEnvironment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

ParseOutcome parseConfig(int argc, const char* const* argv, const EnvLookup& env) {
  ParseOutcome outcome;
  CLI::App app{"ayaflow: eBPF network traffic analyzer", "ayaflow"};
  FlagValues flags;
  declareFlags(app, flags);

  static const char* const kNoArgs[] = {"ayaflow", nullptr};
  if (argc < 1 || argv == nullptr) argc = 1, argv = kNoArgs;
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    std::ostringstream out;
    std::ostringstream err;
    outcome.exit_code = app.exit(e, out, err);
    outcome.exit_now = true;
    outcome.output = out.str();
    return outcome;
  } catch (const CLI::ParseError& e) {
    throw ConfigError(oneLine(e.what()));
  }

  // The YAML file itself: flag > env.
  Config& config = outcome.config;
  if (flags.config_option->count() > 0) {
    config.config_path = flags.config_path;
  } else if (auto path = envValue(env, kConfigEnv)) {
    config.config_path = std::move(*path);
  }
  std::optional<YamlFile> yaml;
  if (config.config_path) {
    if (config.config_path->empty()) fail("--config", "'' is not a file path");
    yaml = loadYaml(*config.config_path);
  }

  for (const Setting& s : kSettings) {
    if (auto raw = pickSource(s, flags, env, yaml ? &*yaml : nullptr)) apply(s, *raw, config);
  }
  return outcome;
}

void validateEnvironment(const Config& config) {
  if (config.interfaces.empty()) fail("--interface", "at least one interface is needed");
  for (const std::string& name : config.interfaces) {
    if (if_nametoindex(name.c_str()) == 0) {
      fail("--interface", "no such interface " + show(name) + " (" + std::strerror(errno) + ")");
    }
  }

  const std::string& path = config.db_path;
  if (path == ":memory:") return;  // SQLite in-memory database: nothing on disk
  if (path.empty()) fail("--db-path", "'' is not a file path");
  // SQLite creates the file plus -wal/-shm/-journal next to it, so the directory must be
  // writable even when the file already exists.
  const auto slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    fail("--db-path", "directory " + show(dir) + " of " + show(path) +
                          " is not accessible: " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    fail("--db-path", show(dir) + " in " + show(path) + " is not a directory");
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    fail("--db-path", "directory " + show(dir) + " of " + show(path) +
                          " is not writable: " + std::strerror(errno));
  }
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("--db-path", show(path) + " is a directory");
    if (::access(path.c_str(), R_OK | W_OK) != 0) {
      fail("--db-path", show(path) + " is not writable: " + std::strerror(errno));
    }
  }
}

std::string toString(AttachMode mode) {
  switch (mode) {
    case AttachMode::kAuto:
      return "auto";
    case AttachMode::kTcx:
      return "tcx";
    case AttachMode::kTc:
      return "tc";
  }
  return "auto";
}

}  // namespace ayaflow::app
