// SPDX-License-Identifier: MIT OR Apache-2.0
// Router, parseTarget and core routes without a server (unit tier).
#include "ayaflow/api/router.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ayaflow/api/core_routes.h"
#include "fake_live_source.h"

namespace ayaflow::api {
namespace {

using nlohmann::json;
using QueryList = std::vector<std::pair<std::string, std::string>>;

Request get(const std::string& target, const std::string& method = "GET") {
  auto request = parseTarget(method, target, "");
  EXPECT_TRUE(request.has_value()) << target;
  return request.value_or(Request{});
}

TEST(ParseTarget, SplitsPathAndDecodesQueryInOrder) {
  const auto r =
      parseTarget("GET", "/api/hist%6Fry?limit=10&x=a%20b+c&flag&&empty=&k%3D=v%26", "b");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->method, "GET");
  EXPECT_EQ(r->target, "/api/hist%6Fry?limit=10&x=a%20b+c&flag&&empty=&k%3D=v%26");
  EXPECT_EQ(r->path, "/api/history");
  EXPECT_EQ(r->body, "b");
  EXPECT_EQ(
      r->query,
      (QueryList{{"limit", "10"}, {"x", "a b c"}, {"flag", ""}, {"empty", ""}, {"k=", "v&"}}));
  EXPECT_EQ(r->queryParam("limit"), "10");
  EXPECT_EQ(r->queryParam("flag"), "");
  EXPECT_EQ(r->queryParam("missing"), std::nullopt);
}

TEST(ParseTarget, PlusIsLiteralInPathAndEncodedQuestionMarkStaysInPath) {
  const auto r = parseTarget("GET", "/a+b%3Fc?q=1", "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->path, "/a+b?c");
  EXPECT_EQ(r->query, (QueryList{{"q", "1"}}));
}

TEST(ParseTarget, FirstOfRepeatedParameterWins) {
  const auto r = parseTarget("GET", "/x?a=1&a=2", "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->queryParam("a"), "1");
  EXPECT_EQ(r->query.size(), 2u);
}

TEST(ParseTarget, NoQuery) {
  const auto r = parseTarget("GET", "/api/health", "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->path, "/api/health");
  EXPECT_TRUE(r->query.empty());
  const auto empty_query = parseTarget("GET", "/api/health?", "");
  ASSERT_TRUE(empty_query.has_value());
  EXPECT_EQ(empty_query->path, "/api/health");
  EXPECT_TRUE(empty_query->query.empty());
}

TEST(ParseTarget, RejectsMalformedTargets) {
  for (const char* target : {"", "api/health", "*", "http://host/api/health", "/a%", "/a%4",
                             "/a%zz", "/a%g1", "/a%00", "/a?x=%G0", "/a?%=1", "/a?x=%0"}) {
    EXPECT_FALSE(parseTarget("GET", target, "").has_value()) << target;
  }
}

TEST(JsonError, BuildsErrorObject) {
  const Response r = jsonError(418, "short \"and\" stout");
  EXPECT_EQ(r.status, 418u);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, R"({"error":"short \"and\" stout"})");
}

TEST(JsonError, InvalidUtf8IsReplacedNotThrown) {
  const Response r = jsonError(400, std::string("bad \xff byte"));
  EXPECT_EQ(json::parse(r.body).at("error"), "bad \xEF\xBF\xBD byte");
}

Response text(const std::string& body) {
  Response r;
  r.content_type = "text/plain";
  r.body = body;
  return r;
}

TEST(Router, DispatchesByExactPathAndMethod) {
  Router router;
  router.add("GET", "/a", [](const Request&) { return text("get a"); });
  router.add("POST", "/a", [](const Request& r) { return text("post a " + r.body); });
  router.add("GET", "/b", [](const Request& r) { return text("b " + *r.queryParam("x")); });

  EXPECT_EQ(router.route(get("/a")).body, "get a");
  auto post = parseTarget("POST", "/a", "payload");
  ASSERT_TRUE(post);
  EXPECT_EQ(router.route(*post).body, "post a payload");
  EXPECT_EQ(router.route(get("/b?x=1")).body, "b 1");
  EXPECT_EQ(router.route(get("/b?x=1")).content_type, "text/plain");
  EXPECT_TRUE(router.hasPath("/a"));
  EXPECT_FALSE(router.hasPath("/a/"));
  EXPECT_FALSE(router.hasPath("/c"));
}

TEST(Router, UnknownPathIs404Json) {
  Router router;
  router.add("GET", "/a", [](const Request&) { return text("a"); });
  for (const char* target : {"/", "/b", "/a/", "/A"}) {
    const Response r = router.route(get(target));
    EXPECT_EQ(r.status, 404u) << target;
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_EQ(json::parse(r.body), json({{"error", "not found"}}));
  }
}

std::string headerValue(const Response& r, const std::string& name) {
  for (const auto& [n, v] : r.headers) {
    if (n == name) return v;
  }
  return "<absent>";
}

TEST(Router, WrongMethodIs405WithAllow) {
  Router router;
  router.add("GET", "/a", [](const Request&) { return text("a"); });
  router.add("POST", "/p", [](const Request&) { return text("p"); });
  router.add("PUT", "/gp", [](const Request&) { return text("gp"); });
  router.add("GET", "/gp", [](const Request&) { return text("gp"); });

  Response r = router.route(get("/a", "POST"));
  EXPECT_EQ(r.status, 405u);
  EXPECT_EQ(json::parse(r.body), json({{"error", "method not allowed"}}));
  EXPECT_EQ(headerValue(r, "Allow"), "GET, HEAD");

  r = router.route(get("/p", "GET"));
  EXPECT_EQ(r.status, 405u);
  EXPECT_EQ(headerValue(r, "Allow"), "POST");

  r = router.route(get("/p", "HEAD"));  // no GET handler: HEAD is not implied
  EXPECT_EQ(r.status, 405u);

  r = router.route(get("/gp", "DELETE"));
  EXPECT_EQ(r.status, 405u);
  EXPECT_EQ(headerValue(r, "Allow"), "GET, HEAD, PUT");

  r = router.route(get("/a", "get"));  // methods are case-sensitive
  EXPECT_EQ(r.status, 405u);
}

TEST(Router, HeadUsesGetHandlerUnlessHeadRegistered) {
  Router router;
  router.add("GET", "/a", [](const Request& r) { return text("get saw " + r.method); });
  router.add("GET", "/h", [](const Request&) { return text("get h"); });
  router.add("HEAD", "/h", [](const Request&) { return text("head h"); });

  const Response a = router.route(get("/a", "HEAD"));
  EXPECT_EQ(a.status, 200u);
  EXPECT_EQ(a.body, "get saw HEAD");  // the server, not the router, drops the body
  EXPECT_EQ(router.route(get("/h", "HEAD")).body, "head h");
}

TEST(Router, LaterAddReplacesEarlier) {
  Router router;
  router.add("GET", "/a", [](const Request&) { return text("one"); });
  router.add("GET", "/a", [](const Request&) { return text("two"); });
  EXPECT_EQ(router.route(get("/a")).body, "two");
}

TEST(Router, ThrowingHandlerIs500Json) {
  Router router;
  router.add("GET", "/std", [](const Request&) -> Response { throw std::runtime_error("boom"); });
  router.add("GET", "/int", [](const Request&) -> Response { throw 42; });
  for (const char* target : {"/std", "/std", "/int"}) {
    const Response r = router.route(get(target));
    EXPECT_EQ(r.status, 500u) << target;
    EXPECT_EQ(json::parse(r.body), json({{"error", "internal error"}}));
  }
}

// ---- core routes through the router (JSON shape; the server tests repeat it end to end)

class CoreRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override { addCoreRoutes(router_, source_); }
  json call(const std::string& target) {
    const Response r = router_.route(get(target));
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.content_type, "application/json");
    return json::parse(r.body);
  }
  fake::FakeLiveSource source_;
  Router router_;
};

