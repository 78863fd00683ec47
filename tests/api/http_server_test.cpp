// SPDX-License-Identifier: MIT OR Apache-2.0
// The real HttpServer on 127.0.0.1:0 with a fake LiveSource, driven over TCP (api tier).
#include "ayaflow/api/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/common/system_error.h"
#include "fake_live_source.h"
#include "http_client.h"

namespace ayaflow::api {
namespace {

using nlohmann::json;
using test::HttpConnection;
using test::httpGet;
using test::httpRequest;
using test::HttpResult;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kHost = "127.0.0.1";

std::set<std::string> keysOf(const json& object) {
  std::set<std::string> keys;
  for (const auto& item : object.items()) keys.insert(item.key());
  return keys;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_.totals_value = {1234, 567890};
    source_.active = 7;
    source_.uptime = 2.5;
    source_.fillConnections(60);
    addCoreRoutes(router_, source_);
    router_.add("POST", "/api/echo", [](const Request& r) {
      Response response;
      response.content_type = "text/plain";
      response.body = r.path + "|" + r.queryParam("q").value_or("-") + "|" + r.body;
      return response;
    });
    router_.add("GET", "/api/boom",
                [](const Request&) -> Response { throw std::runtime_error("boom"); });
    router_.add("GET", "/plain", [](const Request&) {
      Response response;
      response.content_type = "text/plain; charset=utf-8";
      response.body = "hello";
      return response;
    });
  }

  HttpServerOptions options() const {
    HttpServerOptions opts;
    opts.address = kHost;
    opts.port = 0;
    opts.threads = 2;
    opts.read_timeout = 1s;
    return opts;
  }

  HttpServer& startServer(HttpServerOptions opts) {
    server_ = std::make_unique<HttpServer>(std::move(opts), router_);
    server_->start();
    EXPECT_NE(server_->port(), 0);
    return *server_;
  }
  HttpServer& startServer() { return startServer(options()); }

  std::uint16_t port() const { return server_->port(); }

  json getJson(const std::string& target) {
    const HttpResult r = httpGet(kHost, port(), target);
    EXPECT_EQ(r.status, 200) << target << ": " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.header("cache-control"), "no-store");
    EXPECT_EQ(r.header("server"), "ayaflow");
    return json::parse(r.body);
  }

  fake::FakeLiveSource source_;
  Router router_;
  std::unique_ptr<HttpServer> server_;  // declared last: stopped before router_ and source_
};

// ---- the routes, exact JSON

TEST_F(HttpServerTest, HealthExactJson) {
  startServer();
  const json j = getJson("/api/health");
  EXPECT_EQ(keysOf(j), (std::set<std::string>{"status", "active_connections", "total_packets"}));
  EXPECT_EQ(j.at("status"), "ok");
  ASSERT_TRUE(j.at("active_connections").is_number_unsigned());
  ASSERT_TRUE(j.at("total_packets").is_number_unsigned());
  EXPECT_EQ(j.at("active_connections").get<std::uint64_t>(), 7u);
  EXPECT_EQ(j.at("total_packets").get<std::uint64_t>(), 1234u);
}

