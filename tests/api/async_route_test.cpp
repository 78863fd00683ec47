// SPDX-License-Identifier: MIT OR Apache-2.0
// Asynchronous routes (Router::addAsync/dispatch) and the history route's worker pool,
// without a server (unit tier).
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "ayaflow/api/history_route.h"
#include "ayaflow/api/router.h"

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

Request get(const std::string& target, const std::string& method = "GET") {
  auto request = parseTarget(method, target, "");
  EXPECT_TRUE(request.has_value()) << target;
  return request.value_or(Request{});
}

/// Collects what dispatch() answers, from whichever thread.
struct Answers {
  Respond respond() {
    return [this](Response r) {
      std::lock_guard<std::mutex> lock(mutex);
      responses.push_back(std::move(r));
      threads.push_back(std::this_thread::get_id());
      cv.notify_all();
    };
  }
  bool waitFor(std::size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> lock(mutex);
    return cv.wait_for(lock, timeout, [&] { return responses.size() >= n; });
  }
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<Response> responses;       // guarded by mutex
  std::vector<std::thread::id> threads;  // guarded by mutex
};

TEST(AsyncRoute, AnswersFromAnotherThreadExactlyOnce) {
  Router router;
  std::vector<std::thread> workers;
  router.addAsync("GET", "/slow", [&workers](const Request& request, Respond respond) {
    workers.emplace_back([respond, path = request.path] {
      Response r;
      r.body = "\"" + path + "\"";
      respond(r);
      respond(jsonError(500, "second answer is ignored"));
    });
  });
  Answers answers;
  router.dispatch(get("/slow"), answers.respond());
  ASSERT_TRUE(answers.waitFor(1));
  for (auto& w : workers) w.join();
  std::lock_guard<std::mutex> lock(answers.mutex);
  ASSERT_EQ(answers.responses.size(), 1u);
  EXPECT_EQ(answers.responses[0].status, 200u);
  EXPECT_EQ(answers.responses[0].body, "\"/slow\"");
  EXPECT_NE(answers.threads[0], std::this_thread::get_id());
}

TEST(AsyncRoute, SynchronousRoutesAndErrorsAnswerAtOnceThroughDispatch) {
  Router router;
  router.add("GET", "/sync", [](const Request&) { return jsonError(201, "made"); });
  router.addAsync("GET", "/async",
                  [](const Request&, Respond respond) { respond(jsonError(202, "later")); });
  Answers answers;
  router.dispatch(get("/sync"), answers.respond());
  router.dispatch(get("/nope"), answers.respond());
  router.dispatch(get("/async", "POST"), answers.respond());
  router.dispatch(get("/async", "HEAD"), answers.respond());  // HEAD runs the GET handler
  std::lock_guard<std::mutex> lock(answers.mutex);
  ASSERT_EQ(answers.responses.size(), 4u);  // all synchronous here
  EXPECT_EQ(answers.responses[0].status, 201u);
  EXPECT_EQ(answers.responses[1].status, 404u);
  EXPECT_EQ(answers.responses[2].status, 405u);
  EXPECT_EQ(answers.responses[3].status, 202u);
}

TEST(AsyncRoute, HandlerThatThrowsIs500OnceEvenIfItAnswered) {
  Router router;
  router.addAsync("GET", "/throws",
                  [](const Request&, Respond) { throw std::runtime_error("boom"); });
  router.addAsync("GET", "/answers-then-throws", [](const Request&, Respond respond) {
    respond(jsonError(200, "fine"));
    throw std::runtime_error("late boom");
  });
  Answers answers;
  router.dispatch(get("/throws"), answers.respond());
  router.dispatch(get("/answers-then-throws"), answers.respond());
  std::lock_guard<std::mutex> lock(answers.mutex);
  ASSERT_EQ(answers.responses.size(), 2u);
  EXPECT_EQ(answers.responses[0].status, 500u);
  EXPECT_EQ(answers.responses[1].status, 200u);
}

