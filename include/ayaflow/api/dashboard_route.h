// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <string_view>

#include "ayaflow/api/router.h"

namespace ayaflow::api {

/// The Content-Security-Policy sent with the dashboard: only same-origin requests (and the
/// WebSocket to the same host), inline script and style, no frames, no external anything.
inline constexpr std::string_view kDashboardCsp =
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'";

/// The dashboard page (web/dashboard.html), embedded in the binary at build time.
/// Static storage; never changes at run time.
std::string_view dashboardPage();

/// Registers `GET /` (and so HEAD): the dashboard page as `text/html; charset=utf-8` with
/// `Cache-Control: no-cache`, the CSP above, `X-Content-Type-Options: nosniff` and
/// `Referrer-Policy: no-referrer`. Call during setup, like Router::add(); never throws
/// except on allocation failure.
void addDashboardRoute(Router& router);

}  // namespace ayaflow::api
