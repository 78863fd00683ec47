// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/app/app.h"

#include <malloc.h>
#include <net/if.h>
#include <time.h>

#include <algorithm>
#include <atomic>
// Boost 1.74 Asio uses std::exchange without including <utility> (C++20).
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <csignal>

#include "ayaflow/abi/event.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/dashboard_route.h"
#include "ayaflow/api/history_route.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/live_source.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/router.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/bpf/bpf_program.h"
#include "ayaflow/bpf/flow_tables.h"
#include "ayaflow/bpf/link_layer.h"
#include "ayaflow/bpf/link_watcher.h"
#include "ayaflow/bpf/ring_buffer_reader.h"
#include "ayaflow/bpf/tc_attachment.h"
#include "ayaflow/common/logging.h"
#include "ayaflow/common/memory.h"
#include "ayaflow/flow/connection_map.h"
#include "ayaflow/flow/flow_key.h"
#include "ayaflow/flow/packet.h"
#include "ayaflow/inspect/domain_map.h"
#include "ayaflow/inspect/payload_inspector.h"
#include "ayaflow/inspect/reverse_resolver.h"
#include "ayaflow/store/store.h"

namespace asio = boost::asio;

namespace ayaflow::app {
namespace {

constexpr auto kExpiryInterval = std::chrono::seconds(10);
constexpr auto kStreamInterval = std::chrono::seconds(1);
// Records the capture thread may queue for SQLite (80 bytes each). At the
// writer's ~400k rows/s this absorbs ~40 ms of backlog; beyond it rows are
// dropped and counted, never waited for.
constexpr std::size_t kStoreQueueCapacity = 16384;
// Aggregated mode: the flow tables are collected this long after each whole second.
constexpr auto kFlowCollectDelay = std::chrono::milliseconds(5);

std::uint64_t monotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

bpf::HookMode hookMode(AttachMode mode) {
  switch (mode) {
    case AttachMode::kTcx:
      return bpf::HookMode::kTcx;
    case AttachMode::kTc:
      return bpf::HookMode::kTc;
    case AttachMode::kAuto:
      break;
  }
  return bpf::HookMode::kAuto;
}

/// Ring-buffer records and kernel flow-table entries → connection map and storage. Runs on
/// the ingest thread only; no allocation except when a map shard grows, no formatting.
class IngestSink final : public bpf::EventSink, public bpf::FlowSink {
 public:
  IngestSink(flow::ConnectionMap& map, store::Store& store) : map_(map), store_(store) {}

