// SPDX-License-Identifier: MIT OR Apache-2.0
// The ClickHouse sink against a real clickhouse-server (Debian's 18.16) on loopback, one
// per test binary: exact sums, names in their columns, an outage (every record once), the
// spool's bound (drops counted), a lost answer (not stored twice), a server that never
// answers (only counted drops, consume() never waits), retention by daily partitions.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "ayaflow/export/clickhouse_sink.h"
#include "clickhouse_server.h"
#include "http_client.h"
#include "root_guard.h"

namespace ayaflow::exporter {
namespace {

using namespace std::chrono_literals;
using test::ClickHouseServer;
using Clock = std::chrono::steady_clock;

ClickHouseServer* g_server = nullptr;

class ClickHouseEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    if (ClickHouseServer::binary().empty()) return;
    server_ = std::make_unique<ClickHouseServer>();
    g_server = server_.get();
  }
  void TearDown() override {
    g_server = nullptr;
    server_.reset();
  }

 private:
  std::unique_ptr<ClickHouseServer> server_;
};

const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new ClickHouseEnv);

std::int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// `n` final records, source ports from `first_port` (each record its own key), packets
/// 1..7 and bytes 60..(60+13*k).
pipeline::BatchPtr records(std::uint16_t first_port, int n, std::int64_t at_ms) {
  auto batch = std::make_shared<pipeline::RecordBatch>();
  for (int i = 0; i < n; ++i) {
    pipeline::FlowRecord r;
    r.src = flow::IpAddress::fromV4(0x0a000001);
    r.dst = flow::IpAddress::fromV4(0x0a000002);
    r.src_port = static_cast<std::uint16_t>(first_port + i);
    r.dst_port = 5432;
    r.protocol = 17;
    r.packets = 1 + static_cast<std::uint64_t>(i % 7);
    r.bytes = 60 + 13 * static_cast<std::uint64_t>(i % 11);
    r.first_ms = at_ms + i;
    r.last_ms = at_ms + i + 5;
    r.ifindex = 1;
    r.direction = i % 2 == 0 ? flow::Direction::kEgress : flow::Direction::kIngress;
    batch->push_back(r);
  }
  return batch;
}

struct Sums {
  std::uint64_t rows = 0, packets = 0, bytes = 0;
  void add(const pipeline::RecordBatch& b) {
    for (const auto& r : b) {
      ++rows;
      packets += r.packets;
      bytes += r.bytes;
    }
  }
};

class ClickHouseSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_server == nullptr) {
      if (test::inCi()) FAIL() << "clickhouse-server is not installed (CI forbids skipping)";
      GTEST_SKIP() << "clickhouse-server is not installed";
    }
    if (!g_server->running()) g_server->start();
    table_ = std::string("t_") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    g_server->query("DROP TABLE IF EXISTS default." + table_);
  }

  ClickHouseOptions options() const {
    ClickHouseOptions o;
    o.url = g_server->url();
    o.table = table_;
    o.create_table = true;
    o.node = "node-a";
    o.flush_interval = 20ms;
    o.backoff_min = 20ms;
    o.backoff_max = 200ms;
    o.timeout = 5s;
    o.stop_timeout = 300ms;  // a sink stopped with records it cannot send
    return o;
  }

  std::uint64_t count(const std::string& what = "count()") const {
    return g_server->number("SELECT " + what + " FROM default." + table_);
  }

  /// Polls until `pred` holds (or 60 s); returns whether it did.
  template <typename Pred>
  static bool waitFor(Pred pred) {
    const auto deadline = Clock::now() + 60s;
    while (Clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return pred();
  }

  std::string table_;
};