TEST_F(HttpServerTest, StatsExactJsonAndRates) {
  startServer();
  const json j = getJson("/api/stats");
  EXPECT_EQ(keysOf(j), (std::set<std::string>{"uptime_seconds", "total_packets", "total_bytes",
                                              "active_connections", "packets_per_second",
                                              "bytes_per_second"}));
  for (const char* key : {"total_packets", "total_bytes", "active_connections"}) {
    EXPECT_TRUE(j.at(key).is_number_unsigned()) << key;
  }
  EXPECT_EQ(j.at("total_packets").get<std::uint64_t>(), 1234u);
  EXPECT_EQ(j.at("total_bytes").get<std::uint64_t>(), 567890u);
  EXPECT_EQ(j.at("active_connections").get<std::uint64_t>(), 7u);
  EXPECT_TRUE(j.at("uptime_seconds").is_number_float());
  EXPECT_DOUBLE_EQ(j.at("uptime_seconds").get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(j.at("packets_per_second").get<double>(), 1234 / 2.5);
  EXPECT_DOUBLE_EQ(j.at("bytes_per_second").get<double>(), 567890 / 2.5);
}

TEST_F(HttpServerTest, LiveTop50InPacketOrderWithExactFields) {
  startServer();
  const json j = getJson("/api/live");
  EXPECT_EQ(keysOf(j), (std::set<std::string>{"connections", "total_packets", "total_bytes"}));
  EXPECT_EQ(j.at("total_packets").get<std::uint64_t>(), 1234u);
  EXPECT_EQ(j.at("total_bytes").get<std::uint64_t>(), 567890u);
  const json& connections = j.at("connections");
  ASSERT_TRUE(connections.is_array());
  ASSERT_EQ(connections.size(), 50u);
  for (std::size_t rank = 0; rank < connections.size(); ++rank) {
    const json& c = connections[rank];
    const std::uint64_t i = 59 - rank;  // the fake ranks higher indexes first
    EXPECT_EQ(keysOf(c), (std::set<std::string>{"connection", "stats"}));
    EXPECT_EQ(keysOf(c.at("stats")),
              (std::set<std::string>{"bytes_sent", "bytes_received", "packets_count"}));
    EXPECT_EQ(c.at("connection"), "10.0.0." + std::to_string(i) + ":" + std::to_string(40000 + i) +
                                      " -> 93.184.216.34:443");
    for (const char* key : {"bytes_sent", "bytes_received", "packets_count"}) {
      EXPECT_TRUE(c.at("stats").at(key).is_number_unsigned()) << key;
    }
    EXPECT_EQ(c.at("stats").at("bytes_sent").get<std::uint64_t>(), 100 * i + 1);
    EXPECT_EQ(c.at("stats").at("bytes_received").get<std::uint64_t>(), 200 * i + 2);
    EXPECT_EQ(c.at("stats").at("packets_count").get<std::uint64_t>(), 1000 + 7 * i);
  }
}

// ---- routing errors and methods

TEST_F(HttpServerTest, UnknownRouteIs404Json) {
  startServer();
  HttpResult r = httpGet(kHost, port(), "/api/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(json::parse(r.body), json({{"error", "not found"}}));
  EXPECT_EQ(r.header("cache-control"), "no-store");

  r = httpGet(kHost, port(), "/");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("cache-control"), "");  // only /api/* is marked no-store
}

TEST_F(HttpServerTest, WrongMethodIs405WithAllow) {
  startServer();
  const HttpResult r = httpRequest(kHost, port(), "POST", "/api/health", {}, "x=1");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_EQ(json::parse(r.body), json({{"error", "method not allowed"}}));
}

TEST_F(HttpServerTest, HeadHasContentLengthButNoBody) {
  startServer();
  const HttpResult full = httpGet(kHost, port(), "/api/health");
  ASSERT_EQ(full.status, 200);

  HttpConnection connection(kHost, port());
  const HttpResult head = connection.request("HEAD", "/api/health");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), std::to_string(full.body.size()));
  EXPECT_EQ(head.header("content-type"), "application/json");
  EXPECT_TRUE(head.body.empty());
  // Had the server sent body bytes, they would now be parsed as the next status line.
  const HttpResult next = connection.request("GET", "/api/health");
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.body, full.body);
}

TEST_F(HttpServerTest, ResponseCarriesHandlerContentTypeBodyAndQuery) {
  startServer();
  HttpResult r = httpRequest(kHost, port(), "POST", "/api/ec%68o?q=a%20b", {}, "payload");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain");
  EXPECT_EQ(r.body, "/api/echo|a b|payload");

  r = httpGet(kHost, port(), "/plain");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(r.header("content-length"), "5");
  EXPECT_EQ(r.body, "hello");
}

