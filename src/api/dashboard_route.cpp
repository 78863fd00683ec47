// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/dashboard_route.h"

#include <cstddef>
#include <string>

namespace ayaflow::api {
namespace generated {
// Defined in the build tree by cmake/EmbedFile.cmake from web/dashboard.html.
extern const unsigned char kDashboardHtml[];
extern const std::size_t kDashboardHtmlSize;
}  // namespace generated

std::string_view dashboardPage() {
  return {reinterpret_cast<const char*>(generated::kDashboardHtml), generated::kDashboardHtmlSize};
}

void addDashboardRoute(Router& router) {
  router.add("GET", "/", [](const Request&) {
    Response response;
    response.content_type = "text/html; charset=utf-8";
    response.body = std::string(dashboardPage());
    response.headers = {{"Cache-Control", "no-cache"},
                        {"Content-Security-Policy", std::string(kDashboardCsp)},
                        {"X-Content-Type-Options", "nosniff"},
                        {"Referrer-Policy", "no-referrer"}};
    return response;
  });
}

}  // namespace ayaflow::api
