// SPDX-License-Identifier: MIT OR Apache-2.0
// Root tier: the real agent in a cgroup-v1 memory cgroup of the DaemonSet's limit (128 MiB),
// attached to a veth of its own, replaying the HTTP rows of issue 21 against it: a 100 MB
// chunk extension, trailers over 64 KiB, 1 100 idle connections from a denied address,
// 1 100 half-open (slowloris) connections and bad WebSocket handshakes. Throughout, health
// probes must answer within their deadline, the packets sent across the veth meanwhile must
// be counted exactly, the agent must stay up (no OOM kill) and its cgroup's peak memory must
// stay under a stated bound. Loopback and the test's own namespace only; bounded loops.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent_process.h"
#include "api_test_util.h"
#include "http_client.h"
#include "netns.h"
#include "root_guard.h"

namespace ayaflow::api {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using test::AgentProcess;
using test::HttpConnection;
using test::HttpResult;

constexpr const char* kHost = "127.0.0.1";
constexpr std::uint64_t kDaemonSetLimit = 128ull << 20;
/// The bound this test states for the agent's cgroup peak (RSS + page cache + kernel memory
/// charged to it) under all of the attacks: well inside the limit.
constexpr std::uint64_t kPeakBound = 96ull << 20;

/// A cgroup-v1 memory cgroup of its own, removed (once empty) by the destructor.
class MemoryCgroup {
 public:
  explicit MemoryCgroup(std::uint64_t limit)
      : path_("/sys/fs/cgroup/memory/ayaflow-http-test-" + std::to_string(::getpid())) {
    if (::mkdir(path_.c_str(), 0755) != 0 && errno != EEXIST) {
      throw std::runtime_error("mkdir " + path_ + ": " + std::strerror(errno));
    }
    write("memory.limit_in_bytes", std::to_string(limit));
  }
  ~MemoryCgroup() {
    for (int i = 0; i < 50; ++i) {  // the agent may take a moment to leave it
      if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
      std::this_thread::sleep_for(100ms);
    }
  }
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  static bool available() { return ::access("/sys/fs/cgroup/memory/cgroup.procs", W_OK) == 0; }

  /// A command prefix that moves the process into the cgroup, then execs the rest.
  std::vector<std::string> prefix() const {
    return {"sh", "-c", "echo $$ > " + path_ + "/cgroup.procs && exec \"$@\"", "sh"};
  }
  /// True when `pid` is a member.
  bool contains(pid_t pid) const {
    std::ifstream in(path_ + "/cgroup.procs");
    pid_t member = 0;
    while (in >> member) {
      if (member == pid) return true;
    }
    return false;
  }
  std::uint64_t value(const char* file) const {
    std::ifstream in(path_ + "/" + file);
    std::uint64_t v = 0;
    in >> v;
    return v;
  }
  /// "oom_kill N" of memory.oom_control (0 when the kernel does not report it).
  std::uint64_t oomKills() const {
    std::ifstream in(path_ + "/memory.oom_control");
    std::string key;
    std::uint64_t v = 0;
    while (in >> key >> v) {
      if (key == "oom_kill") return v;
    }
    return 0;
  }

 private:
  void write(const char* file, const std::string& text) const {
    std::ofstream out(path_ + "/" + file);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write " + path_ + "/" + file);
  }
  std::string path_;
};

/// A plain TCP connection from `source` that sends `hello` and then nothing.
class RawSocket {
 public:
  RawSocket(std::uint16_t port, const char* source, std::string_view hello) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &local.sin_addr);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0 &&
          ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (ok_ && !hello.empty()) ::send(fd_, hello.data(), hello.size(), MSG_NOSIGNAL);
  }
  ~RawSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  bool ok() const { return ok_; }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

class AgentMemcgTest : public ::testing::Test {
 protected:
  /// One health probe; its latency in ms, or -1 when it failed or missed the deadline.
  double probe(std::uint16_t port) {
    const auto start = Clock::now();
    try {
      const HttpResult r = test::httpGet(kHost, port, "/api/health", 2s);
      if (r.status != 200) return -1;
    } catch (const std::exception&) {
      return -1;
    }
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  }

  /// `count` probes; every one must answer; records the latencies.
  void probes(std::uint16_t port, int count, const char* during) {
    for (int i = 0; i < count; ++i) {
      const double ms = probe(port);
      EXPECT_GE(ms, 0.0) << "health probe " << i << " failed during " << during;
      if (ms >= 0) latencies_.push_back(ms);
    }
  }

  std::vector<double> latencies_;
};

std::uint64_t totalPackets(std::uint16_t port) {
  const HttpResult r = test::httpGet(kHost, port, "/api/stats", 5s);
  return nlohmann::json::parse(r.body).at("total_packets").get<std::uint64_t>();
}

