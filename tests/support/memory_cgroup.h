// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// A cgroup v1 memory controller group for one test: the agent runs under the DaemonSet's
// memory limit, as the kubelet would run it.

#include <cstdint>
#include <string>
#include <vector>

namespace ayaflow::test {

/// A memory cgroup (v1, /sys/fs/cgroup/memory/<unique name>) with a hard limit. prefix()
/// runs a command inside it (give it to AgentProcess). The destructor moves any process
/// still inside to the root group and removes the group, also when a test fails.
/// Throws std::runtime_error when the controller is missing or the group cannot be made.
class MemoryCgroup {
 public:
  explicit MemoryCgroup(std::uint64_t limit_bytes);
  ~MemoryCgroup();
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  /// True when the cgroup v1 memory controller is mounted here.
  static bool available();

  /// A command prefix that moves itself into the group, then execs the rest.
  std::vector<std::string> prefix() const;

  const std::string& path() const { return path_; }
  /// memory.max_usage_in_bytes: the group's peak (anonymous memory and page cache).
  std::uint64_t peakBytes() const;
  /// memory.usage_in_bytes now.
  std::uint64_t usageBytes() const;
  /// Processes the kernel's OOM killer killed in this group (memory.oom_control oom_kill).
  std::uint64_t oomKills() const;

 private:
  std::string read(const std::string& file) const;
  std::string path_;
};

/// The peak resident set size of a live process (VmHWM), in bytes; 0 if it is gone.
std::uint64_t peakRssBytes(int pid);
/// The resident set size of a live process (VmRSS), in bytes; 0 if it is gone.
std::uint64_t rssBytes(int pid);

}  // namespace ayaflow::test