TEST_F(HttpServerTest, ThrowingHandlerIs500AndServerKeepsServing) {
  startServer();
  HttpConnection connection(kHost, port());
  const HttpResult r = connection.request("GET", "/api/boom");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(json::parse(r.body), json({{"error", "internal error"}}));
  EXPECT_EQ(connection.request("GET", "/api/health").status, 200);
}

// ---- malformed and oversized requests

TEST_F(HttpServerTest, GarbageRequestLineIs400ThenClosed) {
  startServer();
  HttpConnection connection(kHost, port());
  ASSERT_TRUE(connection.sendRaw("GARBAGE\r\n\r\n"));
  const HttpResult r = connection.readResponse();
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(json::parse(r.body), json({{"error", "bad request"}}));
  EXPECT_TRUE(connection.waitForClose(5s));
}

TEST_F(HttpServerTest, MalformedPercentEscapeIs400) {
  startServer();
  const HttpResult r = httpGet(kHost, port(), "/api/health%zz");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body), json({{"error", "bad request target"}}));
}

TEST_F(HttpServerTest, OversizedHeaderIs431) {
  startServer();
  const HttpResult r =
      httpRequest(kHost, port(), "GET", "/api/health", {{"X-Big", std::string(200 * 1024, 'a')}});
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(r.header("connection"), "close");
  EXPECT_EQ(json::parse(r.body), json({{"error", "request header fields too large"}}));
}

TEST_F(HttpServerTest, OversizedBodyIs413) {
  startServer();
  const HttpResult r =
      httpRequest(kHost, port(), "POST", "/api/echo", {}, std::string(100 * 1024, 'b'));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(json::parse(r.body), json({{"error", "payload too large"}}));
}

TEST_F(HttpServerTest, BodyAtLimitIsAccepted) {
  startServer();
  const std::string body(8 * 1024, 'c');  // the default body_limit
  const HttpResult r = httpRequest(kHost, port(), "POST", "/api/echo", {}, body);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "/api/echo|-|" + body);
}

// ---- connection management

