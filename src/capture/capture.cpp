// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/capture/capture.h"

#include <malloc.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <vector>
// Boost 1.74 Asio uses std::exchange without including <utility> (C++20).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/bpf/flow_tables.h"
#include "ayaflow/bpf/link_watcher.h"
#include "ayaflow/bpf/ring_buffer_reader.h"
#include "ayaflow/capture/interface_set.h"
#include "ayaflow/capture/tc_attacher.h"
#include "ayaflow/capture/tcp_counters.h"
#include "ayaflow/common/interface_name.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/flow/packet.h"

namespace asio = boost::asio;

namespace ayaflow::capture {
namespace {

constexpr auto kExpiryInterval = std::chrono::seconds(10);
// The live connection map's shards and their initial slots.
constexpr std::size_t kConnectionShards = 16;
constexpr std::size_t kConnectionInitialCapacity = 256;
// Aggregated mode: the flow tables are collected this long after each whole second.
constexpr auto kFlowCollectDelay = std::chrono::milliseconds(5);
// Health updates for connections the live map does not hold yet (their packets are still in a
// kernel flow table or the ring buffer) are tried again this many times, at each flow-table
// collection and with later updates (at most every kHealthRetryEvery) for this long, and at
// most this many wait.
constexpr auto kHealthRetryFor = std::chrono::seconds(5);
constexpr auto kHealthRetryEvery = std::chrono::milliseconds(100);
constexpr std::size_t kMaxPendingHealth = 4096;

std::uint64_t monotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

/// Ring-buffer records and kernel flow-table entries -> connection map and history. Ingest
/// thread only; no allocation except when a map shard grows, no formatting.
class Ingest final : public bpf::EventSink, public bpf::FlowSink {
 public:
  Ingest(flow::ConnectionMap& map, flow::PacketSink& history) : map_(map), history_(history) {}