  void onEvent(const void* data, std::size_t size) noexcept override {
    flow::Packet packet;
    if (flow::decodePacketEvent(data, size, packet) != flow::DecodeStatus::kOk) {
      invalid_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    map_.record(packet);
    store_.submit(packet);  // bounded hand-off: never waits on SQLite
    received_.fetch_add(1, std::memory_order_relaxed);
  }

  void onFlow(const ayaflow_flow_key& key, const ayaflow_flow_value& value) noexcept override {
    flow::Packet packet;
    if (flow::decodeFlowEntry(key, value, packet) != flow::DecodeStatus::kOk) {
      invalid_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    map_.record(packet);
    store_.submit(packet);
    flow_packets_.fetch_add(value.packets, std::memory_order_relaxed);
  }

  std::uint64_t received() const { return received_.load(std::memory_order_relaxed); }
  std::uint64_t flowPackets() const { return flow_packets_.load(std::memory_order_relaxed); }
  std::uint64_t invalid() const { return invalid_.load(std::memory_order_relaxed); }

 private:
  flow::ConnectionMap& map_;
  store::Store& store_;
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> invalid_{0};
  std::atomic<std::uint64_t> flow_packets_{0};
};

/// Payload records (deep inspection) → DNS/TLS parsers → domain map. Ingest
/// thread only.
class PayloadSink final : public bpf::EventSink {
 public:
  explicit PayloadSink(inspect::PayloadInspector& inspector) : inspector_(inspector) {}
  void onEvent(const void* data, std::size_t size) noexcept override {
    inspector_.onRecord(data, size, monotonicNowNs());
  }

 private:
  inspect::PayloadInspector& inspector_;
};

/// Names for addresses: deep inspection's domain map and reverse DNS, each
/// optional. Thread-safe (HTTP threads and the store's writer call it).
class Enricher {
 public:
  Enricher(const inspect::DomainMap* domains, inspect::ReverseResolver* resolver)
      : domains_(domains), resolver_(resolver) {}

  bool active() const { return domains_ != nullptr || resolver_ != nullptr; }

  std::optional<std::string> domain(const flow::IpAddress& remote, std::uint16_t port) const {
    return domains_ != nullptr ? domains_->lookup(remote, port) : std::nullopt;
  }
  std::optional<std::string> hostname(const flow::IpAddress& address) const {
    return resolver_ != nullptr ? resolver_->lookup(address) : std::nullopt;
  }

  /// Stored rows (writer thread): the remote end is the destination of
  /// egress rows and the source of ingress rows.
  void enrich(flow::FlowRecord& row) const {
    const auto src = flow::IpAddress::parse(row.src_ip);
    const auto dst = flow::IpAddress::parse(row.dst_ip);
    if (!src || !dst) {
      return;
    }
    const bool egress = row.direction == "egress";
    row.domain = egress ? domain(*dst, row.dst_port) : domain(*src, row.src_port);
    row.src_hostname = hostname(*src);
    row.dst_hostname = hostname(*dst);
  }

 private:
  const inspect::DomainMap* domains_;
  inspect::ReverseResolver* resolver_;
};

/// What the HTTP routes read: exact kernel totals plus the connection map.
class AgentLiveSource final : public api::LiveSource {
 public:
  AgentLiveSource(const bpf::BpfProgram& program, const flow::ConnectionMap& map,
                  const Enricher& enricher)
      : program_(program),
        map_(map),
        enricher_(enricher),
        started_(std::chrono::steady_clock::now()) {}

  Totals totals() const override {
    const bpf::KernelTotals t = program_.readTotals();
    return Totals{t.totalPackets(), t.totalBytes()};
  }
  std::uint64_t activeConnections() const override { return map_.size(); }
  double uptimeSeconds() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  }
  std::vector<api::LiveConnection> topConnections(std::size_t n) const override {
    std::vector<api::LiveConnection> out;
    for (const flow::ConnectionEntry& e : map_.top(n)) {
      api::LiveConnection c = api::toLiveConnection(e);
      if (enricher_.active()) {
        c.domain = enricher_.domain(e.key.remote, e.key.remote_port);
        c.local_hostname = enricher_.hostname(e.key.local);
        c.remote_hostname = enricher_.hostname(e.key.remote);
      }
      out.push_back(std::move(c));
    }
    return out;
  }

 private:
  const bpf::BpfProgram& program_;
  const flow::ConnectionMap& map_;
  const Enricher& enricher_;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace

struct App::Impl {
  explicit Impl(Config c) : config(std::move(c)) {}

  void scheduleExpiry() {
    expiry_timer.expires_after(kExpiryInterval);
    expiry_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) {
        return;
      }
      const std::uint64_t timeout_ns =
          static_cast<std::uint64_t>(config.connection_timeout_s) * 1000000000ULL;
      const std::size_t removed = connections.expire(monotonicNowNs(), timeout_ns);
      connections_expired.fetch_add(removed, std::memory_order_relaxed);
      if (inspector) {
        inspector->expire(monotonicNowNs());
        domains->expire();
      }
      if (removed > 0) {
        logger("flow")->debug("expired {} idle connections", removed);
      }
      warnAboutLoss();
      // glibc keeps freed heap (HTTP bursts, query results) mapped; hand it
      // back so RSS follows the live state rather than its peak.
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
      if (ec) {
        return;
      }
      collectFlows();
      scheduleFlowCollection();
    });
  }

  void collectFlows() noexcept {
    try {
      flow_tables->swapAndCollect(*sink);
    } catch (const std::exception& e) {
      // The table keeps what it held; the next collection reads it.
      logger("bpf")->error("{}", e.what());
    }
  }

