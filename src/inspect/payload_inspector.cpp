// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/inspect/payload_inspector.h"

#include <cstring>
#include <type_traits>

#include "ayaflow/abi/event.h"
#include "ayaflow/inspect/dns.h"
#include "ayaflow/inspect/tls.h"

static_assert(std::is_trivially_copyable_v<ayaflow_payload_event>);
static_assert(std::has_unique_object_representations_v<ayaflow_payload_event>);
static_assert(sizeof(ayaflow_tuple::src_addr) == sizeof(ayaflow::flow::IpAddress));

namespace ayaflow::inspect {

namespace {

constexpr std::size_t kHeaderLen = offsetof(ayaflow_payload_event, data);
static_assert(kHeaderLen == 64);

constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;

/// Single writer (the ingest thread): a plain load + store is enough and avoids a locked
/// read-modify-write per record.
void bump(std::atomic<std::uint64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

/// Checks the header fields that do not depend on the data; see onRecord() in the header.
bool headerSane(const ayaflow_payload_event& h, std::size_t data_len) noexcept {
  if (h.abi_version != AYAFLOW_ABI_VERSION || h.kind != AYAFLOW_EVENT_PAYLOAD) return false;
  if (h.data_len != data_len) return false;
  if (h.direction != AYAFLOW_DIR_INGRESS && h.direction != AYAFLOW_DIR_EGRESS) return false;
  if (h.tuple.protocol != kTcp && h.tuple.protocol != kUdp) return false;
  if (h.tuple.addr_type != 4 && h.tuple.addr_type != 6) return false;
  const std::uint8_t flags = h.flags;
  if (flags & ~(AYAFLOW_PF_SYN | AYAFLOW_PF_FIN)) return false;
  if (flags == (AYAFLOW_PF_SYN | AYAFLOW_PF_FIN)) return false;
  if (flags != 0) return h.tuple.protocol == kTcp && data_len == 0;  // markers carry no data
  return h.tuple.protocol == kUdp || data_len != 0;                  // TCP records are data
}

}  // namespace

StreamReassembler::Options PayloadInspector::defaultTrackerOptions() noexcept {
  StreamReassembler::Options o;
  o.max_stream_bytes = AYAFLOW_TLS_CAPTURE_BYTES;
  return o;
}

PayloadInspector::PayloadInspector(DomainMap& domains)
    : PayloadInspector(domains, defaultTrackerOptions()) {}

PayloadInspector::PayloadInspector(DomainMap& domains, StreamReassembler::Options tracker_options)
    : domains_(domains), tracker_(tracker_options) {}

void PayloadInspector::onRecord(const void* data, std::size_t size, std::uint64_t now_ns) noexcept {
  bump(counters_.records);
  try {
    handle(data, size, now_ns);
  } catch (...) {
    // Only std::bad_alloc can get here (parsers, tracker, DomainMap); the record is lost.
    bump(counters_.exceptions);
  }
  publishTrackerState();
}

void PayloadInspector::publishTrackerState() noexcept {
  const StreamReassembler& streams = tracker_.streams();
  counters_.tls_streams_evicted.store(streams.evictions(), std::memory_order_relaxed);
  counters_.tls_streams.store(streams.size(), std::memory_order_relaxed);
  counters_.tls_stream_bytes.store(streams.bufferedBytes(), std::memory_order_relaxed);
}

void PayloadInspector::handle(const void* data, std::size_t size, std::uint64_t now_ns) {
  if (data == nullptr || size < kHeaderLen) {
    bump(counters_.malformed_records);
    return;
  }
  // Ring-buffer memory may be unaligned: copy the header out (the data is read as bytes).
  ayaflow_payload_event h;
  std::memcpy(&h, data, kHeaderLen);
  const std::size_t data_len = size - kHeaderLen;
  if (!headerSane(h, data_len)) {
    bump(counters_.malformed_records);
    return;
  }
  flow::FlowKey key;  // client -> server for TCP; source -> destination for UDP
  const ayaflow_tuple& t = h.tuple;
  std::memcpy(key.local.bytes.data(), t.src_addr, sizeof t.src_addr);
  std::memcpy(key.remote.bytes.data(), t.dst_addr, sizeof t.dst_addr);
  if (t.addr_type == 4 && !(key.local.isV4Mapped() && key.remote.isV4Mapped())) {
    bump(counters_.malformed_records);
    return;
  }
  key.local_port = t.src_port;
  key.remote_port = t.dst_port;
  key.protocol = t.protocol;

  const auto* payload = static_cast<const std::uint8_t*>(data) + kHeaderLen;
  if (t.protocol == kUdp)
    onDns(key.remote, payload, data_len);  // a response's destination is the client
  else
    onTls(key, h.flags, h.seq, payload, data_len, now_ns);
}

void PayloadInspector::onDns(const flow::IpAddress& destination, const std::uint8_t* data,
                             std::size_t len) {
  std::optional<DnsMessage> m = parseDnsMessage(data, len);
  if (!m) {
    bump(counters_.dns_unparsable);
    return;
  }
  if (m->is_response) {
    bump(counters_.dns_responses);
    domains_.learnDnsResponse(*m, destination);  // error responses (rcode != 0) teach nothing
  } else {
    bump(counters_.dns_queries);
    last_query_.assign(m->qname);  // reuses the buffer once it is large enough
  }
}

void PayloadInspector::onTls(const flow::FlowKey& key, std::uint8_t flags, std::uint32_t seq,
                             const std::uint8_t* data, std::size_t len, std::uint64_t now_ns) {
  if (flags & AYAFLOW_PF_SYN) {
    // A SYN begins a new connection: whatever the 4-tuple held (an earlier connection whose
    // FIN record was lost, already settled) is forgotten, so this one is inspected too.
    tracker_.onClose(key);
    tracker_.onSyn(key, seq, now_ns);
    return;
  }
  if (flags & AYAFLOW_PF_FIN) {
    tracker_.onClose(key);
    return;
  }
  const std::optional<TlsParseResult> r = tracker_.onSegment(key, seq, data, len, now_ns);
  if (!r) {
    // A hello longer than the window is given up inside the tracker without a verdict.
    const std::uint64_t too_large = tracker_.counters().too_large;
    if (too_large != too_large_seen_) {
      too_large_seen_ = too_large;
      counters_.tls_too_large.store(too_large, std::memory_order_relaxed);
    }
    return;
  }
  switch (r->status) {
    case TlsParseResult::kFound:
      bump(counters_.tls_sni_found);
      domains_.learnSni(key, r->sni);  // names this connection only
      break;
    case TlsParseResult::kNoSni:
      bump(counters_.tls_no_sni);
      break;
    case TlsParseResult::kNotTls:
      bump(counters_.tls_not_tls);
      break;
    case TlsParseResult::kMalformed:
      bump(counters_.tls_malformed);
      break;
    case TlsParseResult::kNeedMore:  // never returned by the tracker
      break;
  }
}

std::size_t PayloadInspector::expire(std::uint64_t now_ns) noexcept {
  std::size_t removed = 0;
  try {
    removed = tracker_.expire(now_ns);  // erases only: nothing expected to throw
  } catch (...) {
    bump(counters_.exceptions);
  }
  publishTrackerState();
  return removed;
}

std::optional<std::string> PayloadInspector::domainFor(const flow::FlowKey& key) const {
  return domains_.lookup(key);
}

PayloadInspector::Counters PayloadInspector::counters() const noexcept {
  const auto get = [](const std::atomic<std::uint64_t>& c) {
    return c.load(std::memory_order_relaxed);
  };
  const AtomicCounters& c = counters_;
  Counters out;
  out.records = get(c.records);
  out.malformed_records = get(c.malformed_records);
  out.dns_queries = get(c.dns_queries);
  out.dns_responses = get(c.dns_responses);
  out.dns_unparsable = get(c.dns_unparsable);
  out.tls_sni_found = get(c.tls_sni_found);
  out.tls_no_sni = get(c.tls_no_sni);
  out.tls_not_tls = get(c.tls_not_tls);
  out.tls_malformed = get(c.tls_malformed);
  out.tls_too_large = get(c.tls_too_large);
  out.exceptions = get(c.exceptions);
  out.tls_streams_evicted = get(c.tls_streams_evicted);
  out.tls_streams = get(c.tls_streams);
  out.tls_stream_bytes = get(c.tls_stream_bytes);
  return out;
}

}  // namespace ayaflow::inspect
