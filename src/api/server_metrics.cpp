// SPDX-License-Identifier: MIT OR Apache-2.0
// The /metrics families of the HTTP server and the WebSocket stream (kept out of the Beast
// translation unit).
#include <array>

#include "ayaflow/api/http_server.h"
#include "ayaflow/api/stream_hub.h"
#include "ayaflow/common/metrics.h"

namespace ayaflow::api {

using Families = common::MetricFamilies;

std::vector<prometheus::MetricFamily> httpServerFamilies(const HttpServerStats& s) {
  Families f;
  f.gauge("ayaflow_http_connections", "Open HTTP connections, WebSocket sessions included.",
          static_cast<double>(s.active_connections));
  f.counter("ayaflow_http_connections_rejected_total",
            "Connections closed at accept because every pool (general and reserve) was full.",
            s.rejected_connections);
  f.counter("ayaflow_http_connections_denied_total",
            "Connections from addresses outside --allowed-ips, closed at accept (canned 403).",
            s.denied_connections);
  f.counter("ayaflow_http_connections_evicted_total",
            "Idle or slow connections closed to make room (per-client or total cap reached).",
            s.evicted_connections);
  f.counter("ayaflow_http_connections_reserve_total",
            "Connections admitted into the reserve (health and metrics only) while the general "
            "pool was full of busy connections.",
            s.reserve_connections);
  f.counter("ayaflow_http_reserve_refused_total",
            "Requests on a reserve connection for a path other than health or metrics (503).",
            s.reserve_refused);
  f.counter("ayaflow_http_handler_timeouts_total",
            "Asynchronous requests (history) answered 504 by the server after the handler "
            "timeout.",
            s.handler_timeouts);
  f.counter("ayaflow_http_responses_shed_total",
            "Large answers replaced by 503 because the bytes being written to clients reached "
            "the response memory limit.",
            s.responses_shed);
  f.gauge("ayaflow_http_response_bytes", "Response body bytes being written to clients now.",
          static_cast<double>(s.response_bytes));
  f.labelledCounter("ayaflow_http_request_errors_total",
                    "Requests refused before routing, by reason (400/413/431, WebSocket "
                    "handshake, read timeout).",
                    "reason",
                    {{"bad_request", s.request_errors[0]},
                     {"header_limit", s.request_errors[1]},
                     {"header_count", s.request_errors[2]},
                     {"body_limit", s.request_errors[3]},
                     {"chunk_extension", s.request_errors[4]},
                     {"trailer", s.request_errors[5]},
                     {"timeout", s.request_errors[6]},
                     {"websocket_handshake", s.request_errors[7]}});
  f.counter("ayaflow_http_accept_errors_total",
            "Failed accept() calls (for example out of file descriptors).", s.accept_errors);
  f.labelledCounter("ayaflow_http_responses_total",
                    "HTTP responses sent, by status class (1xx: WebSocket upgrades).", "code",
                    {{"1xx", s.responses[0]},
                     {"2xx", s.responses[1]},
                     {"3xx", s.responses[2]},
                     {"4xx", s.responses[3]},
                     {"5xx", s.responses[4]}});
  return f.take();
}

std::shared_ptr<const prometheus::Collectable> HttpServer::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [this] { return httpServerFamilies(stats()); });
}

std::vector<prometheus::MetricFamily> streamHubFamilies(const StreamHubStats& s) {
  Families f;
  f.gauge("ayaflow_stream_clients", "WebSocket clients subscribed to /api/stream.",
          static_cast<double>(s.clients));
  f.counter("ayaflow_stream_clients_connected_total",
            "WebSocket clients that subscribed to /api/stream.", s.clients_total);
  f.counter("ayaflow_stream_clients_dropped_total",
            "WebSocket clients closed because they fell too far behind.", s.clients_dropped);
  f.counter("ayaflow_stream_frames_published_total", "Frames published to /api/stream.",
            s.frames_published);
  f.counter("ayaflow_stream_frames_sent_total",
            "Frames written to WebSocket clients (one per client per frame).", s.frames_sent);
  return f.take();
}

std::shared_ptr<const prometheus::Collectable> StreamHub::metrics() const {
  return std::make_shared<const common::CallbackCollectable>(
      [this] { return streamHubFamilies(stats()); });
}

}  // namespace ayaflow::api
