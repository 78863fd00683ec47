// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <memory>

#include "ayaflow/export/export_options.h"
#include "ayaflow/export/export_stats.h"
#include "ayaflow/pipeline/flow_record.h"

namespace ayaflow::exporter {

/// The private enterprise number of ayaflow's own IPFIX information elements: 32473, the
/// number RFC 5612 sets aside for documentation. ayaflow has no registered number of its
/// own; the elements (docs/export.md) are announced with RFC 5610 type records, so a
/// collector can decode them by name without prior configuration.
inline constexpr std::uint32_t kIpfixEnterpriseNumber = 32473;
/// Template IDs on the wire: IPv4 and IPv6 flow records, and the RFC 5610 type records.
inline constexpr std::uint16_t kIpfixTemplateV4 = 256;
inline constexpr std::uint16_t kIpfixTemplateV6 = 257;
inline constexpr std::uint16_t kIpfixTemplateTypeInfo = 258;

/// Exports final flow records over IPFIX (RFC 7011) to one or more collectors, encoded by
/// libfixbuf (docs/export.md lists the templates and elements). One record per directional
/// flow and interval, as the pipeline gives them.
///
/// Messages never exceed max_message bytes. UDP: templates and type records go first and
/// again every template_refresh; a datagram the socket refuses is dropped and counted.
/// TCP: templates go first on every new connection; a collector that does not read makes
/// writes time out: its messages are dropped (counted) and the connection is tried again
/// later, never holding up the other collectors for longer than the timeout.
///
/// Threads: consume() on the pipeline thread never waits (a full hand-off drops, counted
/// queue_full); one thread of its own encodes and sends; flush(), stop(), stats() from any
/// other thread. Provisional records (checkpoints) are ignored.
class IpfixSink final : public pipeline::RecordSink {
 public:
  /// Collectors are resolved when their sockets open (again after each failure), so a name
  /// that does not resolve yet costs counted drops, not the start-up.
  explicit IpfixSink(IpfixOptions options);
  ~IpfixSink() override;  ///< stop()
  IpfixSink(const IpfixSink&) = delete;
  IpfixSink& operator=(const IpfixSink&) = delete;

  const char* name() const noexcept override { return "ipfix"; }
  bool consume(pipeline::BatchPtr batch, Deadline room_until) noexcept override;
  /// Returns once every batch consumed before the call is sent (or dropped).
  void flush() override;
  void stop() override;

  ExportStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ayaflow::exporter