TEST_F(AgentMemcgTest, HttpAttacksUnderTheDaemonSetMemoryLimit) {
  AYAFLOW_REQUIRE_ROOT();
  if (!MemoryCgroup::available()) GTEST_SKIP() << "no cgroup-v1 memory controller";
  ASSERT_GE(test_util::raiseFdLimit(8192), 4096u);  // the agent inherits it

  test::VethPair link(61);
  MemoryCgroup cgroup(kDaemonSetLimit);  // outlives the agent (destroyed after it)
  AgentProcess agent({"--interface", link.host(), "--quiet", "--allowed-ips", "127.0.0.1/32"},
                     cgroup.prefix());
  agent.waitReady();
  ASSERT_TRUE(cgroup.contains(agent.pid())) << "the agent is not in the memory cgroup";
  const std::uint16_t port = agent.port();
  probes(port, 5, "warm-up");
  const std::uint64_t packets_before = totalPackets(port);

  // Traffic across the veth all along: UDP from the namespace to the host end.
  constexpr int kPackets = 3000;
  std::thread traffic([&] {
    link.inNamespace([&] {
      const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(9);
      ::inet_pton(AF_INET, link.hostV4().c_str(), &to.sin_addr);
      for (int i = 0; i < kPackets; ++i) {
        ::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        if (i % 100 == 99) std::this_thread::sleep_for(20ms);  // spread over the attacks
      }
      ::close(fd);
    });
  });

  // 1. A 100 MB chunk extension.
  {
    HttpConnection c(kHost, port);
    ASSERT_TRUE(
        c.sendRaw("POST /api/health HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n1;"));
    const std::string block(64 * 1024, 'e');
    std::size_t sent = 0;
    const auto begin = Clock::now();
    while (sent < (100u << 20) && Clock::now() - begin < 20s) {
      if (!c.sendRaw(block, 2s)) break;
      sent += block.size();
      pollfd readable{c.fd(), POLLIN, 0};
      if (::poll(&readable, 1, 0) > 0) break;
    }
    EXPECT_EQ(c.readResponse().status, 400);
    EXPECT_LT(sent, 16u << 20);
  }
  probes(port, 5, "chunk extension");

  // 2. Trailers over 64 KiB.
  const std::string trailer =
      "POST /api/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\nX-Trailer: " +
      std::string(70 * 1024, 't') + "\r\n\r\n";
  for (int i = 0; i < 30; ++i) {
    HttpConnection c(kHost, port);
    c.sendRaw(trailer);
    EXPECT_EQ(c.readResponse().status, 431) << "trailer " << i;
  }
  probes(port, 5, "trailers");

  // 3. Bad WebSocket handshakes are JSON.
  {
    const HttpResult r = test::httpRequest(
        kHost, port, "GET", "/api/stream",
        {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}});
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.header("content-type"), "application/json");
  }

  // 4. 1 100 idle connections from a denied address, held open.
  {
    std::vector<std::unique_ptr<RawSocket>> denied;
    for (int i = 0; i < 1100; ++i) {
      denied.push_back(std::make_unique<RawSocket>(port, "127.0.0.2", ""));
    }
    probes(port, 25, "1100 denied idle connections");
  }

  // 5. 1 100 half-open requests (slowloris) from the allowed address, held open.
  {
    std::vector<std::unique_ptr<RawSocket>> slow;
    for (int i = 0; i < 1100; ++i) {
      slow.push_back(
          std::make_unique<RawSocket>(port, "127.0.0.1", "GET /api/health HTTP/1.1\r\nX: 1\r\n"));
    }
    probes(port, 29, "1100 slowloris connections");
  }

  traffic.join();
  // Every packet sent across the veth was counted, exactly.
  const std::uint64_t expected = packets_before + kPackets;
  EXPECT_TRUE(test_util::waitUntil([&] { return totalPackets(port) >= expected; }, 10s));
  EXPECT_EQ(totalPackets(port), expected);

  // Up, never OOM-killed, peak well inside the limit; nothing logged (--quiet).
  EXPECT_FALSE(agent.waitExit(0ms).has_value()) << agent.log();
  EXPECT_EQ(cgroup.oomKills(), 0u);
  const std::uint64_t peak = cgroup.value("memory.max_usage_in_bytes");
  std::sort(latencies_.begin(), latencies_.end());
  ASSERT_FALSE(latencies_.empty());
  std::printf(
      "agent in a %llu MiB memory cgroup: peak %.1f MiB; %zu health probes: median %.2f ms, "
      "max %.2f ms\n",
      static_cast<unsigned long long>(kDaemonSetLimit >> 20), static_cast<double>(peak) / (1 << 20),
      latencies_.size(), latencies_[latencies_.size() / 2], latencies_.back());
  EXPECT_LT(peak, kPeakBound);
  EXPECT_LT(latencies_[latencies_.size() / 2], 100.0);
  EXPECT_EQ(agent.log().find("HTTP"), std::string::npos) << agent.log();
}

}  // namespace
}  // namespace ayaflow::api
