// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ayaflow::api {

class StreamHub;

/// One parsed HTTP request, as handlers see it. Transport-independent (no Boost).
struct Request {
  std::string method;  ///< "GET", "HEAD", ... (as sent, case-sensitive)
  std::string target;  ///< raw request target, query included
  std::string path;    ///< percent-decoded path, query excluded
  /// Percent-decoded query parameters in order of appearance ('+' decodes to a space).
  std::vector<std::pair<std::string, std::string>> query;
  std::string body;

  /// Value of the first query parameter called `name`, if any.
  std::optional<std::string> queryParam(std::string_view name) const;
};

/// What a handler answers. The server adds Server, Content-Length and (for /api/*)
/// Cache-Control: no-store; `headers` are extra fields (e.g. Allow on a 405).
struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// A JSON error answer: `{"error":"<message>"}` with the given status.
Response jsonError(unsigned status, std::string_view message);

/// Answers one request. May throw: the router turns exceptions into a 500.
using Handler = std::function<Response(const Request&)>;

/// Delivers the answer of an asynchronous route. Callable from any thread; the first call
/// counts, later ones are ignored. Cheap to copy.
using Respond = std::function<void(Response)>;

/// Starts answering one request and returns at once; calls `respond` exactly once, now or
/// later, from any thread. `request` is valid only during the call: copy what is needed.
/// May throw before calling `respond`: the router answers 500 then.
using AsyncHandler = std::function<void(const Request&, Respond)>;

/// Splits a raw request target into path and query and percent-decodes both.
/// Returns nullopt (the server answers 400) when the target does not start with '/',
/// has a malformed %-escape, or decodes to a NUL byte.
std::optional<Request> parseTarget(std::string method, std::string_view target, std::string body);

/// Dispatches requests by exact path and method, to synchronous handlers (add()) or
/// asynchronous ones (addAsync(), e.g. GET /api/history, which must not hold a server
/// thread while a query runs).
///
/// - Unknown path: 404 JSON. Known path, other method: 405 JSON with an `Allow` header.
/// - HEAD on a path with a GET handler (and no HEAD handler) runs the GET handler; the
///   server drops the body and keeps its Content-Length.
/// - A handler that throws: 500 JSON; the first failure of each route is logged at error
///   level on the "api" logger, later ones at debug level.
///
/// Threads: add()/addAsync() only during setup, before the router is shared; route(),
/// dispatch() and hasPath() are then safe to call concurrently. Handlers run on server
/// threads and must be thread-safe themselves.
class Router {
 public:
  Router();
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  /// Registers `handler` for `method` on `path`; replaces an earlier registration.
  void add(std::string method, std::string path, Handler handler);

  /// Registers an asynchronous `handler` for `method` on `path`; replaces an earlier
  /// registration.
  void addAsync(std::string method, std::string path, AsyncHandler handler);

  /// Runs the matching handler and calls `respond` exactly once: at once for synchronous
  /// routes and errors (404, 405, 500), whenever the handler answers for asynchronous ones.
  /// Never throws.
  void dispatch(const Request& request, Respond respond) const;

  /// Runs the matching handler and returns its answer; never throws. On an asynchronous
  /// route it blocks until the handler answers (for tests and tools; the server uses
  /// dispatch()).
  Response route(const Request& request) const;

  /// True when some method is registered on `path`.
  bool hasPath(std::string_view path) const;

  /// Registers a WebSocket endpoint: the server hands a GET upgrade request on `path` to
  /// `hub` (see StreamHub); a plain GET or HEAD there is answered 426 JSON with
  /// `Upgrade: websocket`, other methods 405. `hub` is borrowed and must outlive the router.
  void addWebSocket(std::string path, StreamHub& hub);

  /// The hub registered with addWebSocket() on `path`, or nullptr.
  StreamHub* webSocket(std::string_view path) const;

 private:
  struct Route {
    Handler handler;     // synchronous route, or
    AsyncHandler async;  // asynchronous route
    mutable std::atomic<bool> failure_logged{false};
  };
  // Stable nodes (std::map, unique_ptr) so the atomics never move.
  using Methods = std::map<std::string, std::unique_ptr<Route>, std::less<>>;
  std::map<std::string, Methods, std::less<>> routes_;
  std::map<std::string, StreamHub*, std::less<>> websockets_;

  /// The route for `request`, or nullptr with `error` set (404/405).
  const Route* find(const Request& request, Response& error) const;
  static Response run(const Route& route, const Request& request);
  static void logFailure(const Route& route, const Request& request, const char* what);
};

}  // namespace ayaflow::api
