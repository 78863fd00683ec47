// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace ayaflow::inspect {

/// Caps that bound the work done on one ClientHello (hostile input).
inline constexpr std::size_t kTlsMaxRecords = 64;                // records carrying the hello
inline constexpr std::size_t kTlsMaxExtensions = 1024;           // extensions walked
inline constexpr std::size_t kTlsMaxHandshakeLength = 1u << 17;  // larger hellos: malformed

/// Result of parseTlsClientHello().
struct TlsParseResult {
  enum Status {
    kFound,      ///< `sni` holds the server name
    kNeedMore,   ///< the bytes end too early; call again with at least `needed` bytes
    kNotTls,     ///< does not start with a TLS handshake record carrying a ClientHello
    kNoSni,      ///< a complete, well-formed ClientHello without a host_name
    kMalformed,  ///< a TLS ClientHello that breaks the format (or has an invalid name)
  };
  Status status = kMalformed;
  /// kFound: the host_name, lower-cased, without a trailing dot, valid per
  /// normalizeHostName() (host_name.h).
  std::string sni;
  /// kNeedMore: a lower bound on the total stream length (from the first byte, record
  /// headers included) needed to reach a verdict; always > len. No shorter stream yields
  /// kFound or kNoSni: the field being read ends there (when that field lies past the
  /// records seen so far, exactly one more record header is assumed). A broken record
  /// header still to come may give kNotTls/kMalformed sooner.
  std::size_t needed = 0;
  /// kFound: stream offset of the host name's first byte (record headers included).
  std::size_t sni_offset = 0;
};

/// Finds the SNI in the first bytes of a TCP stream from a TLS client.
///
/// Expects TLS handshake records (content type 22, record version 0x0301-0x0304, length
/// 1-16384) whose concatenated payload starts with a ClientHello (handshake type 1); the
/// hello may span several records (at most kTlsMaxRecords). Walks the extensions in any
/// order (GREASE, padding, large key shares are skipped by their length) and returns as
/// soon as the server_name extension (type 0) is complete: later bytes are not needed.
/// In server_name, the host_name entry (type 0) is taken; other name types are skipped;
/// two host_name entries, two server_name extensions before the name is found, an empty
/// list or an invalid name give kMalformed. ECH: the outer (public) name is what is seen.
///
/// Deterministic and prefix-consistent: for a prefix of some input the result is either
/// kNeedMore or the same as for the whole input. Never reads outside [data, data + len);
/// every loop is bounded by len and the caps above. Thread-safe (no shared state);
/// allocates only when the hello spans several records (a copy of at most len bytes).
TlsParseResult parseTlsClientHello(const std::uint8_t* data, std::size_t len);

/// Static text for a status ("found", "need more", ...).
const char* toString(TlsParseResult::Status status) noexcept;

}  // namespace ayaflow::inspect
