// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once
// A private, real containerd (1.6+, with its CRI plugin) that runs pod sandboxes on this
// machine, for tests that need a container runtime to name pods: the CRI client, the pod
// watcher and the agent end to end.
//
// Everything is its own: root, state, socket, runc state, CNI configuration and IPAM data live
// in one temporary directory; pods join a CNI bridge with its own name and subnet. A system
// containerd (if any) is never touched. Nothing is pulled: the sandbox ("pause") image is
// built from the static busybox of Debian's `busybox-static` and imported with `ctr`.
//
// Needs root, `containerd`, `ctr`, `runc`, `containerd-shim-runc-v2` and `nsenter` on PATH,
// the CNI plugins (`containernetworking-plugins`, in /usr/lib/cni) and a static /bin/busybox
// (AYAFLOW_REQUIRE_CONTAINERD() below checks).
//
// Not thread-safe: one thread drives a fixture at a time. Fixtures may follow each other (the
// image is built once per process) or run side by side (each has its own subnet and bridge).
// A test process killed before its destructors ran (a timeout, a crash) leaves its fixture
// behind; the next fixture constructed on the machine removes it.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "root_guard.h"

namespace ayaflow::test {

struct ContainerdOptions {
  /// Pod subnet ("10.<x>.<y>.0/24"). Empty: a /24 under 10.224.0.0/12 derived from the PID
  /// and a per-process counter, skipping subnets this machine already routes.
  std::string subnet;
  /// Optional host-local range inside the subnet. host-local hands addresses out in rotation,
  /// so a released address is not reused at once; a range of one address (start == end)
  /// gives a new pod the address of a removed one.
  std::string range_start, range_end;
  /// Dual stack: pods also get an IPv6 address (Pod::ip6) from subnet6, by default the /64
  /// fd00:ac:B:C::/64 that goes with the IPv4 subnet 10.B.C.0/24 (B, C in hex).
  bool ipv6 = false;
  std::string subnet6;
  /// Where the CNI plugins are.
  std::string cni_bin_dir = "/usr/lib/cni";
};

class Containerd {
 public:
  struct PodSpec {
    std::string name;
    std::string ns = "default";
    std::string uid;  // empty: a unique one is made up
    std::map<std::string, std::string> labels, annotations;
    bool host_network = false;  // the node's network namespace (no CNI, no pod IP)
  };
  struct Pod {
    std::string id, name, ns, uid;
    std::string ip;   // from PodSandboxStatus; empty with host_network
    std::string ip6;  // with ContainerdOptions::ipv6 (PodSandboxStatus additional_ips)
    // A path usable by setns (inNetns(), nsenter --net=): /var/run/netns/cni-..., which
    // containerd keeps until RemovePodSandbox, valid while the daemon is down; with
    // host_network /proc/PID/ns/net (the node's).
    std::string netns;
    int pid = 0;            // the sandbox's PID 1 (the pause process), as the host sees it
    std::string host_veth;  // the host end of the pod's eth0 (on bridge()); empty with host_network
  };
  /// A pod as ListPodSandbox returns it.
  struct Listed {
    std::string id, name, ns, uid;
    bool ready = false;
    std::map<std::string, std::string> labels, annotations;
  };

  /// Creates the bridge (up, with the gateway address), writes the configuration and the CNI
  /// conflist (bridge with isGateway, ipMasq false and host-local IPAM with its own dataDir,
  /// then loopback), starts the daemon, imports the pause image and returns once CRI answers
  /// Version. Throws std::runtime_error (with the daemon's log) when it cannot, e.g. when
  /// an explicit subnet is in use; nothing is left behind then.
  explicit Containerd(ContainerdOptions options = {});
  /// Stops and removes every sandbox (restarting the daemon for that if it was stopped),
  /// stops the daemon, then removes what might be left of it: processes naming its directory
  /// (shims) and their children, mounts under its directory, its pods' network namespaces,
  /// the bridge, CNI result cache entries, shim sockets, the pods' cgroups, the directory.
  ~Containerd();
  Containerd(const Containerd&) = delete;
  Containerd& operator=(const Containerd&) = delete;

  /// A /24 under 10.224.0.0/12 that no route on this machine covers yet (derived from the PID
  /// and a per-process counter): for a test that needs the subnet before the fixture, to
  /// give a range inside it.
  static std::string freeSubnet();

  std::string endpoint() const { return "unix://" + socketPath(); }  // for a CRI client
  std::string socketPath() const;
  const std::string& dir() const { return dir_; }
  const std::string& subnet() const { return subnet_; }
  const std::string& bridge() const { return bridge_; }    // the CNI bridge's name
  const std::string& gateway() const { return gateway_; }  // its address (first of the subnet)
  const std::string& subnet6() const { return subnet6_; }  // with ContainerdOptions::ipv6
  const std::string& gateway6() const { return gateway6_; }
  const std::string& cniNetwork() const { return network_; }
  /// The pods' cgroup parent ("/ayaflow-test-PID-N", cgroupfs driver).
  std::string cgroupParent() const { return "/" + network_; }
  /// What CRI Version said at start: "containerd 1.6.20~ds1" (runtime name and version).
  const std::string& runtimeVersion() const { return runtime_version_; }

