// SPDX-License-Identifier: MIT OR Apache-2.0
// Internal to ayaflow_config: the value parsers every source (flag, environment, YAML)
// shares. Every error is a ConfigError of one line "<label>: <what>".
#pragma once

#include <net/if.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ayaflow/bpf/tc_attachment.h"
#include "ayaflow/common/cidr.h"
#include "ayaflow/export/export_options.h"

namespace ayaflow::app::detail {

constexpr std::uint64_t kMaxRetentionS = 100ull * 365 * 24 * 3600;  // fits in int64 nanoseconds
constexpr std::uint64_t kMinRingBuffer = 4096;                      // one page
constexpr std::uint64_t kMaxRingBuffer = 1ull << 30;                // 1 GiB
constexpr std::uint64_t kMinFlowTable = 1024;
constexpr std::uint64_t kMaxFlowTable = 1ull << 20;
constexpr std::size_t kMaxConfigFileBytes = 1 << 20;
constexpr std::uint64_t kMinDbSize = 4ull << 20;  // the -wal file alone takes ~1/8 of it
constexpr std::uint64_t kMaxDbSize = 1ull << 50;  // 1 PiB: past any disk, far from overflow
constexpr std::uint32_t kMaxMinFreePercent = 50;
constexpr std::size_t kMaxIfNameLen = IFNAMSIZ - 1;

/// A setting's value as found in one source, with the label errors must name.
struct Raw {
  std::string label;               // "--port", "AYAFLOW_PORT" or "config.yaml: 'port'"
  std::vector<std::string> items;  // one per flag occurrence, env value or YAML scalar/entry
  bool split_commas = true;        // false for YAML sequence entries (the list is the structure)

  const std::string& single() const { return items.front(); }
};

/// Replaces control characters so a message never spans lines, whatever the input contained.
std::string oneLine(std::string text);
[[noreturn]] void fail(const std::string& label, const std::string& what);
/// YAML type errors read as a sentence: "config.yaml: 'port' must be an integer".
[[noreturn]] void failType(const std::string& key_label, const std::string& must_be);
/// Shows a user value in a message: numbers as-is, anything else in single quotes; long
/// values are cut so one bad value cannot flood the log.
std::string show(std::string_view value);
std::string lower(std::string_view text);
std::string_view trim(std::string_view text);

/// Strict unsigned decimal: digits only (no sign, no spaces, no junk), no overflow.
std::optional<std::uint64_t> parseDecimal(std::string_view text);
std::uint64_t parseRange(const std::string& label, std::string_view text, std::uint64_t min,
                         std::uint64_t max, const char* what, const char* hint = "");
std::uint16_t parsePort(const std::string& label, std::string_view text);
bool parseBool(const std::string& label, std::string_view text);
/// Bytes with an optional K/M/G suffix in binary units (256K = 262144); a power of two in
/// [4 KiB, 1 GiB], as the kernel requires for BPF_MAP_TYPE_RINGBUF.
std::uint32_t parseRingBufferSize(const std::string& label, std::string_view text);
/// Bytes with an optional K/M/G/T suffix in binary units; nullopt when not a size or past
/// 2^64.
std::optional<std::uint64_t> parseByteSize(std::string_view text);
/// --max-db-size: 0 (unlimited) or kMinDbSize..kMaxDbSize bytes, K/M/G/T suffixes.
std::uint64_t parseDbSize(const std::string& label, std::string_view text);
/// --min-free-disk: a percentage of the file system ("5%", 0-50) or bytes ("512M"); 0 = off.
struct MinFreeDisk {
  std::uint64_t bytes = 0;
  std::uint32_t percent = 0;
};
MinFreeDisk parseMinFreeDisk(const std::string& label, std::string_view text);
/// "256K" for 262144: the largest binary unit that divides the size.
std::string formatSize(std::uint64_t bytes);
std::string parseListenAddress(const std::string& label, std::string_view text);
std::string parseDbPath(const std::string& label, std::string_view text);
/// "auto", "none", an absolute socket path or "unix:///abs/path".
std::string parseCriSocket(const std::string& label, std::string_view text);
/// A Kubernetes node name: 1-253 characters of a-z, 0-9, '-' and '.' (DNS subdomain).
std::string parseNodeName(const std::string& label, std::string_view text);
bpf::HookMode parseAttachMode(const std::string& label, std::string_view text);
/// The kernel's dev_valid_name(): 1..IFNAMSIZ-1 chars, not "." or "..", no '/', ':' or space.
bool validInterfaceName(std::string_view name);
/// Splits comma lists ("a, b,c"), trimming blanks around items; rejects empty items.
std::vector<std::string> splitItems(const Raw& raw);
/// Interface names or patterns, unique, at least one.
std::vector<std::string> parseInterfaces(const Raw& raw);
std::vector<common::Cidr> parseCidrs(const Raw& raw);

// ---- flow export ----
/// http:// or https://host[:port] without a path.
std::string parseExportUrl(const std::string& label, std::string_view text);
/// A ClickHouse database or table name: letters, digits and '_', not starting with a digit.
std::string parseSqlName(const std::string& label, std::string_view text);
/// host:port or [v6]:port items.
std::vector<std::string> parseCollectors(const Raw& raw);
exporter::IpfixTransport parseIpfixTransport(const std::string& label, std::string_view text);
// ---- end of flow export ----

}  // namespace ayaflow::app::detail
