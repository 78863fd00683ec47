// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// The real ayaflow binary as a child process, for end-to-end tests.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "http_client.h"

namespace ayaflow::test {

/// Every thread's stack of a running process (gdb, when installed), for a test's report.
std::string threadStacks(pid_t pid);

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
std::uint16_t freePort();

class AgentProcess {
 public:
  /// Starts build/ayaflow with `args` (plus a free --port unless `args` has one);
  /// output goes to a log file.
  /// `prefix` runs before the binary (e.g. setpriv to drop capabilities, or
  /// `ip netns exec NS` to run it in another network namespace).
  /// `http_netns`: the network namespace (a name under /run/netns) the agent runs in, when
  /// the prefix put it there: its port is reachable only from inside, so waitReady() and
  /// get() connect from a thread that entered it. Empty: the caller's namespace.
  explicit AgentProcess(std::vector<std::string> args, std::vector<std::string> prefix = {},
                        std::string http_netns = {});
  /// Kills the agent (SIGKILL) if it is still running.
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  /// Waits until /api/health answers 200; throws with the log on failure.
  void waitReady(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  /// Sends a signal.
  void signal(int signo);
  /// Waits for exit; returns the exit status (or 128 + signal), nullopt on timeout (and then,
  /// for a timeout of 1 s or more, prints the agent's thread stacks and log to stderr).
  std::optional<int> waitExit(std::chrono::milliseconds timeout);
  HttpResult get(const std::string& target);
  std::uint16_t port() const { return port_; }
  std::string log() const;
  pid_t pid() const { return pid_; }
  /// The agent's database: in a temporary directory removed with this
  /// object, unless `args` chose --db-path.
  std::string dbPath() const { return dir_ + "/traffic.db"; }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  void start();

  HttpResult httpGetHere(const std::string& target, std::chrono::milliseconds timeout);

  std::string http_netns_;
  std::vector<std::string> argv_;  // prefix, binary and arguments, without an automatic --port
  bool auto_port_ = false;
  int port_retries_ = 0;
  std::string log_path_;
  std::string dir_;
};

}  // namespace ayaflow::test