  void onEvent(const void* data, std::size_t size) noexcept override {
    flow::Packet packet;
    if (flow::decodePacketEvent(data, size, packet) != flow::DecodeStatus::kOk) {
      malformed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    take(packet);
    read_.fetch_add(1, std::memory_order_relaxed);
  }

  void onFlow(const ayaflow_flow_key& key, const ayaflow_flow_value& value) noexcept override {
    flow::Packet packet;
    if (flow::decodeFlowEntry(key, value, packet) != flow::DecodeStatus::kOk) {
      malformed_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    take(packet);
    flow_packets_.fetch_add(value.packets, std::memory_order_relaxed);
  }

  /// The live connection first, then the history: its record carries the connection's TCP
  /// state and RTT as they are after this packet. A health update (packets 0) of a connection
  /// the live map does not hold goes nowhere (returned unrecorded: the caller may try again
  /// once the connection's packets are in); the history gets it once it is applied, so it
  /// holds only flows of the attached interfaces.
  flow::RecordOutcome take(flow::Packet& packet) noexcept {
    const flow::RecordOutcome o = map_.record(packet);
    if (!o.recorded) return o;
    if (packet.packets == 0) {
      // A health update: its direction was a guess (a socket's own packets leave it); the
      // connection says which end is local. Only retransmissions and drops make a record: a
      // smoothed-RTT sample reaches the history with the connection's next packet.
      if (o.flipped) {
        packet.direction = packet.direction == flow::Direction::kEgress ? flow::Direction::kIngress
                                                                        : flow::Direction::kEgress;
      }
      if (packet.srtt_us != 0) tcp_.observeSmoothed(packet.srtt_us);
      if (packet.retransmits == 0 && packet.drops == 0) return o;
    }
    if (packet.protocol == 6) {
      packet.tcp_state = o.after;
      packet.rtt_us = o.rtt_us;
      packet.rtt_kind = o.rtt_kind;
      tcp_.observe(o);
    }
    history_.onPacket(packet);  // bounded hand-off: never waits
    return o;
  }

  const TcpCounters& tcp() const { return tcp_; }

  std::uint64_t read() const { return read_.load(std::memory_order_relaxed); }
  std::uint64_t flowPackets() const { return flow_packets_.load(std::memory_order_relaxed); }
  std::uint64_t malformed() const { return malformed_.load(std::memory_order_relaxed); }

 private:
  flow::ConnectionMap& map_;
  flow::PacketSink& history_;
  TcpCounters tcp_;
  std::atomic<std::uint64_t> read_{0};
  std::atomic<std::uint64_t> malformed_{0};
  std::atomic<std::uint64_t> flow_packets_{0};
};

/// Payload ring-buffer records -> the payload sink, stamped with the time they are read.
class PayloadReader final : public bpf::EventSink {
 public:
  explicit PayloadReader(flow::PayloadSink& sink) : sink_(sink) {}
  void onEvent(const void* data, std::size_t size) noexcept override {
    sink_.onPayload(data, size, monotonicNowNs());
  }

 private:
  flow::PayloadSink& sink_;
};

bpf::ProgramOptions programOptions(const CaptureOptions& o) {
  bpf::ProgramOptions p;
  p.ring_buffer_size = o.ring_buffer_size;
  p.enable_ipv6 = o.enable_ipv6;
  p.deep_inspect = o.deep_inspect;
  p.decapsulate = o.decapsulate;
  p.tcp_state = o.tcp_state;
  p.flow_table = o.flow_tables;
  p.flow_table_entries = o.flow_table_size;
  return p;
}

}  // namespace

struct Capture::Impl {
  Impl(asio::io_context& io_context, const CaptureOptions& o, flow::PacketSink& history,
       flow::PayloadSink* payload_sink)
      : io(io_context),
        options(o),
        program(programOptions(o)),
        attacher(program, o.attach_mode),
        interfaces(o.interfaces, attacher, o.decapsulate),
        connections(kConnectionShards, kConnectionInitialCapacity, o.max_connections),
        ingest(connections, history),
        payload(payload_sink),
        expiry_timer(io),
        flow_timer(io) {
    if (o.flow_tables) {
      flow_tables.emplace(program.flowTablesMapFd(), program.flowTableFd(0),
                          program.flowTableFd(1));
    }
    reader = std::make_unique<bpf::RingBufferReader>(io, program.eventsMapFd(), ingest);
    if (payload != nullptr && o.deep_inspect) {
      payload_reader_sink.emplace(*payload);
      payload_reader = std::make_unique<bpf::RingBufferReader>(io, program.payloadEventsMapFd(),
                                                               *payload_reader_sink);
    }
    // Notifications queue up from here on: a change during start-up is not missed.
    link_watcher = std::make_unique<bpf::LinkWatcher>(io, [this] { followInterfaces(); });
    interfaces.start(listLinks());
  }

  void followInterfaces() {
    if (stopping) return;
    try {
      interfaces.update(listLinks());
    } catch (const std::exception& e) {
      logger("capture")->error("{}", e.what());
    }
    if (interfaces_changed) interfaces_changed();
  }

  void scheduleExpiry() {
    expiry_timer.expires_after(kExpiryInterval);
    expiry_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      const std::uint64_t now = monotonicNowNs();
      const std::uint64_t timeout_ns =
          static_cast<std::uint64_t>(options.connection_timeout_s) * 1000000000ULL;
      const std::size_t removed = connections.expire(now, timeout_ns);
      expired.fetch_add(removed, std::memory_order_relaxed);
      if (removed > 0) logger("flow")->debug("expired {} idle connections", removed);
      if (payload != nullptr) payload->onTick(now);
      warnAboutLoss();
      retireGoneInterfaces();
      // glibc keeps freed heap (expired connections, HTTP bursts, a written window's
      // records) mapped; hand it back right after the expiry pass, so RSS follows the live
      // state rather than its peak.
      malloc_trim(0);
      scheduleExpiry();
    });
  }

