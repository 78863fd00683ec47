// SPDX-License-Identifier: MIT OR Apache-2.0
#include "memory_cgroup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ayaflow::test {
namespace {

constexpr const char* kRoot = "/sys/fs/cgroup/memory";

void writeFile(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  if (!out) throw std::runtime_error("cannot write '" + value + "' to " + path);
}

std::uint64_t statusField(int pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') {
      return std::stoull(line.substr(n + 1)) * 1024;  // "VmHWM:	  12345 kB"
    }
  }
  return 0;
}

}  // namespace

bool MemoryCgroup::available() {
  return ::access((std::string(kRoot) + "/memory.limit_in_bytes").c_str(), W_OK) == 0;
}

MemoryCgroup::MemoryCgroup(std::uint64_t limit_bytes) {
  if (!available())
    throw std::runtime_error("no cgroup v1 memory controller at " + std::string(kRoot));
  static std::atomic<int> counter{0};
  path_ = std::string(kRoot) + "/ayaflow-test-" + std::to_string(::getpid()) + "-" +
          std::to_string(counter.fetch_add(1));
  if (::mkdir(path_.c_str(), 0755) != 0) {
    throw std::runtime_error("mkdir " + path_ + ": " + std::strerror(errno));
  }
  try {
    writeFile(path_ + "/memory.limit_in_bytes", std::to_string(limit_bytes));
    // As in a pod: past the limit the OOM killer acts (no swap to hide in).
    writeFile(path_ + "/memory.swappiness", "0");
  } catch (...) {
    ::rmdir(path_.c_str());
    throw;
  }
}

MemoryCgroup::~MemoryCgroup() {
  // A process left inside (a test that failed before stopping its agent) keeps the group
  // alive: move it out, then remove the group (retried: the move is asynchronous).
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::ifstream procs(path_ + "/cgroup.procs");
    std::string pid;
    while (procs >> pid) {
      std::ofstream root(std::string(kRoot) + "/cgroup.procs");
      root << pid;
    }
    if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<std::string> MemoryCgroup::prefix() const {
  return {"/bin/sh", "-c", "echo $$ > '" + path_ + "/cgroup.procs' && exec \"$@\"", "sh"};
}

std::string MemoryCgroup::read(const std::string& file) const {
  std::ifstream in(path_ + "/" + file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::uint64_t MemoryCgroup::peakBytes() const {
  return std::stoull(read("memory.max_usage_in_bytes"));
}

std::uint64_t MemoryCgroup::usageBytes() const {
  return std::stoull(read("memory.usage_in_bytes"));
}

std::uint64_t MemoryCgroup::oomKills() const {
  std::istringstream in(read("memory.oom_control"));
  std::string key;
  std::uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill") return value;
  }
  return 0;
}

std::uint64_t peakRssBytes(int pid) { return statusField(pid, "VmHWM"); }
std::uint64_t rssBytes(int pid) { return statusField(pid, "VmRSS"); }

}  // namespace ayaflow::test