TEST_F(HttpServerTest, SlowRequestIsClosedAfterReadTimeout) {
  startServer();  // read_timeout 1 s
  HttpConnection connection(kHost, port());
  // Half a request, then a header line every 100 ms: each read makes progress, but the
  // deadline covers the whole request, so the server must still hang up.
  ASSERT_TRUE(connection.sendRaw("GET /api/health HTTP/1.1\r\nHost: x\r\n"));
  const auto start = Clock::now();
  bool closed = false;
  while (!closed && Clock::now() - start < 5s) {
    closed = !connection.sendRaw("X-Slow: 1\r\n") || connection.waitForClose(100ms);
  }
  EXPECT_TRUE(closed) << "slow request still open after 5 s";
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  startServer();
  HttpConnection connection(kHost, port());
  const HttpResult first = connection.request("GET", "/api/health");
  EXPECT_EQ(first.status, 200);
  EXPECT_NE(first.header("connection"), "close");
  const HttpResult second = connection.request("GET", "/api/stats");
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(json::parse(second.body).at("total_packets"), 1234u);
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  startServer();
  HttpConnection connection(kHost, port());
  ASSERT_TRUE(connection.sendRaw(
      "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(connection.readResponse().status, 200);
  EXPECT_EQ(connection.readResponse().status, 404);
}

TEST_F(HttpServerTest, ManyPipelinedRequestsBeyondTheReadBufferAreAllAnswered) {
  startServer();
  HttpConnection connection(kHost, port());
  std::string requests;
  constexpr int kRequests = 400;  // ~16 KiB: more than the read buffer (8 KiB + 4 KiB)
  for (int i = 0; i < kRequests; ++i) requests += "GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(connection.sendRaw(requests));  // fits the socket buffers: no reader needed
  int ok = 0;
  for (int i = 0; i < kRequests; ++i) ok += connection.readResponse().status == 200;
  EXPECT_EQ(ok, kRequests);
}

TEST_F(HttpServerTest, TooManyHeaderFieldsAre431) {
  auto opts = options();
  opts.max_header_fields = 20;
  startServer(opts);
  test::HeaderList headers;
  for (int i = 0; i < 30; ++i) headers.emplace_back("X-H" + std::to_string(i), "v");
  const HttpResult r = test::httpRequest(kHost, port(), "GET", "/api/health", headers);
  EXPECT_EQ(r.status, 431);
  EXPECT_EQ(json::parse(r.body), json({{"error", "too many header fields"}}));
  headers.resize(10);
  EXPECT_EQ(test::httpRequest(kHost, port(), "GET", "/api/health", headers).status, 200);
}

TEST_F(HttpServerTest, Http10WithoutKeepAliveIsClosedAfterAnswer) {
  startServer();
  HttpConnection connection(kHost, port());
  ASSERT_TRUE(connection.sendRaw("GET /api/health HTTP/1.0\r\n\r\n"));
  const HttpResult r = connection.readResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(connection.waitForClose(5s));
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  auto opts = options();
  opts.idle_timeout = 1s;
  startServer(opts);
  HttpConnection connection(kHost, port());
  EXPECT_EQ(connection.request("GET", "/api/health").status, 200);
  EXPECT_TRUE(connection.waitForClose(5s));
}

TEST_F(HttpServerTest, ConcurrentClientsAllSucceed) {
  startServer();
  constexpr int kThreads = 50;
  constexpr int kRequests = 20;
  std::atomic<int> ok{0};
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        try {
          // Mix fresh connections and keep-alive ones.
          const HttpResult r = httpGet(kHost, port(), t % 2 ? "/api/health" : "/api/live", 10s);
          if (r.status == 200 && json::parse(r.body).is_object()) ++ok;
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(failures_mutex);
          failures.push_back(e.what());
        }
      }
    });
  }
  for (auto& client : clients) client.join();
  EXPECT_EQ(ok.load(), kThreads * kRequests);
  EXPECT_TRUE(failures.empty()) << failures.size() << " failures, first: " << failures.front();
}

TEST_F(HttpServerTest, ConnectionsAboveMaxEvictTheLongestIdle) {
  auto opts = options();
  opts.max_connections = 2;  // reserve: at most a quarter, so none here
  HttpServer& server = startServer(opts);
  HttpConnection a(kHost, port());
  ASSERT_EQ(a.request("GET", "/api/health").status, 200);
  std::this_thread::sleep_for(50ms);  // a has been idle longer than b (not a deadline)
  HttpConnection b(kHost, port());
  ASSERT_EQ(b.request("GET", "/api/health").status, 200);
  std::this_thread::sleep_for(50ms);
  // A third connection takes the slot of the one idle the longest (a).
  HttpConnection c(kHost, port());
  EXPECT_TRUE(a.waitForClose(5s));
  EXPECT_EQ(c.request("GET", "/api/health").status, 200);
  EXPECT_EQ(server.stats().evicted_connections, 1u);
  EXPECT_EQ(server.stats().rejected_connections, 0u);
  // The evicted session leaves the count once its strand has closed it.
  EXPECT_TRUE(test_util::waitUntil([&] { return server.stats().active_connections == 2u; }, 5s));
  EXPECT_EQ(b.request("GET", "/api/health").status, 200);
}