TEST_F(ClickHouseSinkTest, RowsSumExactlyAndCarryNames) {
  ClickHouseSink sink(options());
  Sums sent;
  const std::int64_t t0 = nowMs();
  for (int b = 0; b < 5; ++b) {
    auto batch = records(static_cast<std::uint16_t>(1000 + b * 1000), 1000, t0 + b * 1000);
    sent.add(*batch);
    ASSERT_TRUE(sink.consume(batch, std::nullopt));
  }
  // One record with names on both ends.
  auto named = std::make_shared<pipeline::RecordBatch>(*records(60000, 1, t0));
  auto names = std::make_shared<enrich::ConnectionNames>();
  names->domain = "db.example.com";
  auto pod = std::make_shared<enrich::PodName>();
  *pod = enrich::PodName{"shop", "web-7d9f", "web", "Deployment"};
  names->local.pod = pod;
  names->remote.node = std::make_shared<const std::string>("node-b");
  (*named)[0].names = names;
  (*named)[0].direction = flow::Direction::kEgress;  // local = source
  sent.add(*named);
  ASSERT_TRUE(sink.consume(named, std::nullopt));
  // A checkpoint (provisional) is taken and ignored.
  auto checkpoint = std::make_shared<pipeline::RecordBatch>(*records(61000, 10, t0));
  for (auto& r : *checkpoint) r.state = pipeline::RecordState::kProvisional;
  ASSERT_TRUE(sink.consume(checkpoint, std::nullopt));
  sink.flush();
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == sent.rows; }));
  EXPECT_EQ(count(), sent.rows);
  EXPECT_EQ(count("sum(packets)"), sent.packets);
  EXPECT_EQ(count("sum(bytes)"), sent.bytes);
  EXPECT_EQ(g_server->query("SELECT src_namespace, src_pod, src_workload, src_workload_kind, "
                            "dst_node, domain, node, direction, src, dst FROM default." +
                            table_ + " WHERE src_port = 60000"),
            "shop\tweb-7d9f\tweb\tDeployment\tnode-b\tdb.example.com\tnode-a\tegress\t10.0.0.1\t"
            "10.0.0.2\n");
  const ExportStats s = sink.stats();
  EXPECT_EQ(s.errors, 0u);
  EXPECT_EQ(s.dropped_queue_full + s.dropped_spool_full + s.dropped_stopped, 0u);
  EXPECT_GT(s.bytes, 0u);
}

TEST_F(ClickHouseSinkTest, OutageEveryRecordOnce) {
  ClickHouseSink sink(options());
  Sums sent;
  const std::int64_t t0 = nowMs();
  auto first = records(1000, 500, t0);
  sent.add(*first);
  ASSERT_TRUE(sink.consume(first, std::nullopt));
  sink.flush();
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == 500; }));
  g_server->stop();
  for (int b = 1; b <= 6; ++b) {
    auto batch = records(static_cast<std::uint16_t>(1000 + b * 500), 500, t0 + b * 1000);
    sent.add(*batch);
    ASSERT_TRUE(sink.consume(batch, std::nullopt));
  }
  ASSERT_TRUE(waitFor([&] {
    const ExportStats s = sink.stats();
    return s.errors >= 2 && s.spool_depth == 3000;
  })) << sink.stats().spool_depth;
  g_server->start();
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == sent.rows; }));
  EXPECT_EQ(count(), sent.rows);
  EXPECT_EQ(count("uniqExact(src_port)"), sent.rows);  // none twice
  EXPECT_EQ(count("sum(packets)"), sent.packets);
  EXPECT_EQ(count("sum(bytes)"), sent.bytes);
  const ExportStats s = sink.stats();
  EXPECT_EQ(s.spooled, 3000u);
  EXPECT_EQ(s.spool_depth, 0u);
  EXPECT_EQ(s.dropped_queue_full + s.dropped_spool_full, 0u);
}

TEST_F(ClickHouseSinkTest, PastTheSpoolBoundDropsAreCounted) {
  ClickHouseOptions o = options();
  o.spool_records = 1000;
  o.batch_rows = 1000;
  ClickHouseSink sink(o);
  // The table exists before the outage.
  auto first = records(1000, 10, nowMs());
  ASSERT_TRUE(sink.consume(first, std::nullopt));
  sink.flush();
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == 10; }));
  g_server->stop();
  const std::int64_t t0 = nowMs();
  for (int b = 0; b < 4; ++b) {
    ASSERT_TRUE(
        sink.consume(records(static_cast<std::uint16_t>(2000 + b * 1000), 1000, t0), std::nullopt));
    sink.flush();
  }
  ASSERT_TRUE(waitFor([&] { return sink.stats().dropped_spool_full == 3000; }))
      << sink.stats().dropped_spool_full;
  g_server->start();
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == 1010; }));
  sink.flush();
  EXPECT_EQ(count(), 1010u);
  EXPECT_EQ(count("uniqExact(src_port)"), 1010u);
  const ExportStats s = sink.stats();
  EXPECT_EQ(s.dropped_spool_full, 3000u);
  EXPECT_EQ(s.records + s.dropped_spool_full, 4010u);
}

