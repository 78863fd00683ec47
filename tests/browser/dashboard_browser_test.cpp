// SPDX-License-Identifier: MIT OR Apache-2.0
// Root tier: the real agent on a fresh veth pair with known UDP traffic, and its dashboard
// at / driven by headless Chromium (dashboard.test.mjs, playwright-core). The page must show
// the generated connection with its exact packet count, live figures that move, and survive
// an agent restart, and a real refused TCP connection shown as refused and highlighted.
// Screenshots land in the build directory.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "agent_process.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr int kDatagrams = 37;
constexpr std::size_t kPayload = 64;

/// Skips outside CI (fails under CI=true) when a tool the test drives is missing.
#define AYAFLOW_REQUIRE_TOOL(path, what)                                                 \
  do {                                                                                   \
    if (!fs::exists(path) && std::system("command -v " path " >/dev/null 2>&1") != 0) {  \
      if (inCi()) FAIL() << what " (" path ") is missing, and CI=true forbids skipping"; \
      GTEST_SKIP() << what " (" path ") is missing; run scripts/install-deps.sh";        \
    }                                                                                    \
  } while (0)

bool waitForFile(const fs::path& path, const std::atomic<bool>& done,
                 std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(path)) {
    if (done || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

/// A TCP connect from `from`:`local` to `to`:`remote` where nothing listens: the peer's
/// kernel answers the SYN with RST. Returns the connect's errno (ECONNREFUSED expected).
int refusedConnect(const std::string& from, std::uint16_t local, const std::string& to,
                   std::uint16_t remote) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(local);
  ::inet_pton(AF_INET, from.c_str(), &a.sin_addr);
  sockaddr_in b{};
  b.sin_family = AF_INET;
  b.sin_port = htons(remote);
  ::inet_pton(AF_INET, to.c_str(), &b.sin_addr);
  int err = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) {
    err = errno;
  }
  ::close(fd);
  return err;
}

/// The connection's TCP state in /api/live ("" when absent).
std::string liveState(AgentProcess& agent, const std::string& connection) {
  const auto live = nlohmann::json::parse(agent.get("/api/live").body);
  for (const auto& c : live.at("connections")) {
    if (c.at("connection") == connection) return c.at("stats").value("state", "");
  }
  return "";
}

bool livePackets(AgentProcess& agent, const std::string& connection, int packets) {
  const auto live = nlohmann::json::parse(agent.get("/api/live").body);
  for (const auto& c : live.at("connections")) {
    if (c.at("connection") == connection) {
      return c.at("stats").at("packets_count") == packets;
    }
  }
  return false;
}

TEST(DashboardBrowser, ShowsKnownTrafficLiveAndSurvivesRestart) {
  AYAFLOW_REQUIRE_ROOT();
  AYAFLOW_REQUIRE_TOOL("/usr/bin/chromium", "Debian's chromium");
  AYAFLOW_REQUIRE_TOOL("node", "Node.js");

  const fs::path here = AYAFLOW_BROWSER_TEST_DIR;
  if (!fs::exists(here / "node_modules" / "playwright-core")) {
    ASSERT_EQ(std::system(
                  ("npm ci --prefix '" + here.string() + "' --no-audit --no-fund --loglevel=error")
                      .c_str()),
              0);
  }

  VethPair link(88);
  auto agent = std::make_unique<AgentProcess>(
      std::vector<std::string>{"--interface", link.host(), "--quiet"});
  agent->waitReady();
  const std::uint16_t port = agent->port();

  // The known connection: 37 datagrams host -> peer, nothing back.
  udpExchange(link, false, 40088, 5088, kDatagrams, kPayload, 0, 0);
  const std::string connection = link.hostV4() + ":40088 -> " + link.peerV4() + ":5088";
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!livePackets(*agent, connection, kDatagrams) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(livePackets(*agent, connection, kDatagrams)) << agent->get("/api/live").body;

  // A refused TCP connection: nothing listens on the peer's port 5090.
  ASSERT_EQ(refusedConnect(link.hostV4(), 40090, link.peerV4(), 5090), ECONNREFUSED);
  const std::string refused = link.hostV4() + ":40090 -> " + link.peerV4() + ":5090";
  const auto refused_by = std::chrono::steady_clock::now() + 10s;
  while (liveState(*agent, refused) != "refused" && std::chrono::steady_clock::now() < refused_by) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(liveState(*agent, refused), "refused") << agent->get("/api/live").body;

  // Background traffic on another connection so the live totals keep moving.
  std::atomic<bool> done{false};
  int sink = -1;
  link.inNamespace([&] { sink = udpSocket(link.peerV4(), 5089); });
  const int source = udpSocket(link.hostV4(), 40089);
  std::thread background([&] {
    while (!done) {
      udpSend(source, link.peerV4(), 5089, 32);
      std::this_thread::sleep_for(100ms);
    }
  });

  const fs::path control =
      fs::temp_directory_path() / ("ayaflow-browser-" + std::to_string(getpid()));
  fs::remove_all(control);
  fs::create_directories(control);
  const std::string command = "AYAFLOW_REFUSED_CONNECTION='" + refused + "' node '" +
                              (here / "dashboard.test.mjs").string() +
                              "' 'http://127.0.0.1:" + std::to_string(port) + "/' '" + connection +
                              "' " + std::to_string(kDatagrams) + " '" + AYAFLOW_BROWSER_SHOT_DIR +
                              "' '" + control.string() + "'";
  int node_status = -1;
  std::thread node([&] {
    node_status = std::system(command.c_str());
    done = true;
  });

  // The restart the page must live through: stop the agent when asked, start a new one on
  // the same port once the page has said it is unreachable.
  bool restarted = false;
  if (waitForFile(control / "restart", done, 90s)) {
    agent->signal(SIGTERM);
    EXPECT_EQ(agent->waitExit(10s), std::optional<int>(0)) << agent->log();
    agent.reset();
    if (waitForFile(control / "saw-down", done, 30s)) {
      agent = std::make_unique<AgentProcess>(std::vector<std::string>{
          "--interface", link.host(), "--quiet", "--port", std::to_string(port)});
      agent->waitReady();
      restarted = true;
    }
  }
  node.join();
  done = true;
  background.join();
  close(source);
  close(sink);
  fs::remove_all(control);

  ASSERT_TRUE(WIFEXITED(node_status)) << "node did not exit normally: " << node_status;
  EXPECT_EQ(WEXITSTATUS(node_status), 0) << "dashboard.test.mjs failed (its output is above)";
  EXPECT_TRUE(restarted);
  EXPECT_TRUE(fs::exists(fs::path(AYAFLOW_BROWSER_SHOT_DIR) / "dashboard-laptop.png"));
}

}  // namespace
}  // namespace ayaflow::test
