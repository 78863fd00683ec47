// SPDX-License-Identifier: MIT OR Apache-2.0
// The container image end to end (root tier): the image built from docker/Dockerfile
// (scripts/image.sh, an OCI archive made once per build tree by the image_build test) runs
// under a real containerd the way a node runs the DaemonSet's pod: what k8s/daemonset.yaml
// says is read from it (image, ConfigMap environment, capabilities, read-only root, no
// privilege escalation, hostPath mounts, memory and CPU limits, probe path, grace period)
// and handed to `ctr run` with the host's network namespace (hostNetwork: true) and nothing
// more (no privileged mode). The agent attaches to this test's own veth, counts exactly what
// an AF_PACKET capture saw, answers the probes, serves /metrics, names a pod over the
// runtime socket mounted read-only, stops on SIGTERM within the grace period with every
// program detached and every row written to the hostPath, and after a SIGKILL restarts
// with exactly one copy of its programs.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent_checks.h"
#include "agent_process.h"
#include "ayaflow/bpf/tc_attachment.h"
#include "containerd_fixture.h"
#include "http_client.h"
#include "netns.h"
#include "root_guard.h"

#ifndef AYAFLOW_IMAGE_ARCHIVE
#error "AYAFLOW_IMAGE_ARCHIVE: the OCI archive scripts/image.sh saves"
#endif

namespace ayaflow::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kNode = "image-test-node";

/// What k8s/daemonset.yaml asks of the node for the agent's container.
struct Manifest {
  std::string image;
  std::vector<std::pair<std::string, std::string>> env;  // the ConfigMap's data
  std::vector<std::string> caps_add, caps_drop;
  bool read_only_root = false;
  bool allow_privilege_escalation = true;
  bool privileged = false;
  bool host_network = false;
  std::string node_name_env;  // the variable the downward API fills with spec.nodeName
  struct Mount {
    std::string host_path, mount_path;
    bool read_only = false;
  };
  std::vector<Mount> mounts;
  std::string liveness_path, readiness_path;
  std::int64_t memory_limit = 0;      // bytes
  std::int64_t cpu_quota_micros = 0;  // per 100 ms period
  int grace_seconds = 30;             // Kubernetes' default
};

std::int64_t quantityBytes(const std::string& q) {
  const std::map<std::string, std::int64_t> units{
      {"Ki", 1LL << 10}, {"Mi", 1LL << 20}, {"Gi", 1LL << 30}, {"K", 1000}, {"M", 1000000}};
  for (const auto& [suffix, factor] : units) {
    if (q.size() > suffix.size() && q.compare(q.size() - suffix.size(), suffix.size(), suffix) == 0)
      return std::stoll(q.substr(0, q.size() - suffix.size())) * factor;
  }
  return std::stoll(q);
}

std::int64_t cpuQuotaMicros(const std::string& q) {
  // "500m" = half a CPU = 50 000 us of every 100 000 us period, as the kubelet sets it.
  if (!q.empty() && q.back() == 'm') return std::stoll(q.substr(0, q.size() - 1)) * 100;
  return static_cast<std::int64_t>(std::stod(q) * 100000);
}

