// SPDX-License-Identifier: MIT OR Apache-2.0
// GET /api/history: parameter parsing (every bad value), JSON rendering and status codes,
// with a fake query function (unit tier).
#include "ayaflow/api/history_route.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <system_error>

#include "ayaflow/common/system_error.h"

namespace ayaflow::api {
namespace {

using flow::Direction;
using flow::HistoryQuery;
using nlohmann::json;

Request get(const std::string& target) {
  auto request = parseTarget("GET", target, "");
  EXPECT_TRUE(request.has_value()) << target;
  return request.value_or(Request{});
}

HistoryQuery parsedOk(const std::string& query) {
  auto r = parseHistoryQuery(get("/api/history" + query));
  if (auto* error = std::get_if<std::string>(&r)) {
    ADD_FAILURE() << query << ": " << *error;
    return HistoryQuery{};
  }
  return std::get<HistoryQuery>(r);
}

TEST(HistoryParams, Defaults) {
  const HistoryQuery q = parsedOk("");
  EXPECT_EQ(q.limit, 100u);
  EXPECT_FALSE(q.since_ms || q.until_ms || q.ip || q.port || q.protocol || q.direction);
  EXPECT_FALSE(q.ns || q.pod || q.workload);
}

TEST(HistoryParams, KubernetesNamesAreTakenAsGiven) {
  EXPECT_EQ(parsedOk("?namespace=kube-system").ns, "kube-system");
  EXPECT_EQ(parsedOk("?pod=coredns-5d78c9869d-8xk2p").pod, "coredns-5d78c9869d-8xk2p");
  EXPECT_EQ(parsedOk("?workload=coredns").workload, "coredns");
  // Exact text: no case folding or trimming; percent-decoded like every value.
  EXPECT_EQ(parsedOk("?workload=CoreDNS").workload, "CoreDNS");
  EXPECT_EQ(parsedOk("?pod=a%20b").pod, "a b");
  EXPECT_EQ(parsedOk("?pod=" + std::string(253, 'p')).pod, std::string(253, 'p'));
  const HistoryQuery all = parsedOk("?namespace=shop&pod=web-0&workload=web&ip=10.0.0.1&limit=3");
  EXPECT_EQ(all.ns, "shop");
  EXPECT_EQ(all.pod, "web-0");
  EXPECT_EQ(all.workload, "web");
  EXPECT_EQ(all.ip, flow::IpAddress::parse("10.0.0.1"));
  EXPECT_EQ(all.limit, 3u);
}

TEST(HistoryParams, EveryGoodValue) {
  EXPECT_EQ(parsedOk("?limit=1").limit, 1u);
  EXPECT_EQ(parsedOk("?limit=1000").limit, 1000u);
  EXPECT_EQ(parsedOk("?limit=1001").limit, 1000u);  // capped, not refused
  EXPECT_EQ(parsedOk("?limit=99999999999999999999999999").limit, 1000u);
  EXPECT_EQ(parsedOk("?limit=007").limit, 7u);
  EXPECT_EQ(parsedOk("?since=1700000000000").since_ms, 1700000000000);
  EXPECT_EQ(parsedOk("?since=-5").since_ms, -5);
  EXPECT_EQ(parsedOk("?until=0").until_ms, 0);
  EXPECT_EQ(parsedOk("?since=9223372036854775807").since_ms, INT64_MAX);
  EXPECT_EQ(parsedOk("?since=-9223372036854775808").since_ms, INT64_MIN);
  const HistoryQuery both = parsedOk("?since=5&until=5");
  EXPECT_EQ(both.since_ms, 5);
  EXPECT_EQ(both.until_ms, 5);
  EXPECT_EQ(parsedOk("?ip=10.0.0.1").ip, flow::IpAddress::parse("10.0.0.1"));
  EXPECT_EQ(parsedOk("?ip=::ffff:10.0.0.1").ip, flow::IpAddress::parse("10.0.0.1"));
  EXPECT_EQ(parsedOk("?ip=2001:DB8::1").ip, flow::IpAddress::parse("2001:db8::1"));
  EXPECT_EQ(parsedOk("?ip=%3A%3A1").ip, flow::IpAddress::parse("::1"));
  EXPECT_EQ(parsedOk("?port=1").port, 1);
  EXPECT_EQ(parsedOk("?port=65535").port, 65535);
  EXPECT_EQ(parsedOk("?protocol=tcp").protocol, 6);
  EXPECT_EQ(parsedOk("?protocol=TCP").protocol, 6);
  EXPECT_EQ(parsedOk("?protocol=6").protocol, 6);
  EXPECT_EQ(parsedOk("?protocol=Udp").protocol, 17);
  EXPECT_EQ(parsedOk("?protocol=17").protocol, 17);
  EXPECT_EQ(parsedOk("?direction=ingress").direction, Direction::kIngress);
  EXPECT_EQ(parsedOk("?direction=EGRESS").direction, Direction::kEgress);
  const HistoryQuery all =
      parsedOk("?limit=5&since=1&until=2&ip=10.0.0.1&port=443&protocol=tcp&direction=egress");
  EXPECT_EQ(all.limit, 5u);
  EXPECT_EQ(all.port, 443);
  EXPECT_EQ(all.direction, Direction::kEgress);
}

struct BadCase {
  const char* query;
  const char* names;  // the message must start with this
};

class HistoryBadParam : public ::testing::TestWithParam<BadCase> {};

TEST_P(HistoryBadParam, Answers400NamingTheParameter) {
  const BadCase c = GetParam();
  auto r = parseHistoryQuery(get(std::string("/api/history") + c.query));
  ASSERT_TRUE(std::holds_alternative<std::string>(r)) << c.query;
  const std::string& error = std::get<std::string>(r);
  EXPECT_EQ(error.rfind(c.names, 0), 0u) << c.query << " -> " << error;

  Router router;
  bool called = false;
  addHistoryRoute(router, [&](const HistoryQuery&) {
    called = true;
    return std::vector<flow::HistoryRow>{};
  });
  const Response response = router.route(get(std::string("/api/history") + c.query));
  EXPECT_EQ(response.status, 400u) << c.query;
  EXPECT_EQ(response.content_type, "application/json");
  EXPECT_EQ(json::parse(response.body)["error"], error);
  EXPECT_FALSE(called);
}

INSTANTIATE_TEST_SUITE_P(
    EveryBadValue, HistoryBadParam,
    ::testing::Values(
        BadCase{"?limit=0", "limit"}, BadCase{"?limit=-1", "limit"}, BadCase{"?limit=abc", "limit"},
        BadCase{"?limit=1.5", "limit"}, BadCase{"?limit=", "limit"}, BadCase{"?limit", "limit"},
        BadCase{"?limit=+5", "limit"}, BadCase{"?limit=0x10", "limit"},
        BadCase{"?limit=%201", "limit"}, BadCase{"?limit=10&limit=20", "limit"},
        BadCase{"?limit=000", "limit"}, BadCase{"?since=abc", "since"},
        BadCase{"?since=1.5", "since"}, BadCase{"?since=", "since"}, BadCase{"?since=1e3", "since"},
        BadCase{"?since=9223372036854775808", "since"}, BadCase{"?since=--1", "since"},
        BadCase{"?since=-", "since"}, BadCase{"?until=yesterday", "until"},
        BadCase{"?until=-9223372036854775809", "until"}, BadCase{"?since=10&until=5", "since"},
        BadCase{"?ip=1.2.3", "ip"}, BadCase{"?ip=1.2.3.4.5", "ip"}, BadCase{"?ip=256.0.0.1", "ip"},
        BadCase{"?ip=%5B::1%5D", "ip"}, BadCase{"?ip=fe80::1%25eth0", "ip"},
        BadCase{"?ip=example.com", "ip"}, BadCase{"?ip=10.0.0.0/8", "ip"}, BadCase{"?ip=", "ip"},
        BadCase{"?ip=+10.0.0.1", "ip"}, BadCase{"?port=0", "port"}, BadCase{"?port=65536", "port"},
        BadCase{"?port=-1", "port"}, BadCase{"?port=http", "port"}, BadCase{"?port=80.0", "port"},
        BadCase{"?port=99999999999999999999", "port"}, BadCase{"?port=", "port"},
        BadCase{"?protocol=icmp", "protocol"}, BadCase{"?protocol=1", "protocol"},
        BadCase{"?protocol=tcpx", "protocol"}, BadCase{"?protocol=", "protocol"},
        BadCase{"?direction=in", "direction"}, BadCase{"?direction=both", "direction"},
        BadCase{"?direction=", "direction"}, BadCase{"?unknown=1", "unknown parameter 'unknown'"},
        BadCase{"?Limit=5", "unknown parameter 'Limit'"},
        BadCase{"?limit=5&offset=10", "unknown parameter 'offset'"},
        BadCase{"?namespace=", "namespace: empty value"}, BadCase{"?namespace", "namespace"},
        BadCase{"?pod=", "pod: empty value"}, BadCase{"?workload=", "workload: empty value"},
        BadCase{"?namespace=a&namespace=b", "namespace: given more than once"},
        BadCase{"?pod=a&pod=a", "pod: given more than once"},
        BadCase{"?workload=a&workload=b", "workload: given more than once"},
        BadCase{"?pod=a%0Ab", "pod: holds a control character"},
        BadCase{"?namespace=%01", "namespace: holds a control character"},
        BadCase{"?workload=a%7F", "workload: holds a control character"},
        BadCase{"?Namespace=a", "unknown parameter 'Namespace'"},
        BadCase{"?ns=a", "unknown parameter 'ns'"}),
    [](const auto& info) { return "case" + std::to_string(info.index); });

TEST(HistoryRoute, PassesTheParsedQueryAndRendersRows) {
  Router router;
  HistoryQuery seen;
  addHistoryRoute(router, [&](const HistoryQuery& q) {
    seen = q;
    flow::HistoryRow a;
    a.id = 42;
    a.timestamp_ms = 1700000000123;
    a.src_ip = "10.0.0.1";
    a.dst_ip = "2001:db8::1";
    a.src_port = 1234;
    a.dst_port = 443;
    a.protocol = "TCP";
    a.length = 5000000000ull;
    a.packet_count = 7;
    a.direction = "egress";
    a.domain = "example.com";
    a.dst_hostname = "edge.example.com";
    flow::HistoryRow b;  // a row migrated from the original: no protocol/direction text
    b.id = 1;
    b.src_ip = "1.1.1.1";
    b.dst_ip = "2.2.2.2";
    return std::vector<flow::HistoryRow>{a, b};
  });
  const Response r = router.route(get("/api/history?limit=2&port=443"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(seen.limit, 2u);
  EXPECT_EQ(seen.port, 443);
  const json body = json::parse(r.body);
  ASSERT_TRUE(body.is_array());
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0], json::parse(R"({"id":42,"timestamp":1700000000123,"src_ip":"10.0.0.1",
      "dst_ip":"2001:db8::1","src_port":1234,"dst_port":443,"protocol":"TCP",
      "length":5000000000,"packet_count":7,"direction":"egress",
      "dst_hostname":"edge.example.com","domain":"example.com"})"));
  EXPECT_EQ(body[1], json::parse(R"({"id":1,"timestamp":0,"src_ip":"1.1.1.1",
      "dst_ip":"2.2.2.2","src_port":0,"dst_port":0,"protocol":null,"length":0,
      "packet_count":1,"direction":null})"));
  EXPECT_FALSE(body[1].contains("src_hostname"));
}

TEST(HistoryParams, ANameOver253CharactersIs400) {
  for (const char* name : {"namespace", "pod", "workload"}) {
    const std::string target = "/api/history?" + std::string(name) + "=" + std::string(254, 'x');
    auto r = parseHistoryQuery(get(target));
    ASSERT_TRUE(std::holds_alternative<std::string>(r)) << name;
    const std::string& error = std::get<std::string>(r);
    EXPECT_EQ(error.rfind(std::string(name) + ": '", 0), 0u) << error;
    EXPECT_NE(error.find("is longer than 253 characters"), std::string::npos) << error;
    EXPECT_LT(error.size(), 150u) << "the value is shortened in the message";

    Router router;
    addHistoryRoute(router, [](const HistoryQuery&) { return std::vector<flow::HistoryRow>{}; });
    const Response response = router.route(get(target));
    EXPECT_EQ(response.status, 400u);
    EXPECT_EQ(json::parse(response.body)["error"], error);
  }
}

TEST(HistoryRoute, RendersEachEndsKubernetesNamesOnlyWhenKnown) {
  Router router;
  HistoryQuery seen;
  addHistoryRoute(router, [&](const HistoryQuery& q) {
    seen = q;
    flow::HistoryRow pods;  // pod to pod
    pods.id = 7;
    pods.src_ip = "10.244.1.5";
    pods.dst_ip = "10.244.2.9";
    pods.protocol = "TCP";
    pods.direction = "egress";
    pods.src_namespace = "shop";
    pods.src_pod = "web-7d9f8-x2x4q";
    pods.src_workload = "web";
    pods.src_workload_kind = "Deployment";
    pods.dst_namespace = "db";
    pods.dst_pod = "pg-0";
    pods.dst_workload = "pg";
    pods.dst_workload_kind = "StatefulSet";
    flow::HistoryRow node;  // a bare pod (no kind known) to the node itself
    node.id = 6;
    node.src_ip = "10.244.1.6";
    node.dst_ip = "192.168.1.10";
    node.src_namespace = "tools";
    node.src_pod = "debug";
    node.dst_node = "node-a";
    return std::vector<flow::HistoryRow>{pods, node};
  });
  const Response r = router.route(get("/api/history?namespace=shop&pod=web-7d9f8-x2x4q"));
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(seen.ns, "shop");
  EXPECT_EQ(seen.pod, "web-7d9f8-x2x4q");
  EXPECT_FALSE(seen.workload.has_value());
  const json body = json::parse(r.body);
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0], json::parse(R"({"id":7,"timestamp":0,"src_ip":"10.244.1.5",
      "dst_ip":"10.244.2.9","src_port":0,"dst_port":0,"protocol":"TCP","length":0,
      "packet_count":1,"direction":"egress","src_namespace":"shop",
      "src_pod":"web-7d9f8-x2x4q","src_workload":"web","src_workload_kind":"Deployment",
      "dst_namespace":"db","dst_pod":"pg-0","dst_workload":"pg",
      "dst_workload_kind":"StatefulSet"})"));
  EXPECT_EQ(body[1], json::parse(R"({"id":6,"timestamp":0,"src_ip":"10.244.1.6",
      "dst_ip":"192.168.1.10","src_port":0,"dst_port":0,"protocol":null,"length":0,
      "packet_count":1,"direction":null,"src_namespace":"tools","src_pod":"debug",
      "dst_node":"node-a"})"));
}

