// SPDX-License-Identifier: MIT OR Apache-2.0
#include "agent_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "netns.h"

namespace ayaflow::test {

std::uint16_t freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    throw std::runtime_error("freePort");
  }
  close(fd);
  return ntohs(a.sin_port);
}

AgentProcess::AgentProcess(std::vector<std::string> args, std::vector<std::string> prefix,
                           std::string http_netns)
    : http_netns_(std::move(http_netns)) {
  auto given = std::find(args.begin(), args.end(), std::string("--port"));
  if (given != args.end() && given + 1 != args.end()) {
    port_ = static_cast<std::uint16_t>(std::stoi(*(given + 1)));
  } else {
    auto_port_ = true;
  }
  char dir_template[] = "/tmp/ayaflow-e2e-db-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    throw std::runtime_error("mkdtemp");
  }
  dir_ = dir_template;
  if (std::find(args.begin(), args.end(), std::string("--db-path")) == args.end()) {
    args.push_back("--db-path");
    args.push_back(dbPath());
  }
  args.insert(args.begin(), AYAFLOW_BINARY);
  args.insert(args.begin(), prefix.begin(), prefix.end());
  argv_ = std::move(args);
  start();
}

void AgentProcess::start() {
  std::vector<std::string> args = argv_;
  if (auto_port_) {
    port_ = freePort();
    args.push_back("--port");
    args.push_back(std::to_string(port_));
  }
  char tmpl[] = "/tmp/ayaflow-e2e-XXXXXX";
  int log_fd = mkstemp(tmpl);
  if (log_fd < 0) {
    throw std::runtime_error("mkstemp");
  }
  if (!log_path_.empty()) {
    unlink(log_path_.c_str());
  }
  log_path_ = tmpl;
  pid_ = fork();
  if (pid_ == 0) {
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  close(log_fd);
  if (pid_ < 0) {
    throw std::runtime_error("fork");
  }
}

AgentProcess::~AgentProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!log_path_.empty()) {
    unlink(log_path_.c_str());
  }
  if (!dir_.empty()) {
    std::filesystem::remove_all(dir_);
  }
}

void AgentProcess::waitReady(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (pid_ > 0 && waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      // The free port we picked was taken by a parallel test in between:
      // pick another.
      if (auto_port_ && ++port_retries_ <= 5 &&
          log().find("Address already in use") != std::string::npos) {
        start();
        continue;
      }
      throw std::runtime_error("agent exited during start-up:\n" + log());
    }
    try {
      if (httpGetHere("/api/health", std::chrono::seconds(1)).status == 200) {
        return;
      }
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw std::runtime_error("agent not ready in time:\n" + log());
}

void AgentProcess::signal(int signo) {
  if (pid_ > 0) {
    kill(pid_, signo);
  }
}

std::optional<int> AgentProcess::waitExit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pid_ > 0) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      // A wait for an exit that did not come: say where each thread is, for the failure's
      // report (not for a zero timeout, which only asks whether it is still running; gdb
      // would stop it for a while).
      if (timeout < std::chrono::seconds(1)) return std::nullopt;
      std::fprintf(stderr, "agent %d did not exit in time; its threads:\n%s\nits log:\n%s\n",
                   static_cast<int>(pid_), threadStacks(pid_).c_str(), log().c_str());
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

std::string threadStacks(pid_t pid) {
  if (::access("/usr/bin/gdb", X_OK) != 0) return "(no gdb to show them)";
  return shOutput("timeout 30 /usr/bin/gdb -p " + std::to_string(pid) +
                  " -batch -ex 'thread apply all bt' 2>&1 | grep -E '^(Thread|#)'");
}

HttpResult AgentProcess::get(const std::string& target) {
  return httpGetHere(target, std::chrono::seconds(5));
}

HttpResult AgentProcess::httpGetHere(const std::string& target, std::chrono::milliseconds timeout) {
  if (http_netns_.empty()) return httpGet("127.0.0.1", port_, target, timeout);
  HttpResult result;
  inNetns(http_netns_, [&] { result = httpGet("127.0.0.1", port_, target, timeout); });
  return result;
}

std::string AgentProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace ayaflow::test
