// SPDX-License-Identifier: MIT OR Apache-2.0
// WS /api/stream on the real server (api tier): handshake, frames to many clients, slow
// and silent clients dropped without hurting the others, close frame on stop().
#include <poll.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api_test_util.h"
#include "ayaflow/api/core_routes.h"
#include "ayaflow/api/http_server.h"
#include "ayaflow/api/stream_hub.h"
#include "fake_live_source.h"
#include "http_client.h"
#include "ws_client.h"

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::HttpResult;
using test::WsClient;
using test::WsMessage;
using test_util::waitUntil;

constexpr const char* kHost = "127.0.0.1";

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test_util::raiseFdLimit(4096);
    source_.totals_value = {1234, 567890};
    source_.active = 7;
    addCoreRoutes(router_, source_);
    addStreamRoute(router_, hub_);
  }

  HttpServerOptions options() const {
    HttpServerOptions opts;
    opts.address = kHost;
    opts.port = 0;
    opts.threads = 2;
    return opts;
  }

  void startServer(HttpServerOptions opts) {
    server_ = std::make_unique<HttpServer>(std::move(opts), router_);
    server_->start();
  }
  void startServer() { startServer(options()); }
  std::uint16_t port() const { return server_->port(); }

  /// Waits until `n` clients are subscribed (the 101 can reach a client just before the
  /// server subscribes it).
  bool waitForClients(std::uint64_t n) {
    return waitUntil([&] { return hub_.stats().clients == n; }, 10s);
  }

  fake::FakeLiveSource source_;
  StreamHub hub_;
  Router router_;
  std::unique_ptr<HttpServer> server_;  // last: stopped before the hub and the router
};

TEST_F(StreamTest, HandshakeAndSpecFrameAsTextFrame) {
  startServer();
  WsClient client(kHost, port());
  ASSERT_TRUE(client.isOpen()) << client.handshake().status;
  EXPECT_EQ(client.handshake().header("server"), "ayaflow");
  EXPECT_EQ(client.handshake().header("upgrade"), "websocket");
  ASSERT_TRUE(waitForClients(1));

  hub_.publish(streamFrame(source_));
  const auto frame = client.read(5s);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->opcode, 1);  // text
  EXPECT_EQ(nlohmann::json::parse(frame->payload),
            nlohmann::json(
                {{"total_packets", 1234}, {"total_bytes", 567890}, {"active_connections", 7}}));
  EXPECT_TRUE(waitUntil([&] { return hub_.stats().frames_sent == 1; }, 5s));
  EXPECT_EQ(server_->stats().responses[0], 1u);  // one 101
}

TEST_F(StreamTest, LateClientGetsTheLatestFrameAtOnce) {
  startServer();
  hub_.publish("first");
  hub_.publish("latest");
  WsClient client(kHost, port());
  ASSERT_TRUE(client.isOpen());
  const auto frame = client.read(5s);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->payload, "latest");
}

TEST_F(StreamTest, PlainRequestsOnTheStreamPathAre426AndUpgradesElsewhereAreRouted) {
  startServer();
  HttpResult r = test::httpGet(kHost, port(), "/api/stream");
  EXPECT_EQ(r.status, 426);
  EXPECT_EQ(r.header("upgrade"), "websocket");
  EXPECT_EQ(nlohmann::json::parse(r.body),
            nlohmann::json({{"error", "websocket upgrade required"}}));

  WsClient not_a_stream(kHost, port(), "/api/health");
  EXPECT_EQ(not_a_stream.handshake().status, 200);  // answered as plain GET
  WsClient unknown(kHost, port(), "/api/nope");
  EXPECT_EQ(unknown.handshake().status, 404);
  EXPECT_EQ(hub_.stats().clients_total, 0u);
}