Manifest readManifest() {
  Manifest m;
  YAML::Node daemonset;
  for (const YAML::Node& doc : YAML::LoadAllFromFile(AYAFLOW_SOURCE_DIR "/k8s/daemonset.yaml")) {
    const std::string kind = doc["kind"] ? doc["kind"].as<std::string>() : "";
    if (kind == "ConfigMap") {
      for (const auto& kv : doc["data"]) {
        m.env.emplace_back(kv.first.as<std::string>(), kv.second.as<std::string>());
      }
    } else if (kind == "DaemonSet") {
      daemonset = doc;
    }
  }
  if (!daemonset) throw std::runtime_error("k8s/daemonset.yaml has no DaemonSet");
  const YAML::Node pod = daemonset["spec"]["template"]["spec"];
  m.host_network = pod["hostNetwork"] && pod["hostNetwork"].as<bool>();
  if (pod["terminationGracePeriodSeconds"]) {
    m.grace_seconds = pod["terminationGracePeriodSeconds"].as<int>();
  }
  std::map<std::string, std::string> host_paths;
  for (const auto& v : pod["volumes"]) {
    if (!v["hostPath"])
      throw std::runtime_error("volume " + v["name"].as<std::string>() +
                               " is not a hostPath: teach this test about it");
    host_paths[v["name"].as<std::string>()] = v["hostPath"]["path"].as<std::string>();
  }
  const YAML::Node c = pod["containers"][0];
  m.image = c["image"].as<std::string>();
  for (const auto& e : c["env"]) {
    if (e["valueFrom"] && e["valueFrom"]["fieldRef"] &&
        e["valueFrom"]["fieldRef"]["fieldPath"].as<std::string>() == "spec.nodeName") {
      m.node_name_env = e["name"].as<std::string>();
    } else if (e["value"]) {
      m.env.emplace_back(e["name"].as<std::string>(), e["value"].as<std::string>());
    }
  }
  const YAML::Node sc = c["securityContext"];
  for (const auto& cap : sc["capabilities"]["add"]) m.caps_add.push_back(cap.as<std::string>());
  for (const auto& cap : sc["capabilities"]["drop"]) m.caps_drop.push_back(cap.as<std::string>());
  m.read_only_root = sc["readOnlyRootFilesystem"] && sc["readOnlyRootFilesystem"].as<bool>();
  m.allow_privilege_escalation =
      !sc["allowPrivilegeEscalation"] || sc["allowPrivilegeEscalation"].as<bool>();
  m.privileged = sc["privileged"] && sc["privileged"].as<bool>();
  for (const auto& vm : c["volumeMounts"]) {
    m.mounts.push_back({host_paths.at(vm["name"].as<std::string>()),
                        vm["mountPath"].as<std::string>(),
                        vm["readOnly"] && vm["readOnly"].as<bool>()});
  }
  m.liveness_path = c["livenessProbe"]["httpGet"]["path"].as<std::string>();
  m.readiness_path = c["readinessProbe"]["httpGet"]["path"].as<std::string>();
  if (c["resources"]["limits"]["memory"]) {
    m.memory_limit = quantityBytes(c["resources"]["limits"]["memory"].as<std::string>());
  }
  if (c["resources"]["limits"]["cpu"]) {
    m.cpu_quota_micros = cpuQuotaMicros(c["resources"]["limits"]["cpu"].as<std::string>());
  }
  return m;
}

/// Every capability the kernel knows, by number: dropping "ALL" drops each of them, as the
/// kubelet's runtime does (ctr knows no "ALL").
const std::vector<std::string>& allCapabilities() {
  static const std::vector<std::string> caps{"CHOWN",
                                             "DAC_OVERRIDE",
                                             "DAC_READ_SEARCH",
                                             "FOWNER",
                                             "FSETID",
                                             "KILL",
                                             "SETGID",
                                             "SETUID",
                                             "SETPCAP",
                                             "LINUX_IMMUTABLE",
                                             "NET_BIND_SERVICE",
                                             "NET_BROADCAST",
                                             "NET_ADMIN",
                                             "NET_RAW",
                                             "IPC_LOCK",
                                             "IPC_OWNER",
                                             "SYS_MODULE",
                                             "SYS_RAWIO",
                                             "SYS_CHROOT",
                                             "SYS_PTRACE",
                                             "SYS_PACCT",
                                             "SYS_ADMIN",
                                             "SYS_BOOT",
                                             "SYS_NICE",
                                             "SYS_RESOURCE",
                                             "SYS_TIME",
                                             "SYS_TTY_CONFIG",
                                             "MKNOD",
                                             "LEASE",
                                             "AUDIT_WRITE",
                                             "AUDIT_CONTROL",
                                             "SETFCAP",
                                             "MAC_OVERRIDE",
                                             "MAC_ADMIN",
                                             "SYSLOG",
                                             "WAKE_ALARM",
                                             "BLOCK_SUSPEND",
                                             "AUDIT_READ",
                                             "PERFMON",
                                             "BPF",
                                             "CHECKPOINT_RESTORE"};
  return caps;
}