/// Forwards each HTTP request to the server, but for the first `lose` INSERTs closes the
/// client's connection instead of passing the answer on: the INSERT landed, the sink never
/// heard so.
class AnswerLosingProxy {
 public:
  AnswerLosingProxy(std::uint16_t upstream, int lose) : upstream_(upstream), lose_(lose) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] { loop(); });
  }
  ~AnswerLosingProxy() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  int lost() const { return lost_; }

 private:
  void loop() {
    while (!stop_) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      serve(c);
      ::close(c);
    }
  }
  // One connection, requests one after another (the sink keeps its connection alive).
  void serve(int c) {
    std::string in;
    char buf[65536];
    for (;;) {
      std::size_t head_end;
      while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.append(buf, static_cast<std::size_t>(n));
      }
      const std::string head = in.substr(0, head_end);
      std::size_t length = 0;
      for (const char* name : {"Content-Length: ", "content-length: "}) {
        const std::size_t at = head.find(name);
        if (at != std::string::npos) length = std::stoul(head.substr(at + std::strlen(name)));
      }
      while (in.size() < head_end + 4 + length) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) return;
        in.append(buf, static_cast<std::size_t>(n));
      }
      const std::string target = head.substr(5, head.find(' ', 5) - 5);
      const std::string body = in.substr(head_end + 4, length);
      in.erase(0, head_end + 4 + length);
      const test::HttpResult r = test::httpRequest(
          "127.0.0.1", upstream_, "POST", target,
          body.empty() ? test::HeaderList{{"Content-Length", "0"}} : test::HeaderList{}, body,
          std::chrono::seconds(30));
      if (target.find("INSERT") != std::string::npos && lost_ < lose_) {
        ++lost_;
        return;  // the INSERT is stored; its answer never reaches the sink
      }
      const std::string answer = "HTTP/1.1 " + std::to_string(r.status) +
                                 " X\r\nContent-Length: " + std::to_string(r.body.size()) +
                                 "\r\nConnection: keep-alive\r\n\r\n" + r.body;
      if (::send(c, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) return;
    }
  }

  std::uint16_t upstream_;
  int lose_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> lost_{0};
  std::thread thread_;
};

TEST_F(ClickHouseSinkTest, LostAnswerIsNotStoredTwice) {
  AnswerLosingProxy proxy(g_server->httpPort(), 2);
  ClickHouseOptions o = options();
  o.url = "http://127.0.0.1:" + std::to_string(proxy.port());
  ClickHouseSink sink(o);
  Sums sent;
  const std::int64_t t0 = nowMs();
  for (int b = 0; b < 4; ++b) {
    auto batch = records(static_cast<std::uint16_t>(1000 + b * 100), 100, t0 + b * 1000);
    sent.add(*batch);
    ASSERT_TRUE(sink.consume(batch, std::nullopt));
    sink.flush();
  }
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == sent.rows; }));
  EXPECT_EQ(proxy.lost(), 2);
  EXPECT_EQ(count(), sent.rows);
  EXPECT_EQ(count("uniqExact(src_port)"), sent.rows);
  EXPECT_EQ(count("sum(packets)"), sent.packets);
  const ExportStats s = sink.stats();
  EXPECT_EQ(s.errors, 2u);
  EXPECT_EQ(s.retried, 0u);  // found by batch id, never sent again
}

