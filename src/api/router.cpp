// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/api/router.h"

#include <atomic>
#include <exception>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>

#include "ayaflow/common/logging.h"

namespace ayaflow::api {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Percent-decodes `in`; `plus_is_space` for query components. nullopt on a malformed
/// escape or a decoded NUL (which no route or parameter can legitimately contain).
std::optional<std::string> percentDecode(std::string_view in, bool plus_is_space) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;  // needs two hex digits
      const int hi = hexValue(in[i + 1]);
      const int lo = hexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    if (c == '\0') return std::nullopt;
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::optional<std::string> Request::queryParam(std::string_view name) const {
  for (const auto& [key, value] : query) {
    if (key == name) return value;
  }
  return std::nullopt;
}

Response jsonError(unsigned status, std::string_view message) {
  Response response;
  response.status = status;
  const nlohmann::json body = {{"error", message}};
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

std::optional<Request> parseTarget(std::string method, std::string_view target, std::string body) {
  // Only origin-form ("/path?query") reaches this server; absolute-form is for proxies.
  if (target.empty() || target.front() != '/') return std::nullopt;

  Request request;
  request.method = std::move(method);
  request.target = std::string(target);
  request.body = std::move(body);

  const auto question = target.find('?');
  auto path = percentDecode(target.substr(0, question), false);
  if (!path) return std::nullopt;
  request.path = std::move(*path);

  if (question != std::string_view::npos) {
    std::string_view rest = target.substr(question + 1);
    while (!rest.empty()) {
      const auto amp = rest.find('&');
      const std::string_view item = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
      if (item.empty()) continue;  // "a=1&&b=2"
      const auto eq = item.find('=');
      auto key = percentDecode(item.substr(0, eq), true);
      auto value = eq == std::string_view::npos ? std::optional<std::string>(std::string{})
                                                : percentDecode(item.substr(eq + 1), true);
      if (!key || !value) return std::nullopt;
      request.query.emplace_back(std::move(*key), std::move(*value));
    }
  }
  return request;
}

Router::Router() = default;
Router::~Router() = default;

void Router::add(std::string method, std::string path, Handler handler) {
  auto route = std::make_unique<Route>();
  route->handler = std::move(handler);
  routes_[std::move(path)][std::move(method)] = std::move(route);
}

bool Router::hasPath(std::string_view path) const { return routes_.find(path) != routes_.end(); }

void Router::addWebSocket(std::string path, StreamHub& hub) {
  // Reached only by requests that are not upgrades (the server diverts those first).
  add("GET", path, [](const Request&) {
    Response response = jsonError(426, "websocket upgrade required");
    response.headers.emplace_back("Upgrade", "websocket");
    return response;
  });
  websockets_[std::move(path)] = &hub;
}

StreamHub* Router::webSocket(std::string_view path) const {
  const auto it = websockets_.find(path);
  return it == websockets_.end() ? nullptr : it->second;
}

void Router::addAsync(std::string method, std::string path, AsyncHandler handler) {
  auto route = std::make_unique<Route>();
  route->async = std::move(handler);
  routes_[std::move(path)][std::move(method)] = std::move(route);
}

const Router::Route* Router::find(const Request& request, Response& error) const {
  const auto path_it = routes_.find(request.path);
  if (path_it == routes_.end()) {
    error = jsonError(404, "not found");
    return nullptr;
  }
  const Methods& methods = path_it->second;

  auto method_it = methods.find(request.method);
  if (method_it == methods.end() && request.method == "HEAD") method_it = methods.find("GET");
  if (method_it != methods.end()) return method_it->second.get();

  // 405: list what the path does accept (HEAD is implied by GET).
  std::string allow;
  for (const auto& [method, route] : methods) {
    if (!allow.empty()) allow += ", ";
    allow += method;
    if (method == "GET" && methods.count("HEAD") == 0) allow += ", HEAD";
  }
  error = jsonError(405, "method not allowed");
  error.headers.emplace_back("Allow", std::move(allow));
  return nullptr;
}

void Router::dispatch(const Request& request, Respond respond) const {
  Response error;
  const Route* route = find(request, error);
  if (route == nullptr) return respond(std::move(error));
  if (!route->async) return respond(run(*route, request));

  // Exactly once, whoever calls first: the handler, or the catch below.
  auto once = std::make_shared<std::atomic<bool>>(false);
  Respond guarded = [once, respond](Response response) {
    if (!once->exchange(true)) respond(std::move(response));
  };
  try {
    route->async(request, guarded);
    return;
  } catch (const std::exception& e) {
    logFailure(*route, request, e.what());
  } catch (...) {
    logFailure(*route, request, "unknown exception");
  }
  guarded(jsonError(500, "internal error"));
}

Response Router::route(const Request& request) const {
  Response error;
  const Route* route = find(request, error);
  if (route == nullptr) return error;
  if (!route->async) return run(*route, request);
  auto answer = std::make_shared<std::promise<Response>>();
  std::future<Response> future = answer->get_future();
  dispatch(request, [answer](Response response) { answer->set_value(std::move(response)); });
  return future.get();
}

void Router::logFailure(const Route& route, const Request& request, const char* what) {
  // Log the first failure per route loudly; a route failing on every request must not
  // flood the log.
  const bool first = !route.failure_logged.exchange(true);
  logger("api")->log(first ? spdlog::level::err : spdlog::level::debug,
                     "handler for {} {} failed: {}", request.method, request.path, what);
}

Response Router::run(const Route& route, const Request& request) {
  try {
    return route.handler(request);
  } catch (const std::exception& e) {
    logFailure(route, request, e.what());
  } catch (...) {
    logFailure(route, request, "unknown exception");
  }
  return jsonError(500, "internal error");
}

}  // namespace ayaflow::api