/// The bits of /proc/PID/status's CapEff for these names ("BPF", "NET_ADMIN").
std::uint64_t capMask(const std::vector<std::string>& names) {
  std::uint64_t mask = 0;
  const auto& all = allCapabilities();
  for (const auto& n : names) {
    const auto it = std::find(all.begin(), all.end(), n);
    if (it == all.end()) throw std::runtime_error("unknown capability " + n);
    mask |= 1ULL << (it - all.begin());
  }
  return mask;
}

std::string statusField(int pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      const auto v = line.find_first_not_of(" \t", field.size() + 1);
      return v == std::string::npos ? "" : line.substr(v);
    }
  }
  return "";
}

/// The mount options of `mount_point` as process `pid` sees it (/proc/PID/mountinfo).
std::string mountOptions(int pid, const std::string& mount_point) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/mountinfo");
  std::string line, found;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point, options;
    fields >> id >> parent >> dev >> root >> point >> options;
    if (point == mount_point) found = options;  // the last one is on top
  }
  return found;
}

/// Copies of our programs on an interface: TCX links plus legacy tc filters (any handle).
int copiesAttached(int ifindex, const std::string& ifname, bool ingress) {
  int n = 0;
  for (const auto& p : bpf::listHookPrograms(ifindex, ingress)) {
    if (p.tcx && p.name.rfind("ayaflow_", 0) == 0) ++n;
  }
  const std::string out = shOutput("tc filter show dev " + ifname +
                                   (ingress ? " ingress" : " egress") + " 2>/dev/null");
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find("ayaflow_") != std::string::npos) ++n;
  }
  return n;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

/// A directory removed with this object.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& name) {
    std::string tmpl = "/tmp/ayaflow-image-" + name + "-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// The image's container under the fixture's containerd, run as the kubelet would run the
/// DaemonSet's: `ctr run` in the foreground (its exit status is the container's), stopped
/// with `ctr task kill` as the kubelet's StopContainer does (SIGTERM, SIGKILL after the
/// grace period).
class Container {
 public:
  struct Options {
    std::map<std::string, std::string> env;         // replaces/extends the manifest's
    std::map<std::string, std::string> host_paths;  // manifest hostPath -> this test's path
    /// The runtime's default seccomp profile (a pod's seccompProfile RuntimeDefault, or every
    /// pod under the kubelet's --seccomp-default); without it none, as the kubelet's default.
    bool runtime_default_seccomp = false;
  };

