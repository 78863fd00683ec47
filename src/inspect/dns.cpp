// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/dns.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "ayaflow/inspect/host_name.h"

namespace ayaflow::inspect {
namespace {

constexpr std::size_t kHeaderSize = 12;
constexpr std::size_t kMaxWireName = 255;  // RFC 1035 3.1, length octets and root included
constexpr std::uint16_t kTypeA = 1;
constexpr std::uint16_t kTypeCname = 5;
constexpr std::uint16_t kTypeAaaa = 28;
constexpr std::uint16_t kClassIn = 1;

std::uint16_t be16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

std::uint32_t be32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

enum class NameStatus {
  kOk,           // structurally sound and a valid host name (possibly "" for the root)
  kInvalidText,  // structurally sound, but not a name we accept (bad bytes, numeric TLD)
  kMalformed,    // cut short, bad pointer, bad label type, too long: the message is broken
};

/// Reads the (possibly compressed) name at `pos`. On kOk/kInvalidText, `next` is the offset
/// just past the name's bytes at `pos` (after its first pointer or its root label); `out`
/// holds the lower-cased text on kOk.
NameStatus readName(const std::uint8_t* d, std::size_t len, std::size_t pos, std::string& out,
                    std::size_t& next) {
  out.clear();
  bool valid = true;
  bool last_all_digits = false;
  bool jumped = false;
  std::size_t jumps = 0;
  std::size_t wire = 1;     // the root label's byte
  std::size_t limit = pos;  // a pointer must target an offset below this
  std::size_t p = pos;
  for (;;) {
    if (p >= len) return NameStatus::kMalformed;
    const std::uint8_t b = d[p];
    if ((b & 0xC0) == 0xC0) {
      if (p + 1 >= len) return NameStatus::kMalformed;
      const std::size_t target = (std::size_t{b & 0x3Fu} << 8) | d[p + 1];
      if (!jumped) {
        next = p + 2;
        jumped = true;
      }
      // Strictly backwards, before the start of the segment being read: every jump lowers
      // `limit`, so no loop can exist; the jump cap is a second, cheaper bound.
      if (target >= limit || ++jumps > kDnsMaxPointerJumps) return NameStatus::kMalformed;
      limit = target;
      p = target;
      continue;
    }
    if ((b & 0xC0) != 0) return NameStatus::kMalformed;  // 0x40/0x80: extended/reserved
    if (b == 0) {
      if (!jumped) next = p + 1;
      break;
    }
    wire += 1 + b;
    if (wire > kMaxWireName || b > len - p - 1) return NameStatus::kMalformed;
    if (valid) {
      if (!out.empty()) out.push_back('.');
      last_all_digits = true;
      for (std::size_t i = 1; i <= b; ++i) {
        const std::uint8_t c = d[p + i];
        if (!isHostNameByte(c)) {
          valid = false;
          break;
        }
        last_all_digits = last_all_digits && c >= '0' && c <= '9';
        out.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c));
      }
    }
    p += 1 + b;
  }
  // 255 wire bytes bound the text to 253 characters, labels to 63 by the 0xC0 test.
  return valid && !last_all_digits ? NameStatus::kOk : NameStatus::kInvalidText;
}

struct RawAddress {
  flow::IpAddress address;
  std::string owner;
  std::uint32_t ttl;
};

/// Follows CNAMEs from the question name; returns whether `owner` is on the chain.
bool onChain(const DnsMessage& m, const std::string& owner) {
  return owner == m.qname ||
         std::find(m.aliases.begin(), m.aliases.end(), owner) != m.aliases.end();
}

void resolveChain(DnsMessage& m, const std::vector<std::pair<std::string, std::string>>& cnames) {
  const std::string* current = &m.qname;
  for (std::size_t hop = 0; hop < kDnsMaxCnameChain; ++hop) {
    const auto it = std::find_if(cnames.begin(), cnames.end(),
                                 [&](const auto& c) { return c.first == *current; });
    if (it == cnames.end() || onChain(m, it->second)) break;  // end of chain, or a loop
    m.aliases.push_back(it->second);
    current = &m.aliases.back();
  }
}