  /// How long the constructor took, and the part of it spent on the pause image.
  std::chrono::milliseconds startTime() const { return start_time_; }
  std::chrono::milliseconds imageTime() const { return image_time_; }

  /// The daemon goes away (SIGTERM, waited for); pods and their shims keep running. For
  /// "runtime unreachable" tests.
  void stopDaemon();
  /// The daemon comes back on the same state and socket; returns once CRI answers.
  void startDaemon();
  bool daemonRunning() const { return daemon_pid_ > 0; }
  int daemonPid() const { return daemon_pid_; }
  /// PIDs of this daemon's shims (containerd-shim-runc-v2 serving this socket).
  std::vector<int> shimPids() const;

  /// RunPodSandbox then PodSandboxStatus (verbose, for the netns and PID). Throws
  /// std::runtime_error with the runtime's message. This and the other CRI calls below
  /// throw while the daemon is stopped.
  Pod runPod(const PodSpec& spec);
  /// StopPodSandbox: the pause process is killed, the pod's network is torn down (its IP
  /// released); the pod stays listed as NOTREADY.
  void stopPod(const std::string& id);
  /// StopPodSandbox + RemovePodSandbox.
  void removePod(const std::string& id);
  /// Runs `ctr --address SOCKET ARGS` against this daemon (e.g. "-n k8s.io images ls -q");
  /// returns its output (stdout and stderr), throws with it on failure.
  std::string ctr(const std::string& args) const;
  /// Imports an image archive (OCI or Docker format, as `podman save` writes) into the CRI
  /// plugin's namespace (k8s.io), unpacked for the native snapshotter.
  void importImage(const std::string& archive) const;

  /// ListPodSandbox (all pods, any state).
  std::vector<Listed> listPods();
  /// CRI Version with a short deadline: false while the runtime is unreachable.
  bool answers();

  /// The end of the daemon's log (stdout and stderr), for a failing test's message.
  std::string daemonLog() const;

  /// Every sandbox ID runPod started.
  const std::vector<std::string>& sandboxIds() const { return sandboxes_; }
  /// Every network namespace path handed out by runPod (kept after removePod, so a test can
  /// check that it is gone).
  const std::vector<std::string>& netnsPaths() const { return netns_paths_; }
  /// Mount points under dir() (from /proc/self/mountinfo).
  std::vector<std::string> mounts() const;

 private:
  struct Rpc;
  void createBridge(const ContainerdOptions& options);
  void writeConfig(const ContainerdOptions& options);
  void spawnDaemon();
  void waitForCri();
  void cleanup() noexcept;
  /// fixture.json in dir(): owner and what to remove, for the sweep of a later fixture when
  /// this process dies without its destructor.
  void saveState() const;

  std::string dir_, subnet_, bridge_, gateway_, subnet6_, gateway6_, network_, runtime_version_;
  int daemon_pid_ = 0;
  std::unique_ptr<Rpc> rpc_;
  std::vector<std::string> netns_paths_, sandboxes_;
  std::chrono::milliseconds start_time_{0}, image_time_{0};
};

/// Empty when this machine can run the fixture (containerd, ctr, runc, the runc shim, nsenter,
/// the CNI bridge plugin, a static /bin/busybox); otherwise what is missing.
std::string containerdMissing();

/// Runs fn on a helper thread inside the pod's network namespace (see inNetns()).
void inPod(const Containerd::Pod& pod, const std::function<void()>& fn);
/// Runs a shell command inside the pod's network namespace (nsenter --net=); the host's
/// tools and files, the pod's network. podSh throws with the output on failure;
/// podShOutput returns stdout.
void podSh(const Containerd::Pod& pod, const std::string& command);
std::string podShOutput(const Containerd::Pod& pod, const std::string& command);

}  // namespace ayaflow::test

/// For tests that need the fixture: root (AYAFLOW_REQUIRE_ROOT) and the packages. Without
/// them the test skips, and fails under CI=true.
#define AYAFLOW_REQUIRE_CONTAINERD()                                            \
  do {                                                                          \
    AYAFLOW_REQUIRE_ROOT();                                                     \
    const std::string ayaflow_missing_ = ::ayaflow::test::containerdMissing();  \
    if (!ayaflow_missing_.empty()) {                                            \
      if (::ayaflow::test::inCi()) FAIL() << ayaflow_missing_ << " (CI=true)";  \
      GTEST_SKIP() << ayaflow_missing_ << " (Debian: containerd runc "          \
                   << "containernetworking-plugins busybox-static util-linux)"; \
    }                                                                           \
  } while (0)