TEST(AsyncRoute, RouteBlocksUntilTheAsyncAnswer) {
  Router router;
  router.addAsync("GET", "/later", [](const Request&, Respond respond) {
    std::thread([respond] {
      std::this_thread::sleep_for(20ms);
      respond(jsonError(299, "done"));
    }).detach();
  });
  EXPECT_EQ(router.route(get("/later")).status, 299u);
}

TEST(HistoryRouteAsync, QueriesRunOffTheCallingThreadAndAFullQueueIs503) {
  std::mutex mutex;
  std::condition_variable cv;
  bool released = false;
  std::atomic<int> started{0};
  HistoryRouteOptions options;
  options.threads = 1;
  options.queue_limit = 1;
  options.retry_after = 3s;
  Router router;
  const auto route = addHistoryRoute(
      router,
      [&](const flow::HistoryQuery&) {
        started.fetch_add(1);
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait_for(lock, 5s, [&] { return released; });
        return std::vector<flow::HistoryRow>{};
      },
      options);
  Answers answers;
  router.dispatch(get("/api/history"), answers.respond());  // runs
  while (started.load() == 0) std::this_thread::sleep_for(1ms);
  router.dispatch(get("/api/history"), answers.respond());          // queued
  router.dispatch(get("/api/history"), answers.respond());          // queue full: 503 at once
  router.dispatch(get("/api/history?limit=0"), answers.respond());  // 400 at once
  {
    std::lock_guard<std::mutex> lock(answers.mutex);
    ASSERT_EQ(answers.responses.size(), 2u);
    EXPECT_EQ(answers.responses[0].status, 503u);
    ASSERT_EQ(answers.responses[0].headers.size(), 1u);
    EXPECT_EQ(answers.responses[0].headers[0].first, "Retry-After");
    EXPECT_EQ(answers.responses[0].headers[0].second, "3");
    EXPECT_EQ(answers.responses[1].status, 400u);
  }
  EXPECT_EQ(route->stats().running, 1u);
  EXPECT_EQ(route->stats().queued, 1u);
  {
    std::lock_guard<std::mutex> lock(mutex);
    released = true;
  }
  cv.notify_all();
  ASSERT_TRUE(answers.waitFor(4));
  std::lock_guard<std::mutex> lock(answers.mutex);
  EXPECT_EQ(answers.responses[2].status, 200u);
  EXPECT_EQ(answers.responses[3].status, 200u);
  EXPECT_NE(answers.threads[2], std::this_thread::get_id());
  const HistoryRouteStats s = route->stats();
  EXPECT_EQ(s.ok, 2u);
  EXPECT_EQ(s.busy, 1u);
  EXPECT_EQ(s.bad_request, 1u);
}

TEST(HistoryRouteAsync, QueryTimeoutIs503WithRetryAfter) {
  Router router;
  const auto route =
      addHistoryRoute(router, [](const flow::HistoryQuery&) -> std::vector<flow::HistoryRow> {
        throw std::system_error(ETIMEDOUT, std::generic_category(), "over budget");
      });
  const Response r = router.route(get("/api/history?ip=10.0.0.1"));
  EXPECT_EQ(r.status, 503u);
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Retry-After");
  EXPECT_TRUE(json::parse(r.body).contains("error"));
  EXPECT_EQ(route->stats().timeout, 1u);
}

TEST(HistoryRouteAsync, DestructionAnswersQueuedRequests) {
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  Answers answers;
  {
    HistoryRouteOptions options;
    options.threads = 1;
    options.queue_limit = 4;
    Router router;
    std::atomic<bool> started{false};
    addHistoryRoute(
        router,
        [open, &started](const flow::HistoryQuery&) {
          started = true;
          open.wait_for(5s);
          return std::vector<flow::HistoryRow>{};
        },
        options);
    router.dispatch(get("/api/history"), answers.respond());
    while (!started) std::this_thread::sleep_for(1ms);
    router.dispatch(get("/api/history"), answers.respond());
    router.dispatch(get("/api/history"), answers.respond());
    gate.set_value();  // the running one finishes; the router's destruction joins
  }
  std::lock_guard<std::mutex> lock(answers.mutex);
  ASSERT_EQ(answers.responses.size(), 3u);  // nothing left unanswered
}

}  // namespace
}  // namespace ayaflow::api
