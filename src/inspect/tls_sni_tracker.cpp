// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/tls_sni_tracker.h"

namespace ayaflow::inspect {

TlsSniTracker::TlsSniTracker() : TlsSniTracker(StreamReassembler::Options{}) {}

TlsSniTracker::TlsSniTracker(StreamReassembler::Options options) : streams_(options) {}

std::optional<TlsParseResult> TlsSniTracker::onSegment(const flow::FlowKey& key, std::uint32_t seq,
                                                       const std::uint8_t* data, std::size_t len,
                                                       std::uint64_t now_ns) {
  const StreamReassembler::View v = streams_.add(key, seq, data, len, now_ns);
  if (v.status != StreamReassembler::Status::kGrew) return std::nullopt;
  TlsParseResult r = parseTlsClientHello(v.data, v.len);
  switch (r.status) {
    case TlsParseResult::kNeedMore:
      if (r.needed > streams_.options().max_stream_bytes) {
        ++counters_.too_large;
        streams_.finish(key);
      }
      return std::nullopt;
    case TlsParseResult::kFound:
      ++counters_.found;
      break;
    case TlsParseResult::kNoSni:
      ++counters_.no_sni;
      break;
    case TlsParseResult::kNotTls:
      ++counters_.not_tls;
      break;
    case TlsParseResult::kMalformed:
      ++counters_.malformed;
      break;
  }
  streams_.finish(key);
  return r;
}

void TlsSniTracker::onSyn(const flow::FlowKey& key, std::uint32_t syn_seq, std::uint64_t now_ns) {
  streams_.startAt(key, syn_seq + 1, now_ns);
}

}  // namespace ayaflow::inspect