TEST_F(CoreRoutesTest, RegistersExactlyTheSpecPathsForGet) {
  for (const char* path : {"/api/health", "/api/stats", "/api/live"}) {
    EXPECT_TRUE(router_.hasPath(path)) << path;
    EXPECT_EQ(router_.route(get(path, "POST")).status, 405u) << path;
  }
}

TEST_F(CoreRoutesTest, ZeroUptimeGivesZeroRates) {
  source_.totals_value = {10, 2000};
  source_.uptime = 0.0;
  const json j = call("/api/stats");
  EXPECT_EQ(j.at("packets_per_second"), 0.0);
  EXPECT_EQ(j.at("bytes_per_second"), 0.0);
  EXPECT_EQ(j.at("uptime_seconds"), 0.0);
  EXPECT_EQ(j.at("total_packets"), 10u);
}

TEST_F(CoreRoutesTest, CountersAreUnsignedIntegersUpToUint64Max) {
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  source_.totals_value = {kMax, kMax - 1};
  source_.active = kMax - 2;
  source_.uptime = 1.0;
  const json j = call("/api/stats");
  ASSERT_TRUE(j.at("total_packets").is_number_unsigned());
  EXPECT_EQ(j.at("total_packets").get<std::uint64_t>(), kMax);
  EXPECT_EQ(j.at("total_bytes").get<std::uint64_t>(), kMax - 1);
  EXPECT_EQ(j.at("active_connections").get<std::uint64_t>(), kMax - 2);
  EXPECT_TRUE(j.at("packets_per_second").is_number_float());
}

TEST_F(CoreRoutesTest, LiveTruncatesEvenWhenSourceReturnsTooMany) {
  source_.fillConnections(60);
  source_.ignore_limit = true;
  const json j = call("/api/live");
  ASSERT_EQ(j.at("connections").size(), kLiveTopConnections);
  EXPECT_EQ(j.at("connections").front().at("stats").at("packets_count"), 1000u + 7u * 59u);
}

