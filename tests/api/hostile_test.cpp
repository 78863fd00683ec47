// SPDX-License-Identifier: MIT OR Apache-2.0
// Hostile clients against the real server (api tier): 200 KB headers, slowloris, 1000 idle
// connections and a WebSocket client that never reads, all at once. The server must keep
// answering a well-behaved client, drop the stuck one, and keep memory bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/capture/capture.h"
#include "ayaflow/common/metrics.h"
#include "fake_live_source.h"
#include "http_client.h"
#include "ws_client.h"

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::HttpConnection;
using test::HttpResult;
using test_util::waitUntil;

constexpr const char* kHost = "127.0.0.1";

/// A TCP connection that connects and then says nothing (blocking connect, plain fd).
class IdleSocket {
 public:
  explicit IdleSocket(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~IdleSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  IdleSocket(const IdleSocket&) = delete;
  IdleSocket& operator=(const IdleSocket&) = delete;
  bool connected() const { return connected_; }
  /// True when the server has closed it (EOF or reset), without blocking.
  bool closedByServer() const {
    char byte;
    const ssize_t n = ::recv(fd_, &byte, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(test_util::raiseFdLimit(8192), 4096u) << "need ~2300 descriptors";
    source_.totals_value = {1234, 567890};
    source_.active = 100;
    source_.fillConnections(60);
    addCoreRoutes(router_, source_);
    registry_.add([this] {
      capture::CaptureStats s;
      s.packets = source_.totals_value.packets;
      return capture::captureFamilies(s);
    });
    registry_.add([this] { return httpServerFamilies(server_->stats()); });
    registry_.add(hub_.metrics());
    addMetricsRoute(router_, registry_);
    addStreamRoute(router_, hub_);
  }

  fake::FakeLiveSource source_;
  StreamHub hub_;
  common::MetricsRegistry registry_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HostileTest, ServerKeepsAnsweringAndMemoryStaysBounded) {
  HttpServerOptions opts;
  opts.address = kHost;
  opts.port = 0;
  opts.threads = 2;
  opts.read_timeout = 4s;  // idle and slowloris connections stay open while we measure
  opts.max_connections = 1100;
  server_ = std::make_unique<HttpServer>(opts, router_);
  server_->start();
  const std::uint16_t port = server_->port();

  // Warm up (allocator arenas, logger, first responses) before the baseline.
  for (int i = 0; i < 20; ++i) ASSERT_EQ(test::httpGet(kHost, port, "/api/live").status, 200);
  const std::uint64_t rss_before = test_util::residentBytes();

  // 1. 1000 connections that never send a byte.
  std::vector<std::unique_ptr<IdleSocket>> idle;
  for (int i = 0; i < 1000; ++i) {
    idle.push_back(std::make_unique<IdleSocket>(port));
    ASSERT_TRUE(idle.back()->connected()) << "idle connection " << i;
  }
  // 2. Slowloris: half a request, then a header line now and then, never the blank line.
  std::vector<std::unique_ptr<HttpConnection>> slow;
  for (int i = 0; i < 20; ++i) {
    slow.push_back(std::make_unique<HttpConnection>(kHost, port));
    ASSERT_TRUE(slow.back()->sendRaw("GET /api/health HTTP/1.1\r\nHost: x\r\n"));
  }
  // 3. A WebSocket client that never reads, with big frames flowing.
  test::ConnectOptions small;
  small.receive_buffer = 4096;
  test::WsClient stuck(kHost, port, "/api/stream", 5s, small);
  ASSERT_TRUE(stuck.isOpen());
  ASSERT_TRUE(waitUntil([&] { return hub_.stats().clients == 1; }, 5s));
  std::atomic<bool> stop_publishing{false};
  std::thread publisher([&] {
    while (!stop_publishing) {
      hub_.publish(std::string(32 * 1024, 'w'));
      std::this_thread::sleep_for(20ms);
    }
  });
  EXPECT_TRUE(waitUntil([&] { return server_->stats().active_connections >= 1021; }, 10s))
      << server_->stats().active_connections;

  // 4. While all that is going on: 200 KB headers (431) and a well-behaved client.
  for (int i = 0; i < 5; ++i) {
    const HttpResult r = test::httpRequest(kHost, port, "GET", "/api/health",
                                           {{"X-Big", std::string(200 * 1024, 'a')}});
    EXPECT_EQ(r.status, 431);
  }
  for (int i = 0; i < 10; ++i) {
    for (const char* slow_line : {"X-Slow: 1\r\n"}) {
      for (auto& s : slow) s->sendRaw(slow_line);
    }
    for (const char* target : {"/api/health", "/api/live", "/metrics"}) {
      const auto start = Clock::now();
      const HttpResult r = test::httpGet(kHost, port, target, 5s);
      EXPECT_EQ(r.status, 200) << target;
      EXPECT_LT(Clock::now() - start, 2s) << target;  // generous; normally well under 10 ms
    }
  }

  // The stuck WebSocket client was dropped, the idle ones still hold their slots.
  EXPECT_TRUE(waitUntil([&] { return hub_.stats().clients_dropped == 1; }, 10s));
  std::size_t idle_open = 0;
  for (const auto& s : idle) idle_open += !s->closedByServer();
  EXPECT_EQ(idle_open, idle.size());
  const std::uint64_t rss_during = test_util::residentBytes();
  // Server and test clients together: a few KiB per connection plus bounded queues. The
  // bound is generous on purpose; an unbounded queue or buffer would blow far past it.
  EXPECT_LT(rss_during, rss_before + (64u << 20))
      << "RSS grew from " << rss_before << " to " << rss_during;
  std::printf(
      "RSS %.1f MiB before, %.1f MiB with 1000 idle + 20 slowloris + a stuck "
      "WebSocket client\n",
      static_cast<double>(rss_before) / (1 << 20), static_cast<double>(rss_during) / (1 << 20));

  stop_publishing = true;
  publisher.join();

  // After read_timeout the silent and slow connections are gone, without any help.
  EXPECT_TRUE(waitUntil([&] { return server_->stats().active_connections == 0; }, 15s))
      << server_->stats().active_connections;
  idle_open = 0;
  for (const auto& s : idle) idle_open += !s->closedByServer();
  EXPECT_EQ(idle_open, 0u);
  for (auto& s : slow) EXPECT_TRUE(s->waitForClose(1s));
  EXPECT_EQ(test::httpGet(kHost, port, "/api/health").status, 200);
}

TEST_F(HostileTest, ConnectionFloodAboveTheCapIsShedAndCounted) {
  HttpServerOptions opts;
  opts.address = kHost;
  opts.port = 0;
  opts.max_connections = 100;
  server_ = std::make_unique<HttpServer>(opts, router_);
  server_->start();
  const std::uint16_t port = server_->port();
  std::vector<std::unique_ptr<IdleSocket>> flood;
  for (int i = 0; i < 300; ++i) flood.push_back(std::make_unique<IdleSocket>(port));
  EXPECT_TRUE(waitUntil([&] { return server_->stats().rejected_connections == 200; }, 10s))
      << server_->stats().rejected_connections;
  EXPECT_EQ(server_->stats().active_connections, 100u);
  flood.resize(50);  // free some slots
  EXPECT_TRUE(
      waitUntil([&] { return test::httpGet(kHost, port, "/api/health", 1s).status == 200; }, 10s));
}

TEST_F(HostileTest, ManySlowlorisConnectionsAreAllCutAtTheReadTimeout) {
  HttpServerOptions opts;
  opts.address = kHost;
  opts.port = 0;
  opts.read_timeout = 1s;
  server_ = std::make_unique<HttpServer>(opts, router_);
  server_->start();
  std::vector<std::unique_ptr<HttpConnection>> slow;
  for (int i = 0; i < 50; ++i) {
    slow.push_back(std::make_unique<HttpConnection>(kHost, server_->port()));
    ASSERT_TRUE(slow.back()->sendRaw("GET /api/health HTTP/1.1\r\n"));
  }
  // Each keeps trickling; each is still cut, because the deadline covers the whole request.
  const auto start = Clock::now();
  std::vector<bool> closed(slow.size(), false);
  while (Clock::now() - start < 10s &&
         std::find(closed.begin(), closed.end(), false) != closed.end()) {
    for (std::size_t i = 0; i < slow.size(); ++i) {
      if (!closed[i]) closed[i] = !slow[i]->sendRaw("X: 1\r\n") || slow[i]->waitForClose(5ms);
    }
  }
  EXPECT_EQ(std::count(closed.begin(), closed.end(), true), 50);
  EXPECT_EQ(test::httpGet(kHost, server_->port(), "/api/health").status, 200);
}

}  // namespace
}  // namespace ayaflow::api