TEST(HistoryRoute, EmptyHistoryIsAnEmptyArray) {
  Router router;
  addHistoryRoute(router, [](const HistoryQuery&) { return std::vector<flow::HistoryRow>{}; });
  const Response r = router.route(get("/api/history"));
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, "[]");
}

TEST(HistoryRoute, StorageFailureIs500WithAJsonBody) {
  Router router;
  addHistoryRoute(router, [](const HistoryQuery&) -> std::vector<flow::HistoryRow> {
    throw SystemError(EIO, "reading traffic.db: disk I/O error");
  });
  const Response r = router.route(get("/api/history"));
  EXPECT_EQ(r.status, 500u);
  const json body = json::parse(r.body);
  EXPECT_NE(body["error"].get<std::string>().find("disk I/O error"), std::string::npos);

  Router other;
  addHistoryRoute(other, [](const HistoryQuery&) -> std::vector<flow::HistoryRow> {
    throw std::runtime_error("boom");
  });
  const Response r2 = other.route(get("/api/history"));
  EXPECT_EQ(r2.status, 500u);
  EXPECT_TRUE(json::parse(r2.body).contains("error"));
}

TEST(HistoryRoute, ASlowQueryIs503) {
  Router router;
  addHistoryRoute(router, [](const HistoryQuery&) -> std::vector<flow::HistoryRow> {
    throw SystemError(ETIMEDOUT, "history query took longer than 5000 ms");
  });
  const Response r = router.route(get("/api/history?ip=10.0.0.1"));
  EXPECT_EQ(r.status, 503u);
  EXPECT_TRUE(json::parse(r.body).contains("error"));
}

TEST(HistoryRoute, OtherMethodsAre405) {
  Router router;
  addHistoryRoute(router, [](const HistoryQuery&) { return std::vector<flow::HistoryRow>{}; });
  const auto post = parseTarget("POST", "/api/history", "");
  ASSERT_TRUE(post.has_value());
  const Response r = router.route(*post);
  EXPECT_EQ(r.status, 405u);
}

TEST(HistoryRoute, InvalidUtf8InStoredTextDoesNotThrow) {
  flow::HistoryRow r;
  r.src_ip = "1.1.1.1";
  r.dst_ip = "2.2.2.2";
  r.domain = std::string("bad\xff\xfe");
  const std::string out = historyJson({r});
  EXPECT_TRUE(json::accept(out)) << out;
}

}  // namespace
}  // namespace ayaflow::api
