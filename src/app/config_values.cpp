// SPDX-License-Identifier: MIT OR Apache-2.0
#include "config_values.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <limits>

#include "ayaflow/common/system_error.h"

namespace ayaflow::app::detail {

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
                         std::uint64_t max, const char* what, const char* hint) {
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

std::string parseCriSocket(const std::string& label, std::string_view text) {
  const std::string word = lower(text);
  if (word == "auto" || word == "none") return word;
  std::string_view path = text;
  if (path.substr(0, 7) == "unix://") path.remove_prefix(7);
  if (path.empty() || path.front() != '/' || path.find('\0') != std::string_view::npos) {
    fail(label, show(text) + " is not auto, none, an absolute socket path or unix:///path");
  }
  return std::string(text);
}

std::string parseNodeName(const std::string& label, std::string_view text) {
  const bool valid =
      !text.empty() && text.size() <= 253 && std::all_of(text.begin(), text.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
      });
  if (!valid) {
    fail(label, show(text) +
                    " is not a node name (1-253 characters: lower-case letters, digits, '-', '.')");
  }
  return std::string(text);
}

bpf::HookMode parseAttachMode(const std::string& label, std::string_view text) {
  const std::string word = lower(text);
  if (word == "auto") return bpf::HookMode::kAuto;
  if (word == "tcx") return bpf::HookMode::kTcx;
  if (word == "tc") return bpf::HookMode::kTc;
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

std::optional<std::uint64_t> parseByteSize(std::string_view text) {
  std::string_view digits = text;
  unsigned shift = 0;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        break;
    }
    if (shift != 0) digits.remove_suffix(1);
  }
  const auto count = parseDecimal(digits);
  if (!count || *count > (std::numeric_limits<std::uint64_t>::max() >> shift)) return std::nullopt;
  return *count << shift;
}

std::uint64_t parseDbSize(const std::string& label, std::string_view text) {
  const auto bytes = parseByteSize(text);
  if (!bytes) {
    fail(label, show(text) +
                    " is not a size (bytes, or a number with a K/M/G/T suffix; 0 = "
                    "unlimited)");
  }
  if (*bytes != 0 && (*bytes < kMinDbSize || *bytes > kMaxDbSize)) {
    fail(label, show(text) + " is not a database size from 4M to 1024T (0 = unlimited)");
  }
  return *bytes;
}

MinFreeDisk parseMinFreeDisk(const std::string& label, std::string_view text) {
  MinFreeDisk out;
  if (!text.empty() && text.back() == '%') {
    const auto percent = parseDecimal(text.substr(0, text.size() - 1));
    if (!percent || *percent > kMaxMinFreePercent) {
      fail(label, show(text) + " is not a percentage of the file system (0%-50%)");
    }
    out.percent = static_cast<std::uint32_t>(*percent);
    return out;
  }
  const auto bytes = parseByteSize(text);
  if (!bytes) {
    fail(label, show(text) +
                    " is not a free space (bytes with a K/M/G/T suffix, or a percentage "
                    "such as 5%; 0 = no floor)");
  }
  out.bytes = *bytes;
  return out;
}

std::string formatSize(std::uint64_t bytes) {
  static constexpr struct {
    std::uint64_t unit;
    char suffix;
  } kUnits[] = {{1ull << 30, 'G'}, {1ull << 20, 'M'}, {1ull << 10, 'K'}};
  for (const auto& u : kUnits) {
    if (bytes != 0 && bytes % u.unit == 0) return std::to_string(bytes / u.unit) + u.suffix;
  }
  return std::to_string(bytes);
}

// ---- flow export ----
std::string parseExportUrl(const std::string& label, std::string_view text) {
  const std::string url(trim(text));
  if (url.empty()) return url;  // off
  const bool http = url.rfind("http://", 0) == 0, https = url.rfind("https://", 0) == 0;
  if (!http && !https) fail(label, show(url) + " is not an http:// or https:// URL");
  std::string rest = url.substr(http ? 7 : 8);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find_first_of("/@?# ") != std::string::npos) {
    fail(label, show(url) + " must be http(s)://host[:port] (no path, no credentials)");
  }
  return url;
}

std::string parseSqlName(const std::string& label, std::string_view text) {
  const std::string name(trim(text));
  const bool ok = !name.empty() && name.size() <= 128 &&
                  std::isdigit(static_cast<unsigned char>(name.front())) == 0 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
                  });
  if (!ok) fail(label, show(name) + " is not a name (letters, digits, '_'; not a digit first)");
  return name;
}

std::vector<std::string> parseCollectors(const Raw& raw) {
  std::vector<std::string> out;
  for (const std::string& item : splitItems(raw)) {
    const std::size_t colon = item.rfind(':');
    std::string host = colon == std::string::npos ? std::string() : item.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string::npos) {
      host.clear();  // an IPv6 literal needs brackets
    }
    if (colon == std::string::npos || host.empty()) {
      fail(raw.label, show(item) + " is not host:port ([address]:port for IPv6)");
    }
    parsePort(raw.label, item.substr(colon + 1));
    if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
  }
  return out;
}

exporter::IpfixTransport parseIpfixTransport(const std::string& label, std::string_view text) {
  const std::string value = lower(trim(text));
  if (value == "udp") return exporter::IpfixTransport::kUdp;
  if (value == "tcp") return exporter::IpfixTransport::kTcp;
  fail(label, show(text) + " is not a transport (udp or tcp)");
}
// ---- end of flow export ----

}  // namespace ayaflow::app::detail