TEST_F(HttpServerTest, AcceptFilterDeniesWith403AndSeesMappedAddress) {
  std::mutex mutex;
  std::vector<PeerAddress> seen;
  auto opts = options();
  opts.accept_filter = [&](const PeerAddress& peer) {
    std::lock_guard<std::mutex> lock(mutex);
    seen.push_back(peer);
    return false;
  };
  HttpServer& server = startServer(opts);
  const HttpResult r = httpGet(kHost, port(), "/api/health");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(json::parse(r.body), json({{"error", "forbidden"}}));
  EXPECT_EQ(server.stats().denied_connections, 1u);
  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(seen.size(), 1u);
  const std::array<std::uint8_t, 16> mapped_loopback{0, 0, 0,    0,    0,   0, 0, 0,
                                                     0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(seen[0].bytes, mapped_loopback);
  EXPECT_NE(seen[0].port, 0);
}

TEST_F(HttpServerTest, DualStackListenServesIpv4AndIpv6) {
  auto opts = options();
  opts.address = "::";
  try {
    startServer(opts);
  } catch (const SystemError& e) {
    GTEST_SKIP() << "no IPv6 here: " << e.what();
  }
  EXPECT_EQ(httpGet("::1", port(), "/api/health").status, 200);
  EXPECT_EQ(httpGet("127.0.0.1", port(), "/api/health").status, 200);
}

TEST_F(HttpServerTest, ResponsesAreCountedByStatusClass) {
  HttpServer& server = startServer();
  EXPECT_EQ(httpGet(kHost, port(), "/api/health").status, 200);
  EXPECT_EQ(httpGet(kHost, port(), "/api/live").status, 200);
  EXPECT_EQ(httpGet(kHost, port(), "/nope").status, 404);
  EXPECT_EQ(httpRequest(kHost, port(), "POST", "/api/health").status, 405);
  EXPECT_EQ(httpGet(kHost, port(), "/api/boom").status, 500);
  HttpConnection garbage(kHost, port());
  ASSERT_TRUE(garbage.sendRaw("GARBAGE\r\n\r\n"));
  EXPECT_EQ(garbage.readResponse().status, 400);
  // Counted when the write completes, which can be just after the client has read it.
  const std::array<std::uint64_t, 5> expected{0, 2, 0, 3, 1};
  const auto deadline = Clock::now() + 5s;
  while (server.stats().responses != expected && Clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(server.stats().responses, expected);
}

// ---- lifecycle

TEST_F(HttpServerTest, PortInUseThrowsSystemErrorNamingThePort) {
  startServer();
  auto opts = options();
  opts.port = port();
  HttpServer second(opts, router_);
  try {
    second.start();
    FAIL() << "second server bound the same port";
  } catch (const SystemError& e) {
    EXPECT_EQ(e.code().value(), EADDRINUSE);
    const std::string what = e.what();
    EXPECT_NE(what.find("127.0.0.1:" + std::to_string(port())), std::string::npos) << what;
    EXPECT_NE(what.find("--port"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_EQ(httpGet(kHost, port(), "/api/health").status, 200);  // first one unharmed
}

TEST_F(HttpServerTest, InvalidAddressThrowsSystemError) {
  auto opts = options();
  opts.address = "not-an-address";
  HttpServer server(opts, router_);
  EXPECT_THROW(server.start(), SystemError);
}

TEST_F(HttpServerTest, StopReturnsPromptlyWithIdleKeepAliveClient) {
  startServer();  // idle_timeout 30 s
  HttpConnection connection(kHost, port());
  ASSERT_EQ(connection.request("GET", "/api/health").status, 200);
  const auto start = Clock::now();
  server_->stop();
  EXPECT_LT(Clock::now() - start, 2s);  // far below the 30 s idle timeout and the 3 s grace
  EXPECT_TRUE(connection.waitForClose(2s));
  server_->stop();                                                      // idempotent
  EXPECT_THROW(HttpConnection(kHost, port(), 1s), std::runtime_error);  // no longer listening
}

TEST_F(HttpServerTest, StopWithoutStartAndDestructorAreSafe) {
  {
    HttpServer never_started(options(), router_);
    never_started.stop();
    EXPECT_EQ(never_started.port(), 0);
  }
  startServer();
  HttpConnection connection(kHost, port());
  ASSERT_EQ(connection.request("GET", "/api/health").status, 200);
  server_.reset();  // destructor stops
  EXPECT_TRUE(connection.waitForClose(2s));
}

}  // namespace
}  // namespace ayaflow::api