TEST_F(CoreRoutesTest, LiveWithNoConnectionsIsEmptyArray) {
  const json j = call("/api/live");
  EXPECT_TRUE(j.at("connections").is_array());
  EXPECT_TRUE(j.at("connections").empty());
  EXPECT_EQ(j.at("total_packets"), 0u);
}

TEST_F(CoreRoutesTest, LiveNamesAppearOnlyWhenKnown) {
  source_.fillConnections(2);
  source_.connections[1].domain = "www.example.test";
  source_.connections[1].interface = "eth0";
  source_.connections[1].local_hostname = "node-1.example.test";
  source_.connections[1].remote_hostname = "edge.example.test";
  const json j = call("/api/live");
  ASSERT_EQ(j.at("connections").size(), 2u);
  const json& named = j.at("connections")[0];  // connection 1 has more packets
  EXPECT_EQ(named.at("domain"), "www.example.test");
  EXPECT_EQ(named.at("interface"), "eth0");
  EXPECT_EQ(named.at("local_hostname"), "node-1.example.test");
  EXPECT_EQ(named.at("remote_hostname"), "edge.example.test");
  const json& plain = j.at("connections")[1];
  EXPECT_FALSE(plain.contains("domain"));
  EXPECT_FALSE(plain.contains("interface"));
  EXPECT_FALSE(plain.contains("local_hostname"));
  EXPECT_FALSE(plain.contains("remote_hostname"));
}

// ---- /api/live reuses its connection list for live_max_age

Request liveRequest() {
  Request request;
  request.method = "GET";
  request.path = "/api/live";
  return request;
}

TEST(LiveCacheTest, ListIsReusedWithinMaxAgeWhileTotalsStayFresh) {
  fake::FakeLiveSource source;
  source.fillConnections(3);
  Router router;
  addCoreRoutes(router, source, std::chrono::hours(1));
  json first = json::parse(router.route(liveRequest()).body);
  source.fillConnections(5);
  source.totals_value = {99, 999};
  json second = json::parse(router.route(liveRequest()).body);
  EXPECT_EQ(source.top_calls.load(), 1);
  EXPECT_EQ(second.at("connections"), first.at("connections"));
  EXPECT_EQ(second.at("connections").size(), 3u);
  EXPECT_EQ(second.at("total_packets"), 99u);  // read fresh
  EXPECT_EQ(second.at("total_bytes"), 999u);
}

TEST(LiveCacheTest, ZeroMaxAgeComputesEveryTime) {
  fake::FakeLiveSource source;
  source.fillConnections(3);
  Router router;
  addCoreRoutes(router, source, std::chrono::milliseconds(0));
  router.route(liveRequest());
  source.fillConnections(5);
  const json j = json::parse(router.route(liveRequest()).body);
  EXPECT_EQ(source.top_calls.load(), 2);
  EXPECT_EQ(j.at("connections").size(), 5u);
}

TEST(LiveCacheTest, ListIsRecomputedOnceOlderThanMaxAge) {
  fake::FakeLiveSource source;
  source.fillConnections(3);
  Router router;
  addCoreRoutes(router, source, std::chrono::milliseconds(1));
  router.route(liveRequest());
  source.fillConnections(4);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const json j = json::parse(router.route(liveRequest()).body);
  EXPECT_EQ(source.top_calls.load(), 2);
  EXPECT_EQ(j.at("connections").size(), 4u);
}

TEST(LiveCacheTest, DefaultMaxAgeIsAQuarterSecond) {
  EXPECT_EQ(kLiveMaxAge, std::chrono::milliseconds(250));
  fake::FakeLiveSource source;
  Router router;
  addCoreRoutes(router, source);
  router.route(liveRequest());
  router.route(liveRequest());
  EXPECT_EQ(source.top_calls.load(), 1);
}

TEST(LiveCacheTest, FailingSourceIs500AndDoesNotPoisonTheCache) {
  fake::FakeLiveSource source;
  source.fillConnections(2);
  source.fail_top = true;
  Router router;
  addCoreRoutes(router, source, std::chrono::hours(1));
  EXPECT_EQ(router.route(liveRequest()).status, 500u);
  source.fail_top = false;
  const Response r = router.route(liveRequest());
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(json::parse(r.body).at("connections").size(), 2u);
}

TEST(LiveCacheTest, ConcurrentRequestsScanTheMapOnce) {
  fake::FakeLiveSource source;
  source.fillConnections(60);
  Router router;
  addCoreRoutes(router, source, std::chrono::hours(1));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        const Response r = router.route(liveRequest());
        ok += r.status == 200 && json::parse(r.body).at("connections").size() == 50;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(source.top_calls.load(), 1);
}

}  // namespace
}  // namespace ayaflow::api