TEST_F(StreamTest, FramesReachThreeHundredClientsEverySecondOnTime) {
  constexpr int kClients = 300;
  constexpr int kFrames = 4;
  HttpServerOptions opts = options();
  opts.max_connections_per_client = 0;  // all 300 come from 127.0.0.1
  startServer(opts);
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<WsClient>(kHost, port()));
    ASSERT_TRUE(clients.back()->isOpen()) << "client " << i;
  }
  ASSERT_TRUE(waitForClients(kClients)) << hub_.stats().clients;
  EXPECT_EQ(server_->stats().active_connections, static_cast<std::uint64_t>(kClients));

  // The app's timer: one frame a second, from its own thread.
  std::mutex mutex;
  std::vector<Clock::time_point> published;
  std::thread publisher([&] {
    auto next = Clock::now();
    for (int i = 0; i < kFrames; ++i) {
      std::this_thread::sleep_until(next);
      {
        std::lock_guard<std::mutex> lock(mutex);
        published.push_back(Clock::now());
      }
      hub_.publish("{\"frame\":" + std::to_string(i) + "}");
      next += 1s;
    }
  });

  // One poll loop reads every client; record when each frame arrives.
  std::vector<std::vector<std::pair<std::string, Clock::time_point>>> received(kClients);
  const auto deadline = Clock::now() + std::chrono::seconds(kFrames + 5);
  auto complete = [&] {
    return std::all_of(received.begin(), received.end(),
                       [](const auto& r) { return r.size() >= static_cast<std::size_t>(kFrames); });
  };
  std::vector<pollfd> fds(kClients);
  while (!complete() && Clock::now() < deadline) {
    for (int i = 0; i < kClients; ++i) fds[i] = {clients[i]->fd(), POLLIN, 0};
    ::poll(fds.data(), fds.size(), 100);
    for (int i = 0; i < kClients; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      clients[i]->pump();
      while (auto m = clients[i]->next()) received[i].emplace_back(m->payload, Clock::now());
    }
  }
  publisher.join();

  ASSERT_EQ(published.size(), static_cast<std::size_t>(kFrames));
  for (int i = 0; i < kClients; ++i) {
    ASSERT_EQ(received[i].size(), static_cast<std::size_t>(kFrames)) << "client " << i;
    for (int f = 0; f < kFrames; ++f) {
      EXPECT_EQ(received[i][f].first, "{\"frame\":" + std::to_string(f) + "}");
      // Generous: the frame is a few dozen bytes on loopback.
      EXPECT_LT(received[i][f].second - published[f], 500ms) << "client " << i << " frame " << f;
    }
  }
  EXPECT_TRUE(waitUntil(
      [&] { return hub_.stats().frames_sent == static_cast<std::uint64_t>(kClients * kFrames); },
      5s));
  EXPECT_EQ(hub_.stats().clients_dropped, 0u);
}

TEST_F(StreamTest, StuckClientIsDroppedWhileOthersReceiveEveryFrame) {
  constexpr int kReaders = 5;
  constexpr int kFrames = 100;
  startServer();
  // Never reads, with a tiny receive window: the server's writes to it stall at once.
  test::ConnectOptions small;
  small.receive_buffer = 4096;
  WsClient stuck(kHost, port(), "/api/stream", 5s, small);
  ASSERT_TRUE(stuck.isOpen());
  std::vector<std::unique_ptr<WsClient>> readers;
  for (int i = 0; i < kReaders; ++i) readers.push_back(std::make_unique<WsClient>(kHost, port()));
  ASSERT_TRUE(waitForClients(kReaders + 1));

  // Big frames, fast: the stuck client's queue (8 frames) fills within a few frames.
  std::atomic<bool> done{false};
  std::atomic<long long> slowest_publish_us{0};
  std::thread publisher([&] {
    for (int i = 0; i < kFrames; ++i) {
      std::string frame = std::to_string(i) + ":" + std::string(64 * 1024, 'x');
      const auto start = Clock::now();
      hub_.publish(std::move(frame));
      const auto us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
      if (us > slowest_publish_us.load()) slowest_publish_us.store(us);
      std::this_thread::sleep_for(20ms);
    }
    done = true;
  });

  std::vector<int> counts(kReaders, 0);
  std::vector<bool> in_order(kReaders, true);
  const auto deadline = Clock::now() + 30s;
  std::vector<pollfd> fds(kReaders);
  while (Clock::now() < deadline &&
         !(done && std::all_of(counts.begin(), counts.end(), [](int c) { return c == kFrames; }))) {
    for (int i = 0; i < kReaders; ++i) fds[i] = {readers[i]->fd(), POLLIN, 0};
    ::poll(fds.data(), fds.size(), 50);
    for (int i = 0; i < kReaders; ++i) {
      readers[i]->pump();
      while (auto m = readers[i]->next()) {
        in_order[i] = in_order[i] && m->payload.rfind(std::to_string(counts[i]) + ":", 0) == 0;
        ++counts[i];
      }
    }
  }
  publisher.join();

  for (int i = 0; i < kReaders; ++i) {
    EXPECT_EQ(counts[i], kFrames) << "reader " << i;
    EXPECT_TRUE(in_order[i]) << "reader " << i;
  }
  const StreamHubStats s = hub_.stats();
  EXPECT_EQ(s.clients_dropped, 1u);
  EXPECT_EQ(s.clients, static_cast<std::uint64_t>(kReaders));
  // The publisher only posts: it never waits for a client. Generous bound.
  EXPECT_LT(slowest_publish_us.load(), 100000);
  // The stuck client finds its connection closed once it reads what was buffered.
  EXPECT_TRUE(stuck.waitForEof(10s));
}