  Container(const Containerd& runtime, const Manifest& m, const std::string& id,
            const Options& options)
      : runtime_(runtime), id_(id), dir_("container") {
    port_ = freePort();
    std::map<std::string, std::string> env(m.env.begin(), m.env.end());
    env["AYAFLOW_PORT"] = std::to_string(port_);  // the host's network: a port of our own
    if (!m.node_name_env.empty()) env[m.node_name_env] = kNode;
    for (const auto& [k, v] : options.env) env[k] = v;

    std::vector<std::string> args{"ctr", "--address", runtime.socketPath(), "--namespace", "k8s.io",
                                  "run", "--rm",      "--snapshotter",      "native"};
    if (m.host_network) args.push_back("--net-host");
    if (m.read_only_root) args.push_back("--read-only");
    if (m.privileged) args.push_back("--privileged");
    if (options.runtime_default_seccomp) args.push_back("--seccomp");
    // ctr sets no_new_privs unless told otherwise.
    if (m.allow_privilege_escalation) args.push_back("--allow-new-privs");
    for (const auto& cap : m.caps_drop) {
      if (cap != "ALL") {
        args.push_back("--cap-drop=CAP_" + cap);
        continue;
      }
      for (const auto& c : allCapabilities()) {
        if (std::find(m.caps_add.begin(), m.caps_add.end(), c) == m.caps_add.end()) {
          args.push_back("--cap-drop=CAP_" + c);
        }
      }
    }
    for (const auto& cap : m.caps_add) args.push_back("--cap-add=CAP_" + cap);
    if (m.memory_limit > 0) args.push_back("--memory-limit=" + std::to_string(m.memory_limit));
    if (m.cpu_quota_micros > 0) {
      args.push_back("--cpu-period=100000");
      args.push_back("--cpu-quota=" + std::to_string(m.cpu_quota_micros));
    }
    for (const auto& mount : m.mounts) {
      const auto it = options.host_paths.find(mount.host_path);
      if (it == options.host_paths.end()) {
        throw std::runtime_error("no stand-in for hostPath " + mount.host_path);
      }
      // Not rbind: the runtime socket's directory holds this container's own mounts.
      args.push_back("--mount=type=bind,src=" + it->second + ",dst=" + mount.mount_path +
                     ",options=bind:" + (mount.read_only ? "ro" : "rw"));
    }
    for (const auto& [k, v] : env) args.push_back("--env=" + k + "=" + v);
    args.push_back("--pid-file=" + dir_.path + "/pid");
    args.push_back(m.image);
    args.push_back(id_);

    log_path_ = dir_.path + "/log";
    const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log_fd < 0) throw std::runtime_error("open " + log_path_);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    ::close(log_fd);
    if (pid_ < 0) throw std::runtime_error("fork");
  }

  ~Container() {
    if (pid_ > 0) {
      kill("SIGKILL");
      if (!waitExit(10s)) {
        ::kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    // ctr run --rm deletes the container when the task ends; a failed run may leave it.
    try {
      runtime_.ctr("--namespace k8s.io containers rm " + id_ + " 2>/dev/null");
    } catch (const std::exception&) {
    }
  }
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  /// Waits until the readiness probe's path answers 200 (the pod turns Ready); throws with
  /// the log when the container exits first or it does not within `timeout`.
  void waitReady(const std::string& path, std::chrono::milliseconds timeout = 30s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (pid_ > 0 && waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("container exited before it was ready:\n" + log());
      }
      try {
        if (httpGet("127.0.0.1", port_, path, 2s).status == 200) return;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("container not ready:\n" + log());
  }

  /// `ctr task kill`: the signal goes to the container's PID 1, the agent.
  void kill(const std::string& signal) {
    try {
      runtime_.ctr("--namespace k8s.io tasks kill --signal " + signal + " " + id_);
    } catch (const std::exception&) {
      // Already gone.
    }
  }

  /// The container's exit status (128 + signal when killed), nullopt if it runs on.
  std::optional<int> waitExit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (pid_ > 0) {
      if (waitpid(pid_, &status_, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(20ms);
    }
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    return 128 + WTERMSIG(status_);
  }

  /// The agent's PID as the host sees it.
  int taskPid() const {
    std::ifstream in(dir_.path + "/pid");
    int pid = 0;
    in >> pid;
    return pid;
  }

  HttpResult get(const std::string& target) { return httpGet("127.0.0.1", port_, target, 5s); }
  std::uint16_t port() const { return port_; }
  std::string log() const {
    std::ifstream in(log_path_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  const Containerd& runtime_;
  std::string id_;
  TempDir dir_;
  std::string log_path_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
  int status_ = 0;
};

class ImageE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0 || !containerdMissing().empty()) return;  // each test skips or fails
    if (!fs::exists(AYAFLOW_IMAGE_ARCHIVE)) return;              // each test fails
    manifest_ = new Manifest(readManifest());
    runtime_ = new Containerd();
    const auto t0 = Clock::now();
    runtime_->importImage(AYAFLOW_IMAGE_ARCHIVE);
    import_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  }
  static void TearDownTestSuite() {
    delete runtime_;
    runtime_ = nullptr;
    delete manifest_;
    manifest_ = nullptr;
  }

  void SetUp() override {
    AYAFLOW_REQUIRE_CONTAINERD();
    if (!fs::exists(AYAFLOW_IMAGE_ARCHIVE)) {
      // The image_build test makes it; it skips without podman or mmdebstrap.
      const std::string why = std::string(AYAFLOW_IMAGE_ARCHIVE) +
                              " is missing: the image_build test (scripts/image.sh) makes it";
      if (inCi()) FAIL() << why << " (CI=true)";
      GTEST_SKIP() << why;
    }
    ASSERT_NE(runtime_, nullptr) << "set-up failed";
  }

  /// The manifest's hostPaths, each replaced by one of this test's: the database directory
  /// and CRI-O's run directory are empty temporary ones, the containerd run directory is
  /// the fixture's (its socket is containerd.sock there, as on a node), and /sys/fs/bpf is
  /// the node's own.
  Container::Options options(const TempDir& data, const TempDir& crio) const {
    Container::Options o;
    o.host_paths = {{"/sys/fs/bpf", "/sys/fs/bpf"},
                    {"/var/lib/ayaflow", data.path},
                    {"/run/containerd", runtime_->dir()},
                    {"/run/crio", crio.path}};
    return o;
  }

  static std::string nextId() { return "ayaflow-image-" + std::to_string(++containers_); }

  static inline Manifest* manifest_ = nullptr;
  static inline Containerd* runtime_ = nullptr;
  static inline long import_ms_ = 0;
  static inline int containers_ = 0;
};

TEST_F(ImageE2E, RunsAsTheDaemonSetCountsExactlyAndStopsCleanly) {
  const Manifest& m = *manifest_;
  // What the rest of the test relies on: the DaemonSet is a host-network, unprivileged pod.
  EXPECT_TRUE(m.host_network);
  EXPECT_FALSE(m.privileged);
  EXPECT_TRUE(m.read_only_root);
  EXPECT_FALSE(m.allow_privilege_escalation);
  EXPECT_EQ(m.caps_drop, std::vector<std::string>{"ALL"});

  VethPair link(61);
  TempDir data("data"), crio("crio");
  Container::Options o = options(data, crio);
  // The ConfigMap's "auto" would attach to every pod interface of this machine: the test's
  // own veth only.
  o.env["AYAFLOW_INTERFACE"] = link.host();
  Container agent(*runtime_, m, nextId(), o);
  agent.waitReady(m.readiness_path);
  std::cout << "image imported in " << import_ms_ << " ms\n";

  // The manifest's security context, as the kernel sees the agent.
  const int pid = agent.taskPid();
  ASSERT_GT(pid, 0);
  std::uint64_t cap_eff = 0;
  std::stringstream(statusField(pid, "CapEff")) >> std::hex >> cap_eff;
  EXPECT_EQ(cap_eff, capMask(m.caps_add)) << statusField(pid, "CapEff");
  EXPECT_EQ(statusField(pid, "NoNewPrivs"), "1");
  EXPECT_EQ(mountOptions(pid, "/").rfind("ro,", 0), 0u) << mountOptions(pid, "/");
  // Host network: the agent sees the node's interfaces, ours among them.
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/net"),
            fs::read_symlink("/proc/self/ns/net"));
  // Both probes answer 200 within their timeout (2 s).
  EXPECT_EQ(httpGet("127.0.0.1", agent.port(), m.liveness_path, 2s).status, 200);
  EXPECT_EQ(httpGet("127.0.0.1", agent.port(), m.readiness_path, 2s).status, 200);

  const int ifindex = link.hostIfindex();
  EXPECT_EQ(copiesAttached(ifindex, link.host(), true), 1);
  EXPECT_EQ(copiesAttached(ifindex, link.host(), false), 1);

  // Known traffic, both ways, IPv4 and IPv6 (the ConfigMap enables IPv6).
  LinkCounter counter(link, true);
  constexpr int kOut = 300, kBack = 200, kOut6 = 70, kBack6 = 40;
  udpExchange(link, false, 40061, 5061, kOut, 100, kBack, 400);
  udpExchange(link, true, 40062, 5062, kOut6, 60, kBack6, 900);
  const Totals truth = linkTotals(counter.stop());
  EXPECT_EQ(truth.packets, std::uint64_t{kOut + kBack + kOut6 + kBack6});

  json stats;
  ASSERT_TRUE(eventually([&] {
    stats = json::parse(agent.get("/api/stats").body);
    return stats.at("total_packets").get<std::uint64_t>() >= truth.packets;
  })) << stats.dump();
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);

  // /api/live: each connection exact (the connection map follows the kernel's totals within
  // a drain interval).
  const std::string c4 = endpoint(link.hostV4(), 40061) + " -> " + endpoint(link.peerV4(), 5061);
  const std::string c6 = endpoint(link.hostV6(), 40062) + " -> " + endpoint(link.peerV6(), 5062);
  std::map<std::string, json> by_connection;
  json live;
  EXPECT_TRUE(eventually([&] {
    live = json::parse(agent.get("/api/live").body);
    by_connection.clear();
    for (const json& c : live.at("connections")) by_connection[c.at("connection")] = c.at("stats");
    return by_connection.count(c4) && by_connection.count(c6) &&
           by_connection[c4].at("packets_count") == kOut + kBack &&
           by_connection[c6].at("packets_count") == kOut6 + kBack6;
  })) << live.dump();
  ASSERT_TRUE(by_connection.count(c4)) << live.dump();
  ASSERT_TRUE(by_connection.count(c6)) << live.dump();
  EXPECT_EQ(by_connection[c4].at("packets_count"), kOut + kBack);
  EXPECT_EQ(by_connection[c4].at("bytes_sent"), kOut * (100 + 28));
  EXPECT_EQ(by_connection[c4].at("bytes_received"), kBack * (400 + 28));
  EXPECT_EQ(by_connection[c6].at("packets_count"), kOut6 + kBack6);
  EXPECT_EQ(by_connection[c6].at("bytes_sent"), kOut6 * (60 + 48));
  EXPECT_EQ(by_connection[c6].at("bytes_received"), kBack6 * (900 + 48));

  // /metrics scrapes, in the Prometheus text format, with the same totals.
  const HttpResult metrics = agent.get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.header("content-type").find("text/plain"), std::string::npos);
  EXPECT_EQ(metricValue(metrics.body, "ayaflow_packets_total"), truth.packets);
  EXPECT_EQ(metricValue(metrics.body, "ayaflow_bytes_total"), truth.bytes);
  EXPECT_EQ(metricValue(metrics.body, "ayaflow_interfaces_attached"), 1u);

  // The kubelet's stop: SIGTERM, then SIGKILL once the grace period is over. The agent must
  // be gone before that, with status 0, its programs detached and its rows written.
  agent.kill("SIGTERM");
  const std::optional<int> status = agent.waitExit(std::chrono::seconds(m.grace_seconds));
  ASSERT_TRUE(status.has_value()) << "still running after the grace period:\n" << agent.log();
  EXPECT_EQ(*status, 0) << agent.log();
  EXPECT_EQ(copiesAttached(ifindex, link.host(), true), 0);
  EXPECT_EQ(copiesAttached(ifindex, link.host(), false), 0);
  // The database in the hostPath directory, as the node keeps it.
  std::string db_path;
  for (const auto& [k, v] : m.env) {
    if (k == "AYAFLOW_DB_PATH") db_path = v;
  }
  ASSERT_EQ(db_path.rfind("/var/lib/ayaflow/", 0), 0u) << db_path;
  const std::string host_db = data.path + db_path.substr(std::string("/var/lib/ayaflow").size());
  ASSERT_TRUE(fs::exists(host_db)) << host_db;
  EXPECT_EQ(queryRow(host_db, "SELECT SUM(packet_count), SUM(length) FROM packets"),
            (std::vector<std::string>{std::to_string(truth.packets), std::to_string(truth.bytes)}));
  EXPECT_EQ(queryRow(host_db, "PRAGMA integrity_check"), std::vector<std::string>{"ok"});
}

