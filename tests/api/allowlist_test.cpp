// SPDX-License-Identifier: MIT OR Apache-2.0
// --allowed-ips on the real server (api tier, no root): loopback aliases (127.0.0.2 is on lo
// already) give a second IPv4 source; [::1] vs ::ffff:127.0.0.1 covers IPv6 and mapped peers.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/common/metrics.h"
#include "ayaflow/common/system_error.h"
#include "fake_live_source.h"
#include "http_client.h"
#include "ws_client.h"

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::ConnectOptions;
using test::HttpConnection;
using test::HttpResult;
using test::WsClient;
using test_util::waitUntil;

/// Every route the agent serves, as (method, target).
const std::vector<std::pair<std::string, std::string>> kRoutes = {
    {"GET", "/api/health"}, {"GET", "/api/stats"},   {"GET", "/api/live"},    {"GET", "/metrics"},
    {"GET", "/api/stream"}, {"HEAD", "/api/health"}, {"POST", "/api/health"}, {"GET", "/nope"}};

class AllowlistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_.totals_value = {10, 2000};
    source_.active = 1;
    addCoreRoutes(router_, source_);
    addMetricsRoute(router_, registry_);
    addStreamRoute(router_, hub_);
  }

  /// Starts a server on `address` allowing `cidrs` (the agent's --allowed-ips).
  void startServer(const std::string& address, const std::vector<std::string>& cidrs) {
    HttpServerOptions opts;
    opts.address = address;
    opts.port = 0;
    opts.allowed_ips = test_util::cidrs(cidrs);
    server_ = std::make_unique<HttpServer>(opts, router_);
    server_->start();
  }
  std::uint16_t port() const { return server_->port(); }

  HttpResult request(const std::string& host, const ConnectOptions& from, const std::string& method,
                     const std::string& target) {
    HttpConnection connection(host, port(), 5s, from);
    return connection.request(method, target, {{"Connection", "close"}});
  }

  /// Every route answers 403 JSON and the WebSocket cannot be opened.
  void expectDeniedEverywhere(const std::string& host, const std::string& source) {
    ConnectOptions from;
    from.source_address = source;
    const auto subscribed_before = hub_.stats().clients_total;
    for (const auto& [method, target] : kRoutes) {
      const HttpResult r = request(host, from, method, target);
      EXPECT_EQ(r.status, 403) << source << " " << method << " " << target;
      if (method != "HEAD") {
        EXPECT_EQ(json::parse(r.body), json({{"error", "forbidden"}})) << target;
      }
      EXPECT_EQ(r.header("connection"), "close");
    }
    WsClient ws(host, port(), "/api/stream", 5s, from);
    EXPECT_EQ(ws.handshake().status, 403) << source;
    EXPECT_FALSE(ws.isOpen());
    EXPECT_EQ(hub_.stats().clients_total, subscribed_before);
  }

  /// Every route answers as without an allowlist and the WebSocket opens and streams.
  void expectAllowedEverywhere(const std::string& host, const std::string& source) {
    ConnectOptions from;
    from.source_address = source;
    EXPECT_EQ(request(host, from, "GET", "/api/health").status, 200) << source;
    EXPECT_EQ(request(host, from, "GET", "/api/stats").status, 200) << source;
    EXPECT_EQ(request(host, from, "GET", "/api/live").status, 200) << source;
    EXPECT_EQ(request(host, from, "GET", "/metrics").status, 200) << source;
    EXPECT_EQ(request(host, from, "HEAD", "/api/health").status, 200) << source;
    EXPECT_EQ(request(host, from, "GET", "/api/stream").status, 426) << source;
    EXPECT_EQ(request(host, from, "POST", "/api/health").status, 405) << source;
    EXPECT_EQ(request(host, from, "GET", "/nope").status, 404) << source;
    const auto before = hub_.stats().clients_total;
    WsClient ws(host, port(), "/api/stream", 5s, from);
    ASSERT_TRUE(ws.isOpen()) << source << ": " << ws.handshake().status;
    ASSERT_TRUE(waitUntil([&] { return hub_.stats().clients_total == before + 1; }, 5s));
    hub_.publish("frame for " + source);
    // A new client first gets the hub's latest frame, which may be an earlier test's.
    auto frame = ws.read(5s);
    if (frame && before > 0 && frame->payload != "frame for " + source) frame = ws.read(5s);
    ASSERT_TRUE(frame.has_value()) << source;
    EXPECT_EQ(frame->payload, "frame for " + source);
  }

  fake::FakeLiveSource source_;
  common::MetricsRegistry registry_;
  StreamHub hub_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(AllowlistTest, LoopbackAliasOutsideTheCidrIsDeniedOnEveryRoute) {
  startServer("127.0.0.1", {"127.0.0.1/32"});
  expectDeniedEverywhere("127.0.0.1", "127.0.0.2");
  // One filter decision and one denial per connection: the kRoutes requests + the upgrade.
  EXPECT_EQ(server_->stats().denied_connections, kRoutes.size() + 1);
  expectAllowedEverywhere("127.0.0.1", "127.0.0.1");
  EXPECT_EQ(server_->stats().denied_connections, kRoutes.size() + 1);
}

