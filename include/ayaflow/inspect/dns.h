// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ayaflow/flow/packet.h"

namespace ayaflow::inspect {

/// Caps that bound the work done on one message (hostile input).
inline constexpr std::uint16_t kDnsMaxQuestions = 4;    // qdcount above this: rejected
inline constexpr std::size_t kDnsMaxAnswers = 64;       // answer records examined
inline constexpr std::size_t kDnsMaxCnames = 16;        // CNAME records kept for resolution
inline constexpr std::size_t kDnsMaxCnameChain = 8;     // CNAME hops followed from the question
inline constexpr std::size_t kDnsMaxPointerJumps = 32;  // compression pointers per name

/// One A or AAAA answer that belongs to the question.
struct DnsAddressAnswer {
  flow::IpAddress address;  ///< A: IPv4-mapped (::ffff:a.b.c.d); AAAA: as sent
  std::string name;         ///< the question name it answers (what the user asked for)
  std::string owner;        ///< the record's owner: the end of the CNAME chain, else == name
  std::uint32_t ttl = 0;    ///< seconds, as sent
};

/// What parseDnsMessage() extracts from one DNS message. Every name is lower-case, without
/// the trailing dot, and passed the rules of normalizeHostName() (host_name.h).
struct DnsMessage {
  std::uint16_t id = 0;
  bool is_response = false;  ///< QR bit
  std::uint8_t opcode = 0;   ///< 0 QUERY
  std::uint8_t rcode = 0;    ///< header RCODE: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ...
  bool truncated = false;    ///< TC bit (the answer did not fit; the client retries over TCP)
  std::uint16_t qdcount = 0;
  std::uint16_t ancount = 0;  ///< as sent; may exceed what the message holds
  std::string qname;          ///< the first question's name; never empty
  std::uint16_t qtype = 0;    ///< 1 A, 28 AAAA, 5 CNAME, ...
  std::uint16_t qclass = 0;   ///< 1 IN
  /// Responses: the CNAME chain followed from qname, in order (qname -> aliases[0] -> ...).
  std::vector<std::string> aliases;
  /// Responses: A/AAAA answers whose owner is qname or one of `aliases`, in message order.
  /// Records for other names (unrelated to the question) are left out.
  std::vector<DnsAddressAnswer> addresses;
  /// False when the answer section was not read to its end: it is cut short (a capture
  /// limit), a record is malformed, or ancount exceeds kDnsMaxAnswers. What was read before
  /// that point is kept.
  bool answers_complete = true;
};

/// Parses a DNS message (the UDP payload) from untrusted bytes.
///
/// Reads the header, the first question (its name, type and class), skips the other
/// questions, and, for a response with opcode QUERY, the answer section: A (class IN,
/// 4 bytes), AAAA (16 bytes) and CNAME records. Addresses are reported for the question
/// name after following CNAMEs (any record order; at most kDnsMaxCnameChain hops; loops
/// stop the chain). Authority and additional sections are ignored.
///
/// Name compression: every pointer must point before the start of the name segment that
/// contains it (so pointers to themselves, forward or into the name being read are
/// rejected and every jump strictly moves backwards), at most kDnsMaxPointerJumps jumps,
/// at most 255 wire bytes per name, labels 1-63 bytes (extended label types rejected).
///
/// Returns nullopt if the header or first question is cut short or malformed, qdcount is 0
/// or above kDnsMaxQuestions, or the question name is not a valid host name (root
/// included). An answer record with an invalid name or unexpected size is skipped; a
/// structurally broken one ends the answer section (answers_complete = false).
/// Never reads outside [data, data + len). Thread-safe (no shared state); allocates only
/// for the result.
std::optional<DnsMessage> parseDnsMessage(const std::uint8_t* data, std::size_t len);

/// DNS over TCP: data starts with the 2-byte big-endian message length (RFC 1035 4.2.2).
/// Parses the message in the bytes that follow, limited to that length (fewer bytes are
/// parsed as a cut-short message). nullopt if len < 2 or the message does not parse.
std::optional<DnsMessage> parseDnsTcpMessage(const std::uint8_t* data, std::size_t len);

}  // namespace ayaflow::inspect
