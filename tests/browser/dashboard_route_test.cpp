// SPDX-License-Identifier: MIT OR Apache-2.0
// GET / serves the embedded dashboard page, byte for byte web/dashboard.html, with the
// security headers; HEAD works like every GET route.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "ayaflow/api/dashboard_route.h"
#include "ayaflow/api/router.h"

namespace ayaflow::api {
namespace {

std::string header(const Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

Response get(const Router& router, const std::string& method, const std::string& target) {
  auto request = parseTarget(method, target, "");
  EXPECT_TRUE(request.has_value());
  return router.route(*request);
}

std::string sourcePage() {
  std::ifstream in(std::string(AYAFLOW_SOURCE_DIR) + "/web/dashboard.html", std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(DashboardRoute, ServesTheEmbeddedPageByteForByte) {
  Router router;
  addDashboardRoute(router);
  const Response r = get(router, "GET", "/");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
  const std::string source = sourcePage();
  ASSERT_FALSE(source.empty());
  EXPECT_EQ(r.body, source);
  EXPECT_EQ(dashboardPage(), source);
  EXPECT_EQ(r.body.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_LT(r.body.size(), 100u * 1024u);
}

TEST(DashboardRoute, QueryStringIsIgnored) {
  Router router;
  addDashboardRoute(router);
  const Response r = get(router, "GET", "/?refresh=1");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, std::string(dashboardPage()));
}

TEST(DashboardRoute, SecurityAndCacheHeaders) {
  Router router;
  addDashboardRoute(router);
  const Response r = get(router, "GET", "/");
  EXPECT_EQ(header(r, "Cache-Control"), "no-cache");
  EXPECT_EQ(header(r, "X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(header(r, "Referrer-Policy"), "no-referrer");
  const std::string csp = header(r, "Content-Security-Policy");
  EXPECT_EQ(csp, std::string(kDashboardCsp));
  EXPECT_EQ(csp.rfind("default-src 'none';", 0), 0u);
  EXPECT_NE(csp.find("connect-src 'self' ws: wss:;"), std::string::npos);
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos);
  // Nothing but 'self', inline and data: images: no host sources, no eval.
  EXPECT_EQ(csp.find("http"), std::string::npos);
  EXPECT_EQ(csp.find("*"), std::string::npos);
  EXPECT_EQ(csp.find("unsafe-eval"), std::string::npos);
}

TEST(DashboardRoute, HeadAnswersLikeGet) {
  Router router;
  addDashboardRoute(router);
  const Response head = get(router, "HEAD", "/");
  EXPECT_EQ(head.status, 200u);
  EXPECT_EQ(head.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(head.body.size(), dashboardPage().size());  // the server drops it, keeps the length
}

TEST(DashboardRoute, OtherMethodsAndPathsAreRejected) {
  Router router;
  addDashboardRoute(router);
  const Response post = get(router, "POST", "/");
  EXPECT_EQ(post.status, 405u);
  EXPECT_NE(header(post, "Allow").find("GET"), std::string::npos);
  EXPECT_EQ(get(router, "GET", "/index.html").status, 404u);
}

TEST(DashboardPage, IsSelfContained) {
  const std::string page(dashboardPage());
  // No external resources: every URL the page uses is relative to the agent.
  for (const char* bad :
       {"src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import", "fonts.googleapis", "cdn",
        "<script src", "<link rel=\"stylesheet\"", "innerHTML", "eval("}) {
    EXPECT_EQ(page.find(bad), std::string::npos) << bad;
  }
  // The routes it reads, relative so a path prefix behind a proxy keeps working.
  for (const char* route :
       {"'api/live'", "'api/stream'", "'metrics'", "'api/history?'", "ayaflow_events_lost_total",
        "ayaflow_deep_inspect_events_lost_total", "agent unreachable — retrying"}) {
    EXPECT_NE(page.find(route), std::string::npos) << route;
  }
}

}  // namespace
}  // namespace ayaflow::api
