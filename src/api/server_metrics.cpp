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
            "Connections closed at accept because the connection cap was reached.",
            s.rejected_connections);
  f.counter("ayaflow_http_connections_denied_total",
            "Connections from addresses outside --allowed-ips (answered 403).",
            s.denied_connections);
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