TEST_F(StreamTest, SilentClientIsClosedAfterTheIdleTimeout) {
  auto opts = options();
  opts.idle_timeout = 1s;  // ping after 0.5 s; no pong by 1 s: closed
  startServer(opts);
  WsClient silent(kHost, port());
  WsClient lively(kHost, port());
  ASSERT_TRUE(silent.isOpen());
  ASSERT_TRUE(waitForClients(2));
  // `lively` answers pings (its reads do); `silent` never reads, so never answers.
  const auto until = Clock::now() + 4s;
  while (Clock::now() < until) {
    lively.read(100ms);
  }
  EXPECT_FALSE(lively.eof());
  EXPECT_EQ(hub_.stats().clients, 1u);
  EXPECT_EQ(server_->stats().active_connections, 1u);
  EXPECT_TRUE(silent.waitForEof(5s));
}

TEST_F(StreamTest, ClientMessagesAreIgnoredAndClientCloseIsAnswered) {
  startServer();
  auto client = std::make_unique<WsClient>(kHost, port());
  ASSERT_TRUE(waitForClients(1));
  client->sendText("hello server");
  hub_.publish("still here");
  auto frame = client->read(5s);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->payload, "still here");

  client->sendClose(1000);
  frame = client->read(5s);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->opcode, 8);
  EXPECT_EQ(frame->closeCode(), 1000);
  EXPECT_TRUE(client->waitForEof(5s));  // the server closed its side (FIN)
  // The server's teardown waits for the client's FIN (or its timer); a client closes its
  // socket once it has seen the server's.
  client.reset();
  EXPECT_TRUE(waitForClients(0));
  EXPECT_TRUE(waitUntil([&] { return server_->stats().active_connections == 0; }, 5s));
}

TEST_F(StreamTest, OversizedClientMessageClosesOnlyThatClient) {
  startServer();
  WsClient rude(kHost, port());
  WsClient polite(kHost, port());
  ASSERT_TRUE(waitForClients(2));
  rude.sendText(std::string(64 * 1024, 'z'));  // above the 4 KiB message limit
  EXPECT_TRUE(rude.waitForEof(5s));
  EXPECT_TRUE(waitForClients(1));
  hub_.publish("for the polite one");
  const auto frame = polite.read(5s);
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->payload, "for the polite one");
}

TEST_F(StreamTest, StopSendsGoingAwayToEveryClientAndReturnsPromptly) {
  startServer();
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 3; ++i) clients.push_back(std::make_unique<WsClient>(kHost, port()));
  ASSERT_TRUE(waitForClients(3));
  // The clients read in their own threads so they answer the close handshake at once.
  std::vector<std::optional<WsMessage>> closes(clients.size());
  std::vector<char> eofs(clients.size(), 0);  // not vector<bool>: written by several threads
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    threads.emplace_back([&, i] {
      closes[i] = clients[i]->read(10s);
      eofs[i] = clients[i]->waitForEof(10s);
      clients[i].reset();  // like a browser: close the socket once the server has
    });
  }
  const auto start = Clock::now();
  server_->stop();
  EXPECT_LT(Clock::now() - start, 2s);
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < clients.size(); ++i) {
    ASSERT_TRUE(closes[i].has_value()) << "client " << i;
    EXPECT_EQ(closes[i]->opcode, 8);
    EXPECT_EQ(closes[i]->closeCode(), 1001);  // going away
    EXPECT_TRUE(eofs[i]);
  }
  EXPECT_EQ(hub_.stats().clients, 0u);
  hub_.publish("after stop");  // no session left to post to
}

TEST_F(StreamTest, StopClosesAClientThatNeverAnswersTheCloseFrame) {
  startServer();
  test::ConnectOptions small;
  small.receive_buffer = 4096;
  WsClient stuck(kHost, port(), "/api/stream", 5s, small);
  ASSERT_TRUE(waitForClients(1));
  for (int i = 0; i < 4; ++i) hub_.publish(std::string(64 * 1024, 'y'));  // a write stalls
  const auto start = Clock::now();
  server_->stop();
  EXPECT_LT(Clock::now() - start, 3s);  // bounded by the 1 s close timeout
  EXPECT_EQ(hub_.stats().clients, 0u);
}

}  // namespace
}  // namespace ayaflow::api