/// The runtime's socket directory mounted read-only (as the DaemonSet mounts /run/containerd)
/// is enough to name pods from inside the container.
TEST_F(ImageE2E, NamesPodsOverTheReadOnlyRuntimeSocket) {
  const Manifest& m = *manifest_;
  Containerd::PodSpec spec;
  spec.name = "web-7d9f8c6b5d-image";
  spec.ns = "shop";
  spec.labels = {{"app", "web"}, {"pod-template-hash", "7d9f8c6b5d"}};
  Containerd::Pod pod = runtime_->runPod(spec);
  // The CNI names the host end at random: give it a name of this test's own.
  const std::string veth = "ayfi" + std::to_string(getpid() % 100000) + "p";
  sh("ip link set dev " + pod.host_veth + " down && ip link set dev " + pod.host_veth + " name " +
     veth + " && ip link set dev " + veth + " up");

  TempDir data("data"), crio("crio");
  Container::Options o = options(data, crio);
  o.env["AYAFLOW_INTERFACE"] = veth;
  Container agent(*runtime_, m, nextId(), o);
  agent.waitReady(m.readiness_path);
  ASSERT_TRUE(eventually([&] {
    return metricValue(agent.get("/metrics").body, "ayaflow_cri_pods") == 1;
  })) << agent.get("/metrics").body
      << agent.log();

  // The pod talks to the node (the bridge's address).
  constexpr int kOut = 30, kBack = 20;
  int a = -1;
  inPod(pod, [&] { a = udpSocket(pod.ip, 41070); });
  const int b = udpSocket(runtime_->gateway(), 42070);
  for (int i = 0; i < kOut; ++i) udpSend(a, runtime_->gateway(), 42070, 100);
  udpReceive(b, kOut);
  for (int i = 0; i < kBack; ++i) udpSend(b, pod.ip, 41070, 200);
  udpReceive(a, kBack);
  ::close(a);
  ::close(b);

  json entry;
  ASSERT_TRUE(eventually([&] {
    entry = json();
    const json live = json::parse(agent.get("/api/live").body);
    for (const json& c : live.at("connections")) {
      const std::string conn = c.at("connection");
      if (conn.find(endpoint(pod.ip, 41070)) != std::string::npos &&
          conn.find(endpoint(runtime_->gateway(), 42070)) != std::string::npos) {
        entry = c;
      }
    }
    return !entry.is_null() && entry.at("stats").at("packets_count") == kOut + kBack;
  })) << agent.get("/api/live").body;
  const bool pod_local = entry.at("connection").get<std::string>().rfind(pod.ip, 0) == 0;
  const std::string side = pod_local ? "local_" : "remote_";
  EXPECT_EQ(entry.value(side + "namespace", ""), "shop") << entry.dump();
  EXPECT_EQ(entry.value(side + "pod", ""), "web-7d9f8c6b5d-image") << entry.dump();
  EXPECT_EQ(entry.value(side + "workload", ""), "web") << entry.dump();

  agent.kill("SIGTERM");
  EXPECT_EQ(agent.waitExit(std::chrono::seconds(m.grace_seconds)), std::optional<int>(0))
      << agent.log();
  runtime_->removePod(pod.id);
}

