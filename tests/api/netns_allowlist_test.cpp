// SPDX-License-Identifier: MIT OR Apache-2.0
// --allowed-ips with a real second host (root tier): a network namespace joined to the root
// namespace by a veth pair (tests/support/netns.h; unique names, addresses only on the pair,
// removed in the destructor). The server listens on the host end; a client inside the
// namespace is denied or allowed by its own address, over IPv4 and IPv6.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/metrics.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/common/metrics.h"
#include "fake_live_source.h"
#include "http_client.h"
#include "netns.h"
#include "root_guard.h"
#include "ws_client.h"

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::VethPair;
using test::WsClient;
using test_util::waitUntil;

// 10.213.241.0/24 and fd00:213:241::/64: a subnet no other test uses (e2e uses 1-10).
constexpr int kLink = 241;

/// What one client saw on every route plus the WebSocket.
struct Outcome {
  int health = 0, stats = 0, metrics = 0, stream_plain = 0, upgrade = 0;
  std::string frame;  // first frame, when the upgrade succeeded
};

class NetnsAllowlistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_.totals_value = {5, 500};
    addCoreRoutes(router_, source_);
    addMetricsRoute(router_, registry_);
    addStreamRoute(router_, hub_);
  }

  void startServer(const std::string& address, const std::vector<std::string>& cidrs) {
    server_.reset();
    HttpServerOptions opts;
    opts.address = address;
    opts.port = 0;
    opts.allowed_ips = test_util::cidrs(cidrs);
    server_ = std::make_unique<HttpServer>(opts, router_);
    server_->start();
  }

  /// Runs every request from `source` (inside the namespace when `link` is given).
  Outcome visit(const VethPair* link, const std::string& host, const std::string& source) {
    Outcome out;
    auto run = [&] {
      test::ConnectOptions from;
      from.source_address = source;
      const std::uint16_t port = server_->port();
      auto get = [&](const std::string& target) {
        test::HttpConnection c(host, port, 5s, from);
        return c.request("GET", target, {{"Connection", "close"}}).status;
      };
      out.health = get("/api/health");
      out.stats = get("/api/stats");
      out.metrics = get("/metrics");
      out.stream_plain = get("/api/stream");
      const auto before = hub_.stats().clients_total;
      WsClient ws(host, port, "/api/stream", 5s, from);
      out.upgrade = ws.handshake().status;
      if (ws.isOpen() && waitUntil([&] { return hub_.stats().clients_total > before; }, 5s)) {
        hub_.publish("hello " + source);
        // A new client first gets the hub's latest frame, maybe an earlier visit's.
        for (int i = 0; i < 2 && out.frame != "hello " + source; ++i) {
          if (auto frame = ws.read(5s)) out.frame = frame->payload;
        }
      }
    };
    if (link != nullptr) {
      link->inNamespace(run);  // sockets created inside stay in the namespace
    } else {
      run();
    }
    return out;
  }

  static void expectDenied(const Outcome& o, const std::string& who) {
    EXPECT_EQ(o.health, 403) << who;
    EXPECT_EQ(o.stats, 403) << who;
    EXPECT_EQ(o.metrics, 403) << who;
    EXPECT_EQ(o.stream_plain, 403) << who;
    EXPECT_EQ(o.upgrade, 403) << who;
    EXPECT_EQ(o.frame, "") << who;
  }
  static void expectAllowed(const Outcome& o, const std::string& who, const std::string& source) {
    EXPECT_EQ(o.health, 200) << who;
    EXPECT_EQ(o.stats, 200) << who;
    EXPECT_EQ(o.metrics, 200) << who;
    EXPECT_EQ(o.stream_plain, 426) << who;
    EXPECT_EQ(o.upgrade, 101) << who;
    EXPECT_EQ(o.frame, "hello " + source) << who;
  }

  fake::FakeLiveSource source_;
  StreamHub hub_;
  common::MetricsRegistry registry_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(NetnsAllowlistTest, Ipv4ClientInNamespaceDeniedOrAllowedByItsAddress) {
  AYAFLOW_REQUIRE_ROOT();
  VethPair link(kLink);

  // Only the host end itself is allowed: the namespace's client is outside.
  startServer(link.hostV4(), {link.hostV4() + "/32"});
  expectDenied(visit(&link, link.hostV4(), link.peerV4()), "netns " + link.peerV4());
  expectAllowed(visit(nullptr, link.hostV4(), link.hostV4()), "host " + link.hostV4(),
                link.hostV4());
  EXPECT_EQ(server_->stats().denied_connections, 5u);

  // Now only the namespace's address is allowed.
  startServer(link.hostV4(), {link.peerV4() + "/32"});
  expectAllowed(visit(&link, link.hostV4(), link.peerV4()), "netns " + link.peerV4(),
                link.peerV4());
  expectDenied(visit(nullptr, link.hostV4(), link.hostV4()), "host " + link.hostV4());
}

TEST_F(NetnsAllowlistTest, Ipv6ClientInNamespaceDeniedOrAllowedByItsAddress) {
  AYAFLOW_REQUIRE_ROOT();
  VethPair link(kLink + 1);

  startServer(link.hostV6(), {link.hostV6() + "/128"});
  expectDenied(visit(&link, link.hostV6(), link.peerV6()), "netns " + link.peerV6());

  startServer(link.hostV6(), {"fd00:213:" + std::to_string(kLink + 1) + "::/64"});
  expectAllowed(visit(&link, link.hostV6(), link.peerV6()), "netns " + link.peerV6(),
                link.peerV6());
}

TEST_F(NetnsAllowlistTest, DualStackListenerMatchesNamespaceIpv4ClientAsMapped) {
  AYAFLOW_REQUIRE_ROOT();
  VethPair link(kLink + 2);

  // On "::" the namespace's IPv4 client arrives as ::ffff:10.213.x.2.
  startServer("::", {link.peerV4() + "/32"});
  expectAllowed(visit(&link, link.hostV4(), link.peerV4()), "netns v4", link.peerV4());
  expectDenied(visit(&link, link.hostV6(), link.peerV6()), "netns v6");

  startServer("::", {link.peerV6() + "/128"});
  expectDenied(visit(&link, link.hostV4(), link.peerV4()), "netns v4");
  expectAllowed(visit(&link, link.hostV6(), link.peerV6()), "netns v6", link.peerV6());
}

}  // namespace
}  // namespace ayaflow::api