TEST_F(AllowlistTest, WiderCidrAdmitsTheAlias) {
  startServer("127.0.0.1", {"10.0.0.0/8", "127.0.0.0/30"});
  expectAllowedEverywhere("127.0.0.1", "127.0.0.2");
  EXPECT_EQ(server_->stats().denied_connections, 0u);
}

TEST_F(AllowlistTest, FilterRunsAtAcceptBeforeAnyByteIsRead) {
  startServer("127.0.0.1", {"127.0.0.1/32"});
  ConnectOptions from;
  from.source_address = "127.0.0.2";
  HttpConnection silent("127.0.0.1", port(), 5s, from);  // connects, sends nothing
  EXPECT_TRUE(waitUntil([&] { return server_->stats().denied_connections == 1; }, 5s));
  // Only now does it speak; the decision was already taken.
  ASSERT_TRUE(silent.sendRaw("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(silent.readResponse().status, 403);
  EXPECT_TRUE(silent.waitForClose(5s));
  EXPECT_EQ(server_->stats().denied_connections, 1u);
}

TEST_F(AllowlistTest, DeniedClientGets403WhateverItSends) {
  startServer("127.0.0.1", {"127.0.0.1/32"});
  ConnectOptions from;
  from.source_address = "127.0.0.2";
  {
    HttpConnection c("127.0.0.1", port(), 5s, from);
    const HttpResult r = c.request("GET", "/api/health", {{"X-Big", std::string(200 * 1024, 'a')}});
    EXPECT_EQ(r.status, 403);  // not 431: a denied client learns nothing else
    EXPECT_EQ(json::parse(r.body), json({{"error", "forbidden"}}));
  }
  {
    HttpConnection c("127.0.0.1", port(), 5s, from);
    ASSERT_TRUE(c.sendRaw("GARBAGE\r\n\r\n"));
    EXPECT_EQ(c.readResponse().status, 403);  // not 400
  }
  {
    HttpConnection c("127.0.0.1", port(), 5s, from);
    EXPECT_EQ(c.request("POST", "/api/health", {}, std::string(100 * 1024, 'b')).status,
              403);  // not 413
  }
  EXPECT_EQ(server_->stats().denied_connections, 3u);
}

TEST_F(AllowlistTest, DeniedUpgradeNeverReachesTheHub) {
  startServer("127.0.0.1", {"192.0.2.0/24"});
  WsClient ws("127.0.0.1", port(), "/api/stream", 5s);
  EXPECT_EQ(ws.handshake().status, 403);
  EXPECT_EQ(json::parse(ws.handshake().body), json({{"error", "forbidden"}}));
  EXPECT_EQ(hub_.stats().clients_total, 0u);
  // Counted once the write completes, which may be just after the client has the answer.
  EXPECT_TRUE(waitUntil([&] { return server_->stats().responses[3] == 1; }, 5s));  // one 4xx
  EXPECT_EQ(server_->stats().responses[0], 0u);                                    // no 101
}

class DualStackAllowlistTest : public AllowlistTest {
 protected:
  bool startDualStack(const std::vector<std::string>& cidrs) {
    try {
      startServer("::", cidrs);
      return true;
    } catch (const SystemError& e) {
      return false;
    }
  }
};

TEST_F(DualStackAllowlistTest, Ipv6CidrAdmitsIpv6LoopbackOnly) {
  if (!startDualStack({"::1/128"})) GTEST_SKIP() << "no IPv6 on this host";
  expectAllowedEverywhere("::1", "::1");
  // IPv4 over the dual-stack socket arrives as ::ffff:127.0.0.1: not in ::1/128.
  expectDeniedEverywhere("127.0.0.1", "127.0.0.1");
}

TEST_F(DualStackAllowlistTest, Ipv4CidrMatchesMappedPeersNotIpv6Ones) {
  if (!startDualStack({"127.0.0.1/32"})) GTEST_SKIP() << "no IPv6 on this host";
  expectAllowedEverywhere("127.0.0.1", "127.0.0.1");
  // An IPv6 socket connecting to the mapped address: the peer is ::ffff:127.0.0.1 as well.
  expectAllowedEverywhere("::ffff:127.0.0.1", "");
  expectDeniedEverywhere("::1", "::1");
  expectDeniedEverywhere("127.0.0.1", "127.0.0.2");
}

TEST_F(DualStackAllowlistTest, MappedCidrMatchesIpv4Peers) {
  if (!startDualStack({"::ffff:127.0.0.0/104"})) GTEST_SKIP() << "no IPv6 on this host";
  expectAllowedEverywhere("127.0.0.1", "127.0.0.2");
  expectDeniedEverywhere("::1", "::1");
}

}  // namespace
}  // namespace ayaflow::api