/// Clusters that run every pod under the runtime's default seccomp profile (the kubelet's
/// --seccomp-default): bpf() and perf_event_open() must still pass with the manifest's
/// capabilities.
TEST_F(ImageE2E, RunsUnderTheRuntimeDefaultSeccompProfile) {
  const Manifest& m = *manifest_;
  VethPair link(64);
  TempDir data("data"), crio("crio");
  Container::Options o = options(data, crio);
  o.env["AYAFLOW_INTERFACE"] = link.host();
  o.runtime_default_seccomp = true;
  Container agent(*runtime_, m, nextId(), o);
  agent.waitReady(m.readiness_path);
  EXPECT_EQ(statusField(agent.taskPid(), "Seccomp"), "2");  // filter mode
  EXPECT_EQ(copiesAttached(link.hostIfindex(), link.host(), true), 1);
  EXPECT_EQ(copiesAttached(link.hostIfindex(), link.host(), false), 1);
  LinkCounter counter(link, true);
  udpExchange(link, false, 40065, 5065, 30, 50, 20, 70);
  const Totals truth = linkTotals(counter.stop());
  json stats;
  ASSERT_TRUE(eventually([&] {
    stats = json::parse(agent.get("/api/stats").body);
    return stats.at("total_packets").get<std::uint64_t>() >= truth.packets;
  })) << stats.dump();
  EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);
  EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);
  agent.kill("SIGTERM");
  EXPECT_EQ(agent.waitExit(std::chrono::seconds(m.grace_seconds)), std::optional<int>(0))
      << agent.log();
  EXPECT_EQ(copiesAttached(link.hostIfindex(), link.host(), true), 0);
  EXPECT_EQ(copiesAttached(link.hostIfindex(), link.host(), false), 0);
}