TEST_F(ClickHouseSinkTest, HangingServerCostsOnlyCountedDrops) {
  // A listening socket nobody accepts from: connects succeed (the backlog), requests are
  // taken by the kernel, no answer ever comes.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  ClickHouseOptions o = options();
  o.url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  o.create_table = false;
  o.timeout = 300ms;
  o.queue_records = 1000;
  o.spool_records = 2000;
  o.stop_timeout = 200ms;
  std::uint64_t pushed = 0, refused = 0;
  {
    ClickHouseSink sink(o);
    const std::int64_t t0 = nowMs();
    for (int b = 0; b < 100; ++b) {
      auto batch = records(static_cast<std::uint16_t>(b * 100), 100, t0);
      pushed += batch->size();
      if (!sink.consume(batch, std::nullopt)) refused += batch->size();
      std::this_thread::sleep_for(2ms);  // spread over a few timeouts
    }
    ASSERT_TRUE(waitFor([&] { return sink.stats().errors >= 1; }));
    sink.stop();
    const ExportStats s = sink.stats();
    EXPECT_EQ(s.records, 0u);
    EXPECT_EQ(s.dropped_queue_full, refused);
    EXPECT_GT(s.dropped_queue_full, 0u);
    // Every record is accounted for: dropped for a reason, none silently.
    EXPECT_EQ(s.dropped_queue_full + s.dropped_spool_full + s.dropped_stopped, pushed);
  }
  ::close(fd);
}

TEST_F(ClickHouseSinkTest, RetentionDropsOldDailyPartitions) {
  const std::int64_t now = nowMs();
  {
    ClickHouseSink sink(options());
    ASSERT_TRUE(sink.consume(records(1000, 30, now - 10 * 86400000LL), std::nullopt));
    ASSERT_TRUE(sink.consume(records(2000, 20, now), std::nullopt));
    sink.flush();
    ASSERT_TRUE(waitFor([&] { return sink.stats().records == 50; }));
  }
  EXPECT_EQ(count(), 50u);
  EXPECT_EQ(g_server->number("SELECT uniqExact(partition) FROM system.parts WHERE table = '" +
                             table_ + "' AND active"),
            2u);
  ClickHouseOptions o = options();
  o.retention_days = 3;
  ClickHouseSink sink(o);
  ASSERT_TRUE(waitFor([&] { return count() == 20; })) << count();
  EXPECT_EQ(count("min(src_port)"), 2000u);
}

TEST_F(ClickHouseSinkTest, PasswordAuthenticates) {
  ClickHouseOptions o = options();
  o.user = "ayaflow";
  o.password = "wrong";
  {
    ClickHouseSink sink(o);
    ASSERT_TRUE(sink.consume(records(1000, 10, nowMs()), std::nullopt));
    sink.flush();
    ASSERT_TRUE(waitFor([&] { return sink.stats().errors >= 1; }));
    EXPECT_EQ(sink.stats().records, 0u);
    EXPECT_EQ(sink.stats().spool_depth, 10u);  // kept for a retry, not dropped
  }
  o.password = "s3cret";
  ClickHouseSink sink(o);
  ASSERT_TRUE(sink.consume(records(1000, 10, nowMs()), std::nullopt));
  sink.flush();
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == 10; }));
  EXPECT_EQ(count(), 10u);
}

TEST_F(ClickHouseSinkTest, HttpsWithTheServersCa) {
  ClickHouseServer tls_server(/*tls=*/true);
  ClickHouseOptions o = options();
  o.url = tls_server.httpsUrl();
  {
    // The system's CAs do not know the test CA: the handshake fails, nothing is sent.
    ClickHouseSink sink(o);
    ASSERT_TRUE(sink.consume(records(1000, 10, nowMs()), std::nullopt));
    sink.flush();
    ASSERT_TRUE(waitFor([&] { return sink.stats().errors >= 1; }));
    EXPECT_EQ(sink.stats().records, 0u);
  }
  o.ca_file = tls_server.caFile();
  ClickHouseSink sink(o);
  Sums sent;
  auto batch = records(1000, 100, nowMs());
  sent.add(*batch);
  ASSERT_TRUE(sink.consume(batch, std::nullopt));
  sink.flush();
  ASSERT_TRUE(waitFor([&] { return sink.stats().records == sent.rows; }));
  EXPECT_EQ(tls_server.number("SELECT sum(packets) FROM default." + table_), sent.packets);
}

}  // namespace
}  // namespace ayaflow::exporter
