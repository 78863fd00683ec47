// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "ayaflow/flow/flow_key.h"
#include "ayaflow/inspect/domain_map.h"
#include "ayaflow/inspect/stream_reassembler.h"
#include "ayaflow/inspect/tls_sni_tracker.h"

namespace ayaflow::inspect {

/// Turns the kernel's deep-inspection records (`payload_events` ring buffer, struct
/// ayaflow_payload_event in include/ayaflow/abi/event.h: a 64-byte header plus data_len
/// bytes) into names in a DomainMap:
/// - UDP (DNS): parseDnsMessage(); responses teach the map (client, address) -> question
///   name, the client being the response's destination (DomainMap::learnDnsResponse), queries are
///   counted and their name kept (lastQueryName()).
/// - TCP (client-to-server stream to the TLS port): an AYAFLOW_PF_SYN marker fixes the
///   stream start (TlsSniTracker::onSyn; it first forgets what the 4-tuple held, so a new
///   connection is inspected even if the last one's FIN was lost), an AYAFLOW_PF_FIN marker
///   forgets the stream (onClose), data goes to TlsSniTracker::onSegment(); a found SNI is
///   learned for the connection, i.e. the record's 5-tuple, client -> server
///   (DomainMap::learnSni).
///
/// Streams are keyed client -> server whatever the record's direction (FlowKey local = the
/// record's source, remote = its destination), so a segment seen at two hooks (ingress of
/// one interface, egress of another) lands in the same stream.
///
/// Ownership: borrows the DomainMap, which must outlive it; owns the TlsSniTracker.
/// Thread: onRecord()/expire()/tracker()/lastQueryName() on one thread (the ingest thread);
/// counters() and domainFor() from any thread. Errors: never throws from onRecord(): a
/// record that fails validation is counted in malformed_records and ignored; an exception
/// (std::bad_alloc) is caught and counted in `exceptions`. No allocation per record beyond
/// what the DNS parser, the tracker and the DomainMap do.
class PayloadInspector {
 public:
  /// Cumulative; a snapshot of relaxed atomics (each field exact, fields not mutually
  /// consistent while records flow).
  struct Counters {
    std::uint64_t records = 0;              ///< every onRecord() call, malformed ones included
    std::uint64_t malformed_records = 0;    ///< failed validation, ignored
    std::uint64_t dns_queries = 0;          ///< UDP records that parsed as a DNS query
    std::uint64_t dns_responses = 0;        ///< UDP records that parsed as a DNS response
    std::uint64_t dns_unparsable = 0;       ///< UDP records that did not parse as DNS
    std::uint64_t tls_sni_found = 0;        ///< TLS streams settled with an SNI
    std::uint64_t tls_no_sni = 0;           ///< complete ClientHellos without a host_name
    std::uint64_t tls_not_tls = 0;          ///< streams that do not start with a ClientHello
    std::uint64_t tls_malformed = 0;        ///< broken ClientHellos
    std::uint64_t tls_too_large = 0;        ///< hellos longer than the tracker's window
    std::uint64_t exceptions = 0;           ///< records dropped by an exception (bad_alloc)
    std::uint64_t tls_streams_evicted = 0;  ///< streams pushed out by the tracker's bounds
    std::uint64_t tls_streams = 0;          ///< gauge: streams tracked now
    std::uint64_t tls_stream_bytes = 0;     ///< gauge: bytes buffered by the tracker now
  };

  /// Tracker options used by the one-argument constructor: the reassembler's defaults with
  /// max_stream_bytes = AYAFLOW_TLS_CAPTURE_BYTES (the kernel sends no more, so a hello
  /// needing more is given up and counted at once instead of waiting for the idle timeout).
  static StreamReassembler::Options defaultTrackerOptions() noexcept;

  explicit PayloadInspector(DomainMap& domains);
  PayloadInspector(DomainMap& domains, StreamReassembler::Options tracker_options);
  PayloadInspector(const PayloadInspector&) = delete;
  PayloadInspector& operator=(const PayloadInspector&) = delete;

  /// One ring-buffer record (may be unaligned). Checks: size >= 64; abi_version ==
  /// AYAFLOW_ABI_VERSION; kind == AYAFLOW_EVENT_PAYLOAD; data_len == size - 64; direction
  /// 0/1; protocol 6/17; addr_type 4 (both addresses IPv4-mapped) or 6; flags only
  /// AYAFLOW_PF_SYN or AYAFLOW_PF_FIN (not both), on TCP only, with data_len 0; a TCP record
  /// without a flag carries data. now_ns: CLOCK_MONOTONIC, for the tracker's idle timeout.
  void onRecord(const void* data, std::size_t size, std::uint64_t now_ns) noexcept;

  /// Drops TLS streams idle longer than the tracker's idle timeout; returns how many. (The
  /// DomainMap's own expire() is its owner's job.)
  std::size_t expire(std::uint64_t now_ns) noexcept;

  /// The domain of a connection: its SNI, else its local end's DNS name for the remote
  /// address, else any client's. Thread-safe (DomainMap::lookup).
  std::optional<std::string> domainFor(const flow::FlowKey& key) const;

  /// Any thread.
  Counters counters() const noexcept;

  /// The question name of the last DNS query seen (empty before the first). Ingest thread.
  const std::string& lastQueryName() const noexcept { return last_query_; }

  /// Ingest thread.
  const TlsSniTracker& tracker() const noexcept { return tracker_; }

 private:
  struct AtomicCounters {
    std::atomic<std::uint64_t> records{0}, malformed_records{0}, dns_queries{0}, dns_responses{0},
        dns_unparsable{0}, tls_sni_found{0}, tls_no_sni{0}, tls_not_tls{0}, tls_malformed{0},
        tls_too_large{0}, exceptions{0}, tls_streams_evicted{0}, tls_streams{0},
        tls_stream_bytes{0};
  };

  // Mirrors the tracker's size, buffered bytes and evictions into counters_ (ingest thread).
  void publishTrackerState() noexcept;

  void handle(const void* data, std::size_t size, std::uint64_t now_ns);
  void onDns(const flow::IpAddress& destination, const std::uint8_t* data, std::size_t len);
  void onTls(const flow::FlowKey& key, std::uint8_t flags, std::uint32_t seq,
             const std::uint8_t* data, std::size_t len, std::uint64_t now_ns);

  DomainMap& domains_;
  TlsSniTracker tracker_;             // ingest thread only
  std::string last_query_;            // ingest thread only
  AtomicCounters counters_;           // written by the ingest thread only, read anywhere
  std::uint64_t too_large_seen_ = 0;  // tracker_.counters().too_large already counted
};

}  // namespace ayaflow::inspect