/// A SIGKILL (the grace period over, an OOM kill, a node crash) then the next pod: one copy
/// of the programs, each packet counted once. Auto is the ConfigMap's attach mode (TCX
/// here: links die with the process); tc is what kernels before 6.6 get (filters outlive
/// the process and the next start replaces them).
TEST_F(ImageE2E, RestartAfterSigkillLeavesOneCopyOfThePrograms) {
  const Manifest& m = *manifest_;
  for (const std::string mode : {"auto", "tc"}) {
    SCOPED_TRACE(mode);
    VethPair link(mode == "tc" ? 63 : 62);
    const int ifindex = link.hostIfindex();
    TempDir data("data"), crio("crio");
    Container::Options o = options(data, crio);
    o.env["AYAFLOW_INTERFACE"] = link.host();
    if (mode != "auto") o.env["AYAFLOW_ATTACH_MODE"] = mode;
    {
      Container first(*runtime_, m, nextId(), o);
      first.waitReady(m.readiness_path);
      first.kill("SIGKILL");
      EXPECT_EQ(first.waitExit(10s), std::optional<int>(128 + SIGKILL)) << first.log();
    }
    const int orphans = mode == "tc" || !bpf::kernelHasTcx() ? 1 : 0;
    EXPECT_EQ(copiesAttached(ifindex, link.host(), true), orphans);
    EXPECT_EQ(copiesAttached(ifindex, link.host(), false), orphans);

    Container second(*runtime_, m, nextId(), o);
    second.waitReady(m.readiness_path);
    EXPECT_EQ(copiesAttached(ifindex, link.host(), true), 1);
    EXPECT_EQ(copiesAttached(ifindex, link.host(), false), 1);
    LinkCounter counter(link, true);
    udpExchange(link, false, 40064, 5064, 25, 40, 25, 40);
    const Totals truth = linkTotals(counter.stop());
    json stats;
    ASSERT_TRUE(eventually([&] {
      stats = json::parse(second.get("/api/stats").body);
      return stats.at("total_packets").get<std::uint64_t>() >= truth.packets;
    })) << stats.dump();
    EXPECT_EQ(stats.at("total_packets").get<std::uint64_t>(), truth.packets);  // counted once
    EXPECT_EQ(stats.at("total_bytes").get<std::uint64_t>(), truth.bytes);

    second.kill("SIGTERM");
    EXPECT_EQ(second.waitExit(std::chrono::seconds(m.grace_seconds)), std::optional<int>(0))
        << second.log();
    EXPECT_EQ(copiesAttached(ifindex, link.host(), true), 0);
    EXPECT_EQ(copiesAttached(ifindex, link.host(), false), 0);
  }
}

}  // namespace
}  // namespace ayaflow::test