  // Aggregated mode: collect the kernel flow table shortly after every whole second of
  // Unix time, so that a table's packets fall in the aggregation window they belong to
  // (windows are whole seconds aligned on Unix time) up to the swap's few milliseconds.
  void scheduleFlowCollection() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    const auto to_next_second = std::chrono::nanoseconds(1000000000L - now.tv_nsec);
    flow_timer.expires_after(to_next_second + kFlowCollectDelay);
    flow_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      try {
        flow_tables->swapAndCollect(ingest);
      } catch (const std::exception& e) {
        // The table keeps what it held; the next collection reads it.
        logger("bpf")->error("{}", e.what());
      }
      retryPendingHealth();
      scheduleFlowCollection();
    });
  }

  // Ingest thread. A health update (the tracing probes') goes to the history at once, and to
  // its live connection once the connection's packets are in.
  void ingestHealth(flow::Packet& packet) noexcept {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_health_retry >= kHealthRetryEvery) retryPendingHealth();
    const flow::RecordOutcome o = ingest.take(packet);
    if (!o.recorded && packet.packets == 0 && pending_health.size() < kMaxPendingHealth) {
      pending_health.push_back({packet, now + kHealthRetryFor});
    }
  }

  void retryPendingHealth() noexcept {
    const auto now = std::chrono::steady_clock::now();
    last_health_retry = now;
    std::size_t kept = 0;
    for (PendingHealth& h : pending_health) {
      if (ingest.take(h.packet).recorded || now >= h.until) continue;
      pending_health[kept++] = h;
    }
    pending_health.resize(kept);
  }

  // The kernel counters of interfaces gone since the last pass (pods deleted) are folded
  // into one "removed" series: the stats map and the metric series stay bounded under churn.
  void retireGoneInterfaces() noexcept {
    try {
      std::set<std::uint32_t> present;
      for (const Link& link : listLinks()) present.insert(static_cast<std::uint32_t>(link.ifindex));
      const std::size_t n = program.retireInterfaces(present);
      if (n > 0) logger("capture")->debug("retired the counters of {} gone interface keys", n);
    } catch (const std::exception& e) {
      logger("capture")->error("{}", e.what());
    }
  }

  // At most one warning per expiry interval, only when events were lost.
  void warnAboutLoss() noexcept {
    std::uint64_t lost = 0;
    try {
      lost = program.readTotals().totalLost();
    } catch (const std::exception& e) {
      logger("bpf")->error("{}", e.what());
      return;
    }
    if (lost > lost_reported) {
      logger("bpf")->warn(
          "{} events lost in the ring buffer in the last {} s ({} in all); totals stay exact, "
          "per-connection counts miss them: consider a larger --ring-buffer-size",
          lost - lost_reported, kExpiryInterval.count(), lost);
      lost_reported = lost;
    }
  }

  void start() {
    reader->start();
    link_watcher->start();
    if (payload_reader) payload_reader->start();
    scheduleExpiry();
    if (flow_tables) scheduleFlowCollection();
  }

  void stop() {
    if (stopping.exchange(true)) return;
    reader->stop();
    if (payload_reader) payload_reader->stop();
    link_watcher->stop();  // no re-attach on the way out
    interfaces.detachAll();
    expiry_timer.cancel();
    if (flow_tables) {
      flow_timer.cancel();
      try {
        flow_tables->collectAll(ingest);  // waits for program runs still in flight
      } catch (const std::exception& e) {
        logger("bpf")->error("{}", e.what());
      }
    }
    const std::size_t last = reader->drain();
    if (payload_reader) payload_reader->drain();
    bpf::KernelTotals t;
    try {
      t = program.readTotals();
    } catch (const std::exception& e) {
      logger("bpf")->error("{}", e.what());
    }
    logger("capture")->info(
        "stopped: {} packets, {} bytes, {} events read ({} in the final drain), {} lost in the "
        "ring buffer, {} malformed{}",
        t.totalPackets(), t.totalBytes(), ingest.read(), last, t.totalLost(), ingest.malformed(),
        flow_tables ? fmt::format("; {} packets collected from the kernel flow tables",
                                  ingest.flowPackets())
                    : std::string());
  }

  CaptureStats stats() const {
    CaptureStats s;
    const bpf::KernelTotals t = program.readTotals();
    s.packets = t.totalPackets();
    s.bytes = t.totalBytes();
    s.events_lost[AYAFLOW_DIR_INGRESS] = t.events_lost[AYAFLOW_DIR_INGRESS];
    s.events_lost[AYAFLOW_DIR_EGRESS] = t.events_lost[AYAFLOW_DIR_EGRESS];
    for (const bpf::KernelCounter& c : t.counters) {
      // Interfaces gone (pods deleted) share one series per direction, protocol and family.
      s.counters.push_back({c.ifindex == bpf::kRetiredIfindex ? std::string("removed")
                                                              : common::interfaceLabel(c.ifindex),
                            c.direction, c.protocol, c.addr_type, c.packets, c.bytes, c.events_lost,
                            c.super_packets, c.elsewhere_packets, c.elsewhere_bytes});
    }
    if (options.deep_inspect) s.payload_events_lost = program.readPayloadTotals().lost;
    if (options.flow_tables) s.flow_table_overflow = program.readFlowTableOverflow();
    s.events_read = ingest.read();
    s.events_malformed = ingest.malformed();
    s.flow_table_packets = ingest.flowPackets();
    s.active_connections = connections.size();
    s.connections_expired = expired.load(std::memory_order_relaxed);
    s.connections_evicted = connections.evicted();
    s.max_connections = connections.maxEntries();
    s.interfaces_attached = interfaces.attached();
    s.interfaces_configured = interfaces.configured();
    s.ring_buffer_size = program.ringBufferSize();
    return s;
  }

  asio::io_context& io;
  const CaptureOptions options;
  std::atomic<bool> stopping{false};
  std::atomic<std::uint64_t> expired{0};
  std::uint64_t lost_reported = 0;  // ingest thread only
  struct PendingHealth {
    flow::Packet packet;
    std::chrono::steady_clock::time_point until;
  };
  std::vector<PendingHealth> pending_health;  // ingest thread only
  std::chrono::steady_clock::time_point last_health_retry;
  // Declaration order is teardown order reversed: readers go first, then the attachments,
  // then the program.
  bpf::BpfProgram program;
  TcAttacher attacher;
  InterfaceSet interfaces;
  flow::ConnectionMap connections;
  Ingest ingest;
  flow::PayloadSink* payload;
  std::optional<PayloadReader> payload_reader_sink;
  std::optional<bpf::FlowTables> flow_tables;  // aggregated mode only
  std::unique_ptr<bpf::LinkWatcher> link_watcher;
  std::function<void()> interfaces_changed;
  std::unique_ptr<bpf::RingBufferReader> reader;
  std::unique_ptr<bpf::RingBufferReader> payload_reader;
  asio::steady_timer expiry_timer;
  asio::steady_timer flow_timer;
};