void parseAnswers(const std::uint8_t* d, std::size_t len, std::size_t pos, DnsMessage& m) {
  std::vector<RawAddress> raw;
  std::vector<std::pair<std::string, std::string>> cnames;
  std::string owner;
  std::string target;
  const std::size_t count = std::min<std::size_t>(m.ancount, kDnsMaxAnswers);
  if (m.ancount > kDnsMaxAnswers) m.answers_complete = false;
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t p = 0;
    const NameStatus ns = readName(d, len, pos, owner, p);
    if (ns == NameStatus::kMalformed || len - p < 10) {
      m.answers_complete = false;
      break;
    }
    const std::uint16_t type = be16(d + p);
    const std::uint16_t klass = be16(d + p + 2);
    const std::uint32_t ttl = be32(d + p + 4);
    const std::size_t rdlen = be16(d + p + 8);
    const std::size_t rdata = p + 10;
    if (rdlen > len - rdata) {
      m.answers_complete = false;
      break;
    }
    pos = rdata + rdlen;
    if (klass != kClassIn || ns != NameStatus::kOk || owner.empty()) continue;
    if (type == kTypeA && rdlen == 4) {
      std::uint32_t v4 = be32(d + rdata);
      raw.push_back({flow::IpAddress::fromV4(v4), owner, ttl});
    } else if (type == kTypeAaaa && rdlen == 16) {
      flow::IpAddress a;
      std::memcpy(a.bytes.data(), d + rdata, 16);
      raw.push_back({a, owner, ttl});
    } else if (type == kTypeCname && cnames.size() < kDnsMaxCnames) {
      std::size_t end = 0;
      // The target must fill the RDATA exactly; it may point back into earlier names.
      if (readName(d, len, rdata, target, end) == NameStatus::kOk && end == pos &&
          !target.empty()) {
        cnames.emplace_back(owner, target);
      }
    }
  }
  resolveChain(m, cnames);
  for (auto& r : raw) {
    if (onChain(m, r.owner)) m.addresses.push_back({r.address, m.qname, std::move(r.owner), r.ttl});
  }
}

}  // namespace

std::optional<DnsMessage> parseDnsMessage(const std::uint8_t* data, std::size_t len) {
  if (data == nullptr || len < kHeaderSize) return std::nullopt;
  DnsMessage m;
  m.id = be16(data);
  const std::uint16_t flags = be16(data + 2);
  m.is_response = (flags & 0x8000) != 0;
  m.opcode = static_cast<std::uint8_t>((flags >> 11) & 0xF);
  m.truncated = (flags & 0x0200) != 0;
  m.rcode = static_cast<std::uint8_t>(flags & 0xF);
  m.qdcount = be16(data + 4);
  m.ancount = be16(data + 6);
  if (m.qdcount == 0 || m.qdcount > kDnsMaxQuestions) return std::nullopt;

  std::size_t pos = 0;
  if (readName(data, len, kHeaderSize, m.qname, pos) != NameStatus::kOk || m.qname.empty() ||
      len - pos < 4) {
    return std::nullopt;
  }
  m.qtype = be16(data + pos);
  m.qclass = be16(data + pos + 2);
  pos += 4;
  std::string skipped;
  for (std::uint16_t q = 1; q < m.qdcount; ++q) {
    std::size_t next = 0;
    if (readName(data, len, pos, skipped, next) == NameStatus::kMalformed || len - next < 4) {
      return std::nullopt;
    }
    pos = next + 4;
  }
  if (m.is_response && m.opcode == 0 && m.ancount > 0) parseAnswers(data, len, pos, m);
  return m;
}

std::optional<DnsMessage> parseDnsTcpMessage(const std::uint8_t* data, std::size_t len) {
  if (data == nullptr || len < 2) return std::nullopt;
  const std::size_t msg_len = be16(data);
  return parseDnsMessage(data + 2, std::min(len - 2, msg_len));
}

}  // namespace ayaflow::inspect