  // One WebSocket frame per second to every /api/stream client.
  void scheduleStream() {
    stream_timer.expires_after(kStreamInterval);
    stream_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) {
        return;
      }
      try {
        hub.publish(api::streamFrame(*live));
      } catch (const std::exception& e) {
        logger("api")->error("stream frame: {}", e.what());
      }
      scheduleStream();
    });
  }

  // What /metrics shows, read at scrape time (HTTP thread): the same kernel
  // read as /api/stats, so the totals agree exactly.
  api::MetricsSnapshot metricsSnapshot() const {
    api::MetricsSnapshot m;
    const bpf::KernelTotals t = program->readTotals();
    m.packets_total = t.totalPackets();
    m.bytes_total = t.totalBytes();
    m.events_lost_ingress = t.events_lost[AYAFLOW_DIR_INGRESS];
    m.events_lost_egress = t.events_lost[AYAFLOW_DIR_EGRESS];
    for (const bpf::KernelCounter& c : t.counters) {
      m.kernel_counters.push_back({api::interfaceLabel(c.ifindex), api::directionLabel(c.direction),
                                   api::protocolLabel(c.protocol), api::familyLabel(c.addr_type),
                                   c.packets, c.bytes, c.events_lost});
    }
    m.active_connections = connections.size();
    m.connections_expired = connections_expired.load(std::memory_order_relaxed);
    if (inspector) {
      m.domains_resolved = domains->domainsResolved();
      m.deep_inspect_packets = inspector->counters().records;
      m.deep_inspect_events_lost = program->readPayloadTotals().lost;
    }
    m.events_read = sink->received();
    m.events_malformed = sink->invalid();
    m.flow_table_packets = sink->flowPackets();
    if (flow_tables) {
      m.flow_table_overflow = program->readFlowTableOverflow();
    }
    const store::StoreStats st = store->stats();
    m.rows_stored = st.rows_stored;
    m.rows_dropped.queue_full = st.rows_dropped_queue_full + st.rows_dropped_stopped;
    m.rows_dropped.write_error = st.rows_dropped_write_error;
    m.storage_queue_rows = st.queue_depth;
    m.interfaces_attached = interfaces_attached.load(std::memory_order_relaxed);
    m.interfaces_configured = interfaces.size();
    m.ring_buffer_size_bytes = program->ringBufferSize();
    if (http) {
      m.http = http->stats();
    }
    m.stream = hub.stats();
    return m;
  }

  // At most one warning per expiry interval, only when events were lost.
  void warnAboutLoss() noexcept {
    std::uint64_t lost = 0;
    try {
      lost = program->readTotals().totalLost();
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

  /// One --interface and, while an interface of that name exists, our programs on it.
  struct Interface {
    std::string name;
    std::optional<bpf::TcAttachment> attachment;
    int failed_ifindex = 0;  // a re-attach to this ifindex failed (logged once)
  };

  /// Attaches the programs matching the interface's link layer. Throws SystemError.
  void attach(Interface& i) {
    const bpf::LinkLayer layer = bpf::linkLayerOf(i.name);
    if (layer == bpf::LinkLayer::kIpOnly) {
      logger("bpf")->info(
          "{} has no link-layer header (tun, WireGuard, ipip, PPP): its packets are parsed "
          "from the IP header",
          i.name);
    }
    i.attachment.emplace(i.name, program->ingressProgramFd(layer), program->egressProgramFd(layer),
                         hookMode(config.attach_mode));
  }

  void countAttached() {
    std::size_t n = 0;
    for (const Interface& i : interfaces) n += i.attachment ? 1 : 0;
    interfaces_attached.store(n, std::memory_order_relaxed);
  }

  /// Ingest thread, after link notifications: follows each --interface by name. An
  /// interface that was deleted (or renamed) loses its attachment; one created again under
  /// the name gets the programs again. Packets in between did not cross it.
  void followInterfaces() {
    if (stopping) return;
    for (Interface& i : interfaces) {
      const int ifindex = static_cast<int>(if_nametoindex(i.name.c_str()));
      if (i.attachment && i.attachment->ifindex() == ifindex) continue;
      if (i.attachment) {
        logger("bpf")->warn("{} (ifindex {}) is gone: not capturing on it until it is back", i.name,
                            i.attachment->ifindex());
        i.attachment.reset();  // detaches what is left
      }
      if (ifindex == 0 || ifindex == i.failed_ifindex) continue;
      try {
        attach(i);
        i.failed_ifindex = 0;
      } catch (const std::exception& e) {
        i.failed_ifindex = ifindex;
        logger("bpf")->error("{} is back but could not be attached: {}", i.name, e.what());
      }
    }
    countAttached();
  }

  // Ingest thread: stop serving, detach (no new events), drain what the
  // ring buffer still holds, then let run() return.
  void shutdown() {
    if (stopping.exchange(true)) {
      return;
    }
    logger("app")->info("shutting down");
    if (http) {
      http->stop();
    }
    reader->stop();
    if (payload_reader) {
      payload_reader->stop();
    }
    if (link_watcher) {
      link_watcher->stop();  // no re-attach on the way out
    }
    for (Interface& i : interfaces) {
      if (i.attachment) i.attachment->detach();
    }
    if (flow_tables) {
      flow_timer.cancel();
      try {
        flow_tables->collectAll(*sink);  // waits for program runs still in flight
      } catch (const std::exception& e) {
        logger("bpf")->error("{}", e.what());
      }
    }
    const std::size_t last = reader->drain();
    if (payload_reader) {
      payload_reader->drain();
    }
    store->stop();  // writes every row handed over, the final drain's included
    // A reverse lookup blocked in the system resolver (an unanswering DNS server: 5 s x 2
    // attempts by default, or more) must not hold up the exit; nothing waits for its answer.
    if (resolver && !resolver->stopWithin(std::chrono::milliseconds(500))) {
      logger("app")->warn(
          "reverse DNS: a lookup is still waiting for the system resolver; exiting without it");
      static_cast<void>(resolver.release());  // its workers end with the process
    }
    expiry_timer.cancel();
    stream_timer.cancel();
    signals.cancel();
    bpf::KernelTotals t;
    try {
      t = program->readTotals();
    } catch (const std::exception& e) {
      logger("bpf")->error("{}", e.what());
    }
    logger("app")->info(
        "stopped: {} packets, {} bytes, {} events read ({} in the final drain), {} lost in the "
        "ring buffer, {} malformed{}",
        t.totalPackets(), t.totalBytes(), sink->received(), last, t.totalLost(), sink->invalid(),
        flow_tables
            ? fmt::format("; {} packets collected from the kernel flow tables", sink->flowPackets())
            : std::string());
    const store::StoreStats st = store->stats();
    logger("store")->info(
        "stored {} rows ({} packets); dropped {} (queue full), {} (write errors), {} (after stop)",
        st.rows_stored, st.packets_stored, st.rows_dropped_queue_full,
        st.packets_dropped_write_error, st.rows_dropped_stopped);
  }

  Config config;
  asio::io_context io{1};
  asio::signal_set signals{io, SIGINT, SIGTERM};
  asio::steady_timer expiry_timer{io};
  asio::steady_timer stream_timer{io};
  asio::steady_timer flow_timer{io};
  std::atomic<std::uint64_t> connections_expired{0};
  std::atomic<bool> stopping{false};
  std::uint64_t lost_reported = 0;  // ingest thread only
  // Declaration order is teardown order reversed: the reader goes first,
  // then the attachments detach, then the program is destroyed.
  std::unique_ptr<bpf::BpfProgram> program;
  std::vector<Interface> interfaces;  // in --interface order; touched by the ingest thread
  std::atomic<std::size_t> interfaces_attached{0};
  std::unique_ptr<bpf::LinkWatcher> link_watcher;
  flow::ConnectionMap connections;
  // Deep inspection and reverse DNS (each optional); the store's writer
  // thread reads them through the enricher, so they outlive the store.
  std::unique_ptr<inspect::DomainMap> domains;
  std::unique_ptr<inspect::PayloadInspector> inspector;
  std::unique_ptr<inspect::ReverseResolver> resolver;
  std::unique_ptr<Enricher> enricher;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<IngestSink> sink;
  std::unique_ptr<bpf::RingBufferReader> reader;
  std::unique_ptr<bpf::FlowTables> flow_tables;  // aggregated mode only
  std::unique_ptr<PayloadSink> payload_sink;
  std::unique_ptr<bpf::RingBufferReader> payload_reader;
  std::unique_ptr<AgentLiveSource> live;
  api::StreamHub hub;  // outlives the server's WebSocket sessions
  api::Router router;
  std::unique_ptr<api::HttpServer> http;
};

App::App(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {
  Impl& s = *impl_;
  const Config& c = s.config;
  bpf::installLibbpfLogger(c.verbose);

  if (c.deep_inspect) {
    s.domains = std::make_unique<inspect::DomainMap>();
    s.inspector = std::make_unique<inspect::PayloadInspector>(*s.domains);
  }
  if (c.resolve_dns) {
    s.resolver = std::make_unique<inspect::ReverseResolver>();
  }
  s.enricher = std::make_unique<Enricher>(s.domains.get(), s.resolver.get());

  // Storage first: a bad database stops start-up before anything is attached.
  store::StoreOptions store_options;
  store_options.db_path = c.db_path;
  store_options.aggregation_window_s = c.aggregation_window_s;
  store_options.retention_s = c.data_retention_s;
  store_options.queue_capacity = kStoreQueueCapacity;
  if (c.aggregation_window_s > 0) {
    // A flow-table collection hands over up to a whole table at once, and the shutdown
    // collection both tables: the queue takes them without dropping (its pages are only
    // touched when used). The aggregator may hold two tables' worth of flows per window.
    store_options.queue_capacity += 2 * static_cast<std::size_t>(c.flow_table_size);
    store_options.max_open_flows =
        std::max<std::size_t>(store_options.max_open_flows, 2 * std::size_t{c.flow_table_size});
  }
  if (s.enricher->active()) {
    store_options.enrich = [enricher = s.enricher.get()](flow::FlowRecord& row) {
      enricher->enrich(row);
    };
  }
  s.store = std::make_unique<store::Store>(std::move(store_options));

  // Aggregated mode needs no event per packet: the kernel counts flows and the agent
  // collects them once a second. Raw mode stores every packet, so it needs the events.
  const bool flow_table = c.aggregation_window_s > 0;
  bpf::ProgramOptions program_options;
  program_options.ring_buffer_size = c.ring_buffer_size;
  program_options.enable_ipv6 = c.enable_ipv6;
  program_options.deep_inspect = c.deep_inspect;
  program_options.flow_table = flow_table;
  program_options.flow_table_entries = c.flow_table_size;
  s.program = std::make_unique<bpf::BpfProgram>(program_options);
  s.sink = std::make_unique<IngestSink>(s.connections, *s.store);
  if (flow_table) {
    s.flow_tables = std::make_unique<bpf::FlowTables>(
        s.program->flowTablesMapFd(), s.program->flowTableFd(0), s.program->flowTableFd(1));
  }
  s.reader = std::make_unique<bpf::RingBufferReader>(s.io, s.program->eventsMapFd(), *s.sink);
  if (s.inspector) {
    s.payload_sink = std::make_unique<PayloadSink>(*s.inspector);
    s.payload_reader = std::make_unique<bpf::RingBufferReader>(
        s.io, s.program->payloadEventsMapFd(), *s.payload_sink);
  }
  // Every interface's link layer first: an unsupported one stops start-up before any attach.
  for (const std::string& name : c.interfaces) bpf::linkLayerOf(name);
  // Notifications queue up from here on: a change during start-up is not missed.
  s.link_watcher = std::make_unique<bpf::LinkWatcher>(s.io, [&s] { s.followInterfaces(); });
  s.interfaces.reserve(c.interfaces.size());
  for (const std::string& name : c.interfaces) {
    s.interfaces.push_back(Impl::Interface{name, std::nullopt, 0});
    s.attach(s.interfaces.back());
  }
  s.countAttached();

  s.live = std::make_unique<AgentLiveSource>(*s.program, s.connections, *s.enricher);
  api::addCoreRoutes(s.router, *s.live);
  api::addHistoryRoute(
      s.router, [store = s.store.get()](const flow::HistoryQuery& q) { return store->query(q); });
  api::addStreamRoute(s.router, s.hub);
  api::addMetricsRoute(s.router, [&s] { return s.metricsSnapshot(); });
  api::addDashboardRoute(s.router);
  api::HttpServerOptions http_options;
  http_options.address = c.listen_address;
  http_options.port = c.port;
  if (!c.allowed_ips.empty()) {
    http_options.accept_filter = [cidrs = c.allowed_ips](const api::PeerAddress& peer) {
      for (const common::Cidr& cidr : cidrs) {
        if (cidr.contains(peer.bytes)) {
          return true;
        }
      }
      return false;
    };
  }
  s.http = std::make_unique<api::HttpServer>(http_options, s.router);
  s.http->start();
}

App::~App() {
  if (impl_->http) {
    impl_->http->stop();
  }
}

int App::run() {
  Impl& s = *impl_;
  s.signals.async_wait([&s](const boost::system::error_code& ec, int signo) {
    if (ec) {
      return;
    }
    logger("app")->info("received {}", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    s.shutdown();
  });
  s.reader->start();
  s.link_watcher->start();
  if (s.payload_reader) {
    s.payload_reader->start();
  }
  s.scheduleExpiry();
  s.scheduleStream();
  if (s.flow_tables) {
    s.scheduleFlowCollection();
  }
  // Start-up is over: the loader, BTF/ELF and configuration parsing are not needed again.
  const common::PageRelease released = common::releaseStartupPages();
  logger("app")->debug("released start-up pages of {} mappings: RSS {} -> {} KiB",
                       released.mappings, released.rss_before / 1024, released.rss_after / 1024);
  s.io.run();
  return 0;
}

void App::requestStop() {
  asio::post(impl_->io, [this] { impl_->shutdown(); });
}

std::uint16_t App::httpPort() const { return impl_->http ? impl_->http->port() : 0; }

}  // namespace ayaflow::app
