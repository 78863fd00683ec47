// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "ayaflow/flow/flow_key.h"
#include "ayaflow/inspect/stream_reassembler.h"
#include "ayaflow/inspect/tls.h"

namespace ayaflow::inspect {

/// Finds the SNI of TLS connections from their client-to-server TCP segments: a
/// StreamReassembler plus parseTlsClientHello() on each growth of a stream's contiguous
/// prefix. Once a stream is decided (any verdict but kNeedMore) its bytes are released and
/// later segments of that connection are ignored cheaply. A hello that does not fit in
/// max_stream_bytes, or whose stream stops growing, is given up (counted, see Counters).
///
/// Thread: not thread-safe; one owner thread (ingest). Errors: none.
class TlsSniTracker {
 public:
  /// Verdicts reached, cumulative.
  struct Counters {
    std::uint64_t found = 0;
    std::uint64_t no_sni = 0;
    std::uint64_t not_tls = 0;
    std::uint64_t malformed = 0;
    std::uint64_t too_large = 0;  ///< the hello needs more than max_stream_bytes
  };

  TlsSniTracker();
  explicit TlsSniTracker(StreamReassembler::Options options);

  /// Feeds one client-to-server segment (seq = its TCP sequence number; data = its payload,
  /// possibly only a captured prefix). Returns the verdict when this segment settles the
  /// stream: kFound (sni set), kNoSni, kNotTls or kMalformed. nullopt while more bytes are
  /// needed, for a stream already settled, or when the hello was too large.
  std::optional<TlsParseResult> onSegment(const flow::FlowKey& key, std::uint32_t seq,
                                          const std::uint8_t* data, std::size_t len,
                                          std::uint64_t now_ns);

  /// Optional: the connection's SYN was seen with sequence number syn_seq, so the stream
  /// starts at syn_seq + 1 (makes out-of-order first segments exact).
  void onSyn(const flow::FlowKey& key, std::uint32_t syn_seq, std::uint64_t now_ns);

  /// Optional: the connection closed (FIN/RST): forget it.
  void onClose(const flow::FlowKey& key) { streams_.erase(key); }

  /// Drops streams idle longer than the reassembler's idle_timeout_ns.
  std::size_t expire(std::uint64_t now_ns) { return streams_.expire(now_ns); }

  const Counters& counters() const noexcept { return counters_; }
  const StreamReassembler& streams() const noexcept { return streams_; }

 private:
  StreamReassembler streams_;
  Counters counters_;
};

}  // namespace ayaflow::inspect