Capture::Capture(asio::io_context& io, const CaptureOptions& options, flow::PacketSink& history,
                 flow::PayloadSink* payload)
    : impl_(std::make_unique<Impl>(io, options, history, payload)) {}

Capture::~Capture() = default;

void Capture::start() { impl_->start(); }

void Capture::onInterfacesChanged(std::function<void()> fn) {
  impl_->interfaces_changed = std::move(fn);
}

void Capture::stop() { impl_->stop(); }

void Capture::ingest(flow::Packet& packet) noexcept { impl_->ingestHealth(packet); }

Capture::Totals Capture::totals() const {
  const bpf::KernelTotals t = impl_->program.readTotals();
  return Totals{t.totalPackets(), t.totalBytes()};
}

const flow::ConnectionMap& Capture::connections() const { return impl_->connections; }

CaptureStats Capture::stats() const { return impl_->stats(); }

std::shared_ptr<const prometheus::Collectable> Capture::metrics() const {
  return std::make_shared<const common::CallbackCollectable>([impl = impl_.get()] {
    auto families = captureFamilies(impl->stats());
    if (impl->options.tcp_state) {
      for (auto& f : tcpFamilies(impl->ingest.tcp().values())) families.push_back(std::move(f));
    }
    return families;
  });
}

}  // namespace ayaflow::capture
