// SPDX-License-Identifier: MIT OR Apache-2.0
// IpfixSink: records -> libfixbuf (templates, transcoding, sequence numbers, RFC 5610 type
// records) into a message buffer of max_message bytes; the sockets are ours, so a slow or
// absent collector costs a bounded wait and counted drops, never a blocked thread.
//
// Why libfixbuf: it is the IPFIX library Debian ships and CERT's YAF exports with; it does
// the template bookkeeping, RFC 5610 records and encoding we would otherwise hand-write and
// test against every collector. Its cost is measured in bench/bench_export.cpp.
#include "ayaflow/export/ipfix_sink.h"

#include <fcntl.h>
#include <fixbuf/public.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "ayaflow/common/thread.h"
#include "ayaflow/pipeline/batch_queue.h"

namespace ayaflow::exporter {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::uint16_t kInternalTemplate = 999;  // the record struct below; never on the wire
constexpr auto kLogInterval = std::chrono::seconds(60);
constexpr int kTcpSendBuffer = 256 * 1024;

// ayaflow's enterprise-specific elements (PEN kIpfixEnterpriseNumber); docs/export.md.
enum Element : std::uint16_t {
  kDomain = 1,
  kSrcHostname = 2,  // then namespace, pod, workload, workload kind, node: 2..7
  kDstHostname = 8,  // 8..13
  kTcpState = 14,
  kRttMicroseconds = 15,
  kRttKind = 16,
  kRetransmits = 17,
  kDrops = 18,
};

#define AYAFLOW_IE(name, num, len, flags, type, desc)                                             \
  fbInfoElement_t {                                                                               \
    {reinterpret_cast<const fbInfoElement_t*>(name)}, 0, kIpfixEnterpriseNumber, num, len, flags, \
        0, 0, type, const_cast<char*>(desc)                                                       \
  }

const fbInfoElement_t* enterpriseElements() {
  static const fbInfoElement_t kElements[] = {
      AYAFLOW_IE("ayaflowDomain", kDomain, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Name of the remote end from DNS answers or TLS SNI"),
      AYAFLOW_IE("ayaflowSourceHostname", 2, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Reverse DNS name of the source"),
      AYAFLOW_IE("ayaflowSourceNamespace", 3, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Kubernetes namespace of the source pod"),
      AYAFLOW_IE("ayaflowSourcePod", 4, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING, "Source pod name"),
      AYAFLOW_IE("ayaflowSourceWorkload", 5, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Workload owning the source pod"),
      AYAFLOW_IE("ayaflowSourceWorkloadKind", 6, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Kind of that workload (Deployment, StatefulSet, ...)"),
      AYAFLOW_IE("ayaflowSourceNode", 7, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Node name when the source is a node address"),
      AYAFLOW_IE("ayaflowDestinationHostname", 8, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Reverse DNS name of the destination"),
      AYAFLOW_IE("ayaflowDestinationNamespace", 9, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Kubernetes namespace of the destination pod"),
      AYAFLOW_IE("ayaflowDestinationPod", 10, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Destination pod name"),
      AYAFLOW_IE("ayaflowDestinationWorkload", 11, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Workload owning the destination pod"),
      AYAFLOW_IE("ayaflowDestinationWorkloadKind", 12, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Kind of that workload"),
      AYAFLOW_IE("ayaflowDestinationNode", 13, FB_IE_VARLEN, FB_IE_DEFAULT, FB_STRING,
                 "Node name when the destination is a node address"),
      AYAFLOW_IE("ayaflowTcpState", kTcpState, 1, FB_IE_F_ENDIAN | FB_IE_IDENTIFIER, FB_UINT_8,
                 "TCP connection state after the record's last packet: 0 unknown, 1 opening, "
                 "2 established, 3 closed, 4 reset, 5 refused, 6 unanswered"),
      AYAFLOW_IE("ayaflowRttMicroseconds", kRttMicroseconds, 4,
                 FB_IE_F_ENDIAN | FB_IE_QUANTITY | FB_UNITS_MICROSECONDS, FB_UINT_32,
                 "Latest round-trip time of the connection"),
      AYAFLOW_IE("ayaflowRttKind", kRttKind, 1, FB_IE_F_ENDIAN | FB_IE_IDENTIFIER, FB_UINT_8,
                 "What the RTT measures: 0 none, 1 handshake, 2 kernel smoothed RTT"),
      AYAFLOW_IE("ayaflowRetransmits", kRetransmits, 4,
                 FB_IE_F_ENDIAN | FB_IE_QUANTITY | FB_UNITS_PACKETS, FB_UINT_32,
                 "Segments the local socket retransmitted in this record"),
      AYAFLOW_IE("ayaflowDrops", kDrops, 4, FB_IE_F_ENDIAN | FB_IE_QUANTITY | FB_UNITS_PACKETS,
                 FB_UINT_32, "Packets of this flow the kernel dropped"),
      FB_IE_NULL};
  return kElements;
}
#undef AYAFLOW_IE

/// The internal record libfixbuf transcodes from: no implicit padding (libfixbuf reads the
/// fields back to back as the template lists them), 8-byte multiple.
struct IpfixRecord {
  std::uint64_t start_ms, end_ms, packets, bytes;
  std::uint8_t src6[16], dst6[16];
  fbVarfield_t strings[13];  // domain, then source and destination names (see Element)
  std::uint32_t src4, dst4, ingress_if, egress_if, rtt_us, retransmits, drops;
  std::uint16_t src_port, dst_port, tcp_flags;
  std::uint8_t protocol, direction, tcp_state, rtt_kind;
  std::uint8_t padding[2];
};
static_assert(sizeof(IpfixRecord) == 312, "IpfixRecord must have no implicit padding");

// The internal template (every field, in IpfixRecord order). Flag 1: IPv4 only, 2: IPv6
// only, 4: internal only (padding); 0: always.
#define AYAFLOW_NAMES(side)                                       \
  {const_cast<char*>("ayaflow" side "Hostname"), 0, 0},           \
      {const_cast<char*>("ayaflow" side "Namespace"), 0, 0},      \
      {const_cast<char*>("ayaflow" side "Pod"), 0, 0},            \
      {const_cast<char*>("ayaflow" side "Workload"), 0, 0},       \
      {const_cast<char*>("ayaflow" side "WorkloadKind"), 0, 0}, { \
    const_cast<char*>("ayaflow" side "Node"), 0, 0                \
  }
fbInfoElementSpec_t kRecordSpec[] = {{const_cast<char*>("flowStartMilliseconds"), 8, 0},
                                     {const_cast<char*>("flowEndMilliseconds"), 8, 0},
                                     {const_cast<char*>("packetDeltaCount"), 8, 0},
                                     {const_cast<char*>("octetDeltaCount"), 8, 0},
                                     {const_cast<char*>("sourceIPv6Address"), 16, 2},
                                     {const_cast<char*>("destinationIPv6Address"), 16, 2},
                                     {const_cast<char*>("ayaflowDomain"), 0, 0},
                                     AYAFLOW_NAMES("Source"),
                                     AYAFLOW_NAMES("Destination"),
                                     {const_cast<char*>("sourceIPv4Address"), 4, 1},
                                     {const_cast<char*>("destinationIPv4Address"), 4, 1},
                                     {const_cast<char*>("ingressInterface"), 4, 0},
                                     {const_cast<char*>("egressInterface"), 4, 0},
                                     {const_cast<char*>("ayaflowRttMicroseconds"), 4, 0},
                                     {const_cast<char*>("ayaflowRetransmits"), 4, 0},
                                     {const_cast<char*>("ayaflowDrops"), 4, 0},
                                     {const_cast<char*>("sourceTransportPort"), 2, 0},
                                     {const_cast<char*>("destinationTransportPort"), 2, 0},
                                     {const_cast<char*>("tcpControlBits"), 2, 0},
                                     {const_cast<char*>("protocolIdentifier"), 1, 0},
                                     {const_cast<char*>("flowDirection"), 1, 0},
                                     {const_cast<char*>("ayaflowTcpState"), 1, 0},
                                     {const_cast<char*>("ayaflowRttKind"), 1, 0},
                                     {const_cast<char*>("paddingOctets"), 2, 4},
                                     FB_IESPEC_NULL};
#undef AYAFLOW_NAMES

std::string gerror(GError* err) {
  std::string text = err != nullptr && err->message != nullptr ? err->message : "unknown error";
  if (err != nullptr) g_error_free(err);
  return text;
}

/// One collector: a socket of our own (connected UDP, or TCP connected on demand).
struct Collector {
  std::string spec;  // host:port as configured
  std::string host, port;
  int fd = -1;
  bool needs_templates = true;  // TCP: a new connection starts with the templates
  Clock::time_point retry_at{};
  std::uint64_t errors_logged = 0;
};

}  // namespace

struct IpfixSink::Impl {
  explicit Impl(IpfixOptions o) : options(std::move(o)), queue(options.queue_records) {
    options.max_message = std::clamp<std::size_t>(options.max_message, 512, 65535);
    for (const std::string& spec : options.collectors) {
      Collector c;
      c.spec = spec;
      const std::size_t colon = spec.rfind(':');
      c.host = spec.substr(0, colon);
      if (c.host.size() >= 2 && c.host.front() == '[') c.host = c.host.substr(1, c.host.size() - 2);
      c.port = spec.substr(colon + 1);
      // Resolved when a socket is opened (and again after a failure): a collector whose
      // name does not resolve yet (a Service created later) is an outage, not a start-up
      // error.
      collectors.push_back(std::move(c));
    }
    buffer.resize(options.max_message);
    setUpLibfixbuf();
  }

  ~Impl() {
    if (fbuf != nullptr) fBufFree(fbuf);  // frees the session and the exporter too
    if (model != nullptr) fbInfoModelFree(model);
    for (Collector& c : collectors) closeSocket(c);
  }

  bool tcp() const { return options.transport == IpfixTransport::kTcp; }

  void setUpLibfixbuf() {
    GError* err = nullptr;
    model = fbInfoModelAlloc();
    fbInfoModelAddElementArray(model, const_cast<fbInfoElement_t*>(enterpriseElements()));
    session = fbSessionAlloc(model);
    fbSessionSetDomain(session, options.observation_domain);
    if (fbSessionSetMetadataExportElements(session, FALSE, kIpfixTemplateTypeInfo, &err) == 0) {
      throw std::runtime_error("IPFIX: type records: " + gerror(err));
    }
    const auto add = [&](std::uint32_t flags, bool internal, std::uint16_t tid) {
      fbTemplate_t* t = fbTemplateAlloc(model);
      // An element whose spec flags are not all in `flags` is left out.
      if (!fbTemplateAppendSpecArray(t, kRecordSpec, flags, &err) ||
          fbSessionAddTemplate(session, internal ? TRUE : FALSE, tid, t, &err) == 0) {
        throw std::runtime_error("IPFIX: template " + std::to_string(tid) + ": " + gerror(err));
      }
    };
    add(1 | 2 | 4, true, kInternalTemplate);
    add(1, false, kIpfixTemplateV4);
    add(2, false, kIpfixTemplateV6);
    exporter = fbExporterAllocBuffer(buffer.data(), static_cast<std::uint16_t>(buffer.size()));
    fbuf = fBufAllocForExport(session, exporter);
    fBufSetAutomaticMode(fbuf, FALSE);
    if (!fBufSetInternalTemplate(fbuf, kInternalTemplate, &err)) {
      throw std::runtime_error("IPFIX: internal template: " + gerror(err));
    }
    templateMessages();  // the first messages of every collector
  }

  /// Encodes the templates and the RFC 5610 type records into template_messages (kept for
  /// TCP reconnects and UDP refreshes): as many messages as max_message needs, the type
  /// template and its records first, so a collector knows the elements before the
  /// templates that use them.
  void templateMessages() {
    template_messages.clear();
    std::size_t in_message = 0;
    const auto emitTemplates = [&] {
      if (in_message == 0) return;
      GError* err = nullptr;
      fBufSetExportTime(fbuf, static_cast<std::uint32_t>(std::time(nullptr)));
      if (!fBufEmit(fbuf, &err)) throw std::runtime_error("IPFIX: emit templates: " + gerror(err));
      template_messages.emplace_back(reinterpret_cast<const char*>(buffer.data()),
                                     fbExporterGetMsgLen(exporter));
      in_message = 0;
    };
    // Runs `write` into the current message, or into a new one when it is full.
    const auto add = [&](const std::string& what, const auto& write) {
      for (int attempt = 0; attempt < 2; ++attempt) {
        GError* err = nullptr;
        if (write(&err)) {
          ++in_message;
          return;
        }
        const bool full = g_error_matches(err, FB_ERROR_DOMAIN, FB_ERROR_EOM);
        const std::string message = gerror(err);
        if (!full) throw std::runtime_error("IPFIX: " + what + ": " + message);
        // Full, or libfixbuf wants templates to start a message of their own.
        if (in_message != 0) {
          emitTemplates();
        } else {
          closeEmptyMessage();
        }
      }
    };
    add("type template", [&](GError** err) {
      return fbSessionExportTemplate(session, kIpfixTemplateTypeInfo, err);
    });
    for (const fbInfoElement_t* ie = enterpriseElements(); ie->ref.name != nullptr; ++ie) {
      const fbInfoElement_t* model_ie = fbInfoModelGetElementByName(model, ie->ref.name);
      add(std::string("type record of ") + ie->ref.name, [&](GError** err) {
        return fbInfoElementWriteOptionsRecord(fbuf, model_ie, kIpfixTemplateTypeInfo,
                                               kIpfixTemplateTypeInfo, err);
      });
    }
    add("IPv4 template",
        [&](GError** err) { return fbSessionExportTemplate(session, kIpfixTemplateV4, err); });
    add("IPv6 template",
        [&](GError** err) { return fbSessionExportTemplate(session, kIpfixTemplateV6, err); });
    emitTemplates();
    GError* err = nullptr;
    if (!fBufSetInternalTemplate(fbuf, kInternalTemplate, &err) ||
        !fBufSetExportTemplate(fbuf, current_tid, &err)) {
      throw std::runtime_error("IPFIX: record templates: " + gerror(err));
    }
  }

  // ---- exporter thread ------------------------------------------------------------------

  void run() {
    common::setUpThread("ayaflow-ipfix", /*batch=*/true);
    Clock::time_point now = Clock::now();
    next_refresh = now;  // templates go out first
    next_log = now + kLogInterval;
    for (;;) {
      Clock::time_point deadline = std::min(now + std::chrono::seconds(1), next_refresh);
      if (pending_records != 0)
        deadline = std::min(deadline, pending_since + options.flush_interval);
      pipeline::BatchQueue::Item item = queue.pop(std::max(deadline, Clock::now()));
      now = Clock::now();
      if (!tcp() && now >= next_refresh) {
        emit();
        try {
          templateMessages();
        } catch (const std::exception& e) {
          logger("export")->error("{}", e.what());
        }
        for (const std::string& m : template_messages) sendAll(m, 0);
        next_refresh = now + options.template_refresh;
      }
      if (item.batch) {
        take(*item.batch);
        // A window's batch can be megabytes: once encoded, hand the freed heap back.
        const bool large = item.batch->size() >= 8192;
        item.batch.reset();
        if (large) malloc_trim(0);
      }
      if (pending_records != 0 && (Clock::now() >= pending_since + options.flush_interval ||
                                   item.flush_ticket != 0 || item.closed)) {
        emit();
      }
      if (item.flush_ticket != 0) queue.done(item.flush_ticket);
      if (item.closed) break;
      if (now >= next_log) {
        for (Collector& c : collectors) c.errors_logged = 0;
        next_log = now + kLogInterval;
      }
    }
    for (Collector& c : collectors) closeSocket(c);
    queue.closeConsumer();
  }

  void take(const pipeline::RecordBatch& batch) {
    if (!batch.empty() && batch.front().state == pipeline::RecordState::kProvisional) return;
    for (const pipeline::FlowRecord& r : batch) append(r);
  }

  void append(const pipeline::FlowRecord& r) {
    IpfixRecord rec{};
    static const std::string kNone;
    rec.start_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(r.first_ms, 0));
    rec.end_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(r.last_ms, 0));
    rec.packets = r.packets;
    rec.bytes = r.bytes;
    const bool v4 = r.src.isV4Mapped() && r.dst.isV4Mapped();
    if (v4) {
      const auto u32 = [](const flow::IpAddress& a) {
        return (std::uint32_t{a.bytes[12]} << 24) | (std::uint32_t{a.bytes[13]} << 16) |
               (std::uint32_t{a.bytes[14]} << 8) | a.bytes[15];
      };
      rec.src4 = u32(r.src);
      rec.dst4 = u32(r.dst);
    } else {
      std::memcpy(rec.src6, r.src.bytes.data(), 16);
      std::memcpy(rec.dst6, r.dst.bytes.data(), 16);
    }
    const auto text = [](fbVarfield_t& f, const std::string& s) {
      f.len = s.size();
      f.buf = reinterpret_cast<std::uint8_t*>(const_cast<char*>(s.data()));
    };
    text(rec.strings[0], r.names && r.names->domain ? *r.names->domain : kNone);
    const enrich::EndpointNames* ends[2] = {r.srcNames(), r.dstNames()};
    for (int side = 0; side < 2; ++side) {
      const enrich::EndpointNames* n = ends[side];
      const enrich::PodName* pod = n != nullptr ? n->pod.get() : nullptr;
      fbVarfield_t* f = rec.strings + 1 + side * 6;
      text(f[0], n != nullptr && n->hostname ? *n->hostname : kNone);
      text(f[1], pod != nullptr ? pod->ns : kNone);
      text(f[2], pod != nullptr ? pod->pod : kNone);
      text(f[3], pod != nullptr ? pod->workload : kNone);
      text(f[4], pod != nullptr ? pod->workload_kind : kNone);
      text(f[5], n != nullptr && n->node ? *n->node : kNone);
    }
    const bool egress = r.direction == flow::Direction::kEgress;
    (egress ? rec.egress_if : rec.ingress_if) = r.ifindex;
    rec.rtt_us = r.rtt_us;
    rec.retransmits = r.retransmits;
    rec.drops = r.drops;
    rec.src_port = r.src_port;
    rec.dst_port = r.dst_port;
    rec.tcp_flags = static_cast<std::uint16_t>(r.tcp_flags & 0xff);  // wire flags only
    rec.protocol = r.protocol;
    rec.direction = egress ? 1 : 0;
    rec.tcp_state = static_cast<std::uint8_t>(r.tcp_state);
    rec.rtt_kind = static_cast<std::uint8_t>(r.rtt_kind);

    GError* err = nullptr;
    const std::uint16_t tid = v4 ? kIpfixTemplateV4 : kIpfixTemplateV6;
    if (tid != current_tid) {
      if (!fBufSetExportTemplate(fbuf, tid, &err)) {
        logger("export")->error("IPFIX: export template: {}", gerror(err));
        return;
      }
      current_tid = tid;
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fBufAppend(fbuf, reinterpret_cast<std::uint8_t*>(&rec), sizeof rec, &err)) {
        if (pending_records++ == 0) pending_since = Clock::now();
        return;
      }
      const bool full = g_error_matches(err, FB_ERROR_DOMAIN, FB_ERROR_EOM);
      const std::string message = gerror(err);
      err = nullptr;
      if (!full) {
        logger("export")->error("IPFIX: record not encoded: {}", message);
        break;
      }
      // The message is full (send it; the record starts the next one), or holds nothing of
      // ours (after templates libfixbuf starts data in a new message).
      if (pending_records != 0) {
        emit();
      } else {
        closeEmptyMessage();
      }
    }
    ++unencodable;
  }

  /// Lets libfixbuf close a message that holds none of our sets (it asks for a new message
  /// when switching between template and data sets); nothing is sent.
  void closeEmptyMessage() {
    GError* err = nullptr;
    if (!fBufEmit(fbuf, &err)) gerror(err);
  }

  /// Ends the message being built and sends it to every collector.
  void emit() {
    if (pending_records == 0) return;
    GError* err = nullptr;
    fBufSetExportTime(fbuf, static_cast<std::uint32_t>(std::time(nullptr)));
    if (!fBufEmit(fbuf, &err)) {
      logger("export")->error("IPFIX: emit: {}", gerror(err));
      dropped_send += pending_records;
      pending_records = 0;
      return;
    }
    const std::string message(reinterpret_cast<const char*>(buffer.data()),
                              fbExporterGetMsgLen(exporter));
    const std::uint64_t n = pending_records;
    pending_records = 0;
    if (sendAll(message, n)) records += n;
  }

  /// Sends one message to every collector; true when every one took it. `n` records in it
  /// (0 for templates).
  bool sendAll(const std::string& message, std::uint64_t n) {
    bool all = true;
    for (Collector& c : collectors) {
      if (!sendTo(c, message)) {
        all = false;
        dropped_send += n;
      }
    }
    return all;
  }

  bool sendTo(Collector& c, const std::string& message) {
    const Clock::time_point now = Clock::now();
    if (c.fd < 0) {
      if (now < c.retry_at) return false;
      if (!open(c)) {
        c.retry_at = now + options.reconnect;
        return false;
      }
    }
    if (tcp() && c.needs_templates) {
      c.needs_templates = false;
      for (const std::string& m : template_messages) {
        if (!write(c, m)) return false;
      }
    }
    return write(c, message);
  }

  bool open(Collector& c) {
    addrinfo hints{};
    hints.ai_socktype = tcp() ? SOCK_STREAM : SOCK_DGRAM;
    addrinfo* res = nullptr;
    if (const int rc = getaddrinfo(c.host.c_str(), c.port.c_str(), &hints, &res); rc != 0) {
      return failed(c, std::string("resolve: ") + gai_strerror(rc));
    }
    int fd = -1;
    int error = 0;
    for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
      fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) {
        error = errno;
        continue;
      }
      if (tcp()) {
        // A bounded send buffer: a collector that stops reading holds at most this much
        // of ours before writes time out (the kernel would otherwise grow it to megabytes).
        const int sndbuf = kTcpSendBuffer;
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
      }
      if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        error = errno;
        ::close(fd);
        fd = -1;
        continue;
      }
      if (tcp()) {
        pollfd p{fd, POLLOUT, 0};
        int so_error = 0;
        socklen_t len = sizeof so_error;
        if (::poll(&p, 1, static_cast<int>(options.timeout.count())) != 1 ||
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0 || so_error != 0) {
          error = so_error != 0 ? so_error : ETIMEDOUT;
          ::close(fd);
          fd = -1;
        }
      }
    }
    freeaddrinfo(res);
    if (fd < 0) return failed(c, std::string("connect: ") + std::strerror(error));
    c.fd = fd;
    c.needs_templates = true;
    return true;
  }

  /// Writes the whole message (TCP: within the timeout; UDP: one datagram or nothing).
  bool write(Collector& c, const std::string& m) {
    std::size_t done = 0;
    const Clock::time_point until = Clock::now() + options.timeout;
    while (done < m.size()) {
      const ssize_t n = ::send(c.fd, m.data() + done, m.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        bytes += static_cast<std::uint64_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && tcp()) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        pollfd p{c.fd, POLLOUT, 0};
        if (left > 0 && ::poll(&p, 1, static_cast<int>(left)) == 1) continue;
        errno = ETIMEDOUT;
      }
      const int error = errno;
      if (!tcp() && (error == ECONNREFUSED || error == EAGAIN || error == ENOBUFS)) {
        // UDP: a refused (ICMP) or full socket loses this datagram only.
        failed(c, std::string("send: ") + std::strerror(error));
        return false;
      }
      closeSocket(c);
      c.retry_at = Clock::now() + options.reconnect;
      // A TCP stream cut in the middle of a message cannot be resumed: the next
      // connection starts over with the templates.
      return failed(c, std::string("send: ") + std::strerror(error));
    }
    return true;
  }

  bool failed(Collector& c, const std::string& what) {
    ++errors;
    if (c.errors_logged++ == 0) logger("export")->warn("IPFIX collector {}: {}", c.spec, what);
    return false;
  }

  void closeSocket(Collector& c) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
    c.needs_templates = true;
  }

  ExportStats stats() const {
    ExportStats s;
    const auto get = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    s.sink = "ipfix";
    s.records = get(records);
    s.bytes = get(bytes);
    s.errors = get(errors);
    const pipeline::BatchQueueStats q = queue.stats();
    s.queue_depth = q.depth;
    s.dropped_queue_full = q.records_dropped_full;
    s.dropped_send = get(dropped_send) + get(unencodable);
    s.dropped_stopped = q.records_dropped_closed;
    return s;
  }

  void stop() {
    std::lock_guard<std::mutex> lock(stop_mu);
    queue.close();
    if (thread.joinable()) thread.join();
  }

  IpfixOptions options;
  pipeline::BatchQueue queue;
  std::vector<Collector> collectors;
  std::vector<std::uint8_t> buffer;
  fbInfoModel_t* model = nullptr;
  fbSession_t* session = nullptr;
  fbExporter_t* exporter = nullptr;
  fBuf_t* fbuf = nullptr;
  std::vector<std::string> template_messages;
  std::uint16_t current_tid = kIpfixTemplateV4;
  std::uint64_t pending_records = 0;
  Clock::time_point pending_since, next_refresh, next_log;
  std::thread thread;
  std::mutex stop_mu;
  std::atomic<std::uint64_t> records{0}, bytes{0}, errors{0}, dropped_send{0}, unencodable{0};
};

IpfixSink::IpfixSink(IpfixOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
}

IpfixSink::~IpfixSink() { stop(); }

bool IpfixSink::consume(pipeline::BatchPtr batch, Deadline room_until) noexcept {
  if (!batch || batch->empty() || batch->front().state == pipeline::RecordState::kProvisional) {
    return true;
  }
  return impl_->queue.push(std::move(batch), room_until);
}

void IpfixSink::flush() { impl_->queue.flush(); }

void IpfixSink::stop() { impl_->stop(); }

ExportStats IpfixSink::stats() const { return impl_->stats(); }

}  // namespace ayaflow::exporter
