// SPDX-License-Identifier: MIT OR Apache-2.0
#include "containerd_fixture.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <net/if.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cri_api.grpc.pb.h"
#include "netns.h"

extern char** environ;

namespace ayaflow::test {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

/// The sandbox image's name in the private store (sandbox_image in the configuration).
constexpr const char* kPauseImage = "ayaflow.test/pause:1";
/// A fixture's directory, and the per-process one of the pause image.
constexpr const char* kDirPrefix = "/tmp/ayaflow-ctrd-";
constexpr const char* kPauseDirPrefix = "/tmp/ayaflow-pause-";

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

void writeFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  if (!out) {
    throw std::runtime_error("cannot write " + path);
  }
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot): with the PID, names a
/// process for good. Empty when there is no such process.
std::string processStart(int pid) {
  const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return "";
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return field;
}

/// SHA-256 of a file as hex, by coreutils (the blobs of an OCI layout are named by it).
std::string sha256(const std::string& path) {
  const std::string out = shOutput("sha256sum " + quote(path));
  if (out.size() < 64) {
    throw std::runtime_error("sha256sum " + path + ": " + out);
  }
  return out.substr(0, 64);
}

/// Moves `file` into the layout's blob store; returns its descriptor fields.
nlohmann::json addBlob(const std::string& layout, const std::string& file,
                       const std::string& media_type) {
  const std::string digest = sha256(file);
  const auto size = fs::file_size(file);
  fs::rename(file, layout + "/blobs/sha256/" + digest);
  return {{"mediaType", media_type}, {"digest", "sha256:" + digest}, {"size", size}};
}

std::string ociArchitecture() {
  utsname u{};
  ::uname(&u);
  const std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  if (m.rfind("arm", 0) == 0) return "arm";
  return m;
}

/// The pause image as an OCI image-layout tar, built once per process (a test binary may
/// run several fixtures) in its own temporary directory, removed at exit.
///
/// One layer: the static busybox with sh and sleep links. PID 1 of a PID namespace ignores
/// signals it has no handler for, so a plain `sleep` would outlive SIGTERM; the shell traps
/// TERM and INT and exits, which ends the sandbox at once (containerd 1.6 kills the sandbox
/// with SIGKILL on StopPodSandbox anyway; this keeps a SIGTERM from anyone else prompt too).
const std::string& pauseImageTar() {
  static std::once_flag once;
  static std::string tar;
  static std::string dir;
  std::call_once(once, [] {
    // Named after this process (PID and start time): when it dies without running atexit
    // handlers, sweepStale() of a later fixture removes the directory.
    std::string tmpl = std::string(kPauseDirPrefix) + std::to_string(::getpid()) + "-" +
                       processStart(::getpid()) + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    }
    dir = tmpl;
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(dir, ec);
    });
    const std::string rootfs = dir + "/rootfs", layout = dir + "/layout";
    fs::create_directories(rootfs + "/bin");
    fs::create_directories(layout + "/blobs/sha256");
    fs::copy_file("/bin/busybox", rootfs + "/bin/busybox");
    fs::create_symlink("busybox", rootfs + "/bin/sh");
    fs::create_symlink("busybox", rootfs + "/bin/sleep");
    // Reproducible: the same bytes (and digests) every time.
    sh("tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C " + quote(rootfs) +
       " -cf " + quote(dir + "/layer.tar") + " bin");
    const auto layer =
        addBlob(layout, dir + "/layer.tar", "application/vnd.oci.image.layer.v1.tar");
    const std::string arch = ociArchitecture();
    const nlohmann::json config = {
        {"architecture", arch},
        {"os", "linux"},
        {"config",
         {{"Entrypoint", {"/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"}}}},
        {"rootfs", {{"type", "layers"}, {"diff_ids", {layer["digest"]}}}}};
    writeFile(dir + "/config.json", config.dump());
    const auto config_desc =
        addBlob(layout, dir + "/config.json", "application/vnd.oci.image.config.v1+json");
    const nlohmann::json manifest = {{"schemaVersion", 2},
                                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                     {"config", config_desc},
                                     {"layers", {layer}}};
    writeFile(dir + "/manifest.json", manifest.dump());
    auto manifest_desc =
        addBlob(layout, dir + "/manifest.json", "application/vnd.oci.image.manifest.v1+json");
    manifest_desc["platform"] = {{"architecture", arch}, {"os", "linux"}};
    // ctr names the image after this annotation.
    manifest_desc["annotations"] = {{"io.containerd.image.name", kPauseImage},
                                    {"org.opencontainers.image.ref.name", "1"}};
    writeFile(layout + "/index.json",
              nlohmann::json{{"schemaVersion", 2}, {"manifests", {manifest_desc}}}.dump());
    writeFile(layout + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    tar = dir + "/pause.tar";
    sh("tar -C " + quote(layout) + " -cf " + quote(tar) + " .");
  });
  return tar;
}

std::atomic<int> g_subnets{0};

}  // namespace

std::string Containerd::freeSubnet() {
  const int n = g_subnets.fetch_add(1);
  const std::string routes = shOutput("ip -4 route show table all 2>/dev/null");
  const int pid = static_cast<int>(::getpid());
  for (int i = 0; i < 4096; ++i) {
    const int k = (pid + n * 97 + i) % 4096;  // 10.224.0.0/12 holds 4096 /24s
    const std::string net =
        "10." + std::to_string(224 + k / 256) + "." + std::to_string(k % 256) + ".";
    if (routes.find(net) == std::string::npos) {
      return net + "0/24";
    }
  }
  throw std::runtime_error("no free /24 under 10.224.0.0/12");
}

namespace {

std::atomic<int> g_fixtures{0};

/// The IPv6 /64 that goes with an IPv4 /24 from freeSubnet(): 10.B.C.0/24 -> fd00:ac:B:C::/64
/// (B and C in hex), so it is as unique as the IPv4 one.
std::string v6For(const std::string& subnet) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (std::sscanf(subnet.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d) != 4) {
    throw std::runtime_error("not an IPv4 subnet: " + subnet);
  }
  char out[64];
  std::snprintf(out, sizeof out, "fd00:ac:%x:%x::/64", b, c);
  return out;
}

/// The first host address of an IPv4 subnet "a.b.c.d/len" (host-local's default gateway).
std::string firstHost(const std::string& subnet) {
  const auto slash = subnet.find('/');
  const std::string base = subnet.substr(0, slash);
  const auto dot = base.rfind('.');
  return base.substr(0, dot + 1) + std::to_string(std::stoi(base.substr(dot + 1)) + 1);
}

std::string status(const std::string& what, const grpc::Status& s) {
  return what + ": " + s.error_message() + " (gRPC code " + std::to_string(s.error_code()) + ")";
}

std::unique_ptr<grpc::ClientContext> context(std::chrono::milliseconds timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

void warn(const std::string& what) { std::cerr << "containerd fixture cleanup: " << what << "\n"; }

int parentPid(int pid) {
  const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  char state = 0;
  int ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

std::vector<int> allPids() {
  std::vector<int> pids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename();
    if (!name.empty() && name.find_first_not_of("0123456789") == std::string::npos) {
      pids.push_back(std::stoi(name));
    }
  }
  return pids;
}

/// Processes (other than this one) whose command line, arguments joined by spaces and
/// followed by one, contains every one of `needles`.
std::vector<int> processesNaming(const std::vector<std::string>& needles) {
  std::vector<int> pids;
  for (int pid : allPids()) {
    if (pid == ::getpid()) continue;
    std::string cmdline = readFile("/proc/" + std::to_string(pid) + "/cmdline");
    if (cmdline.empty()) continue;  // kernel thread or zombie
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (cmdline.back() != ' ') cmdline += ' ';
    bool all = true;
    for (const auto& n : needles) all = all && cmdline.find(n) != std::string::npos;
    if (all) pids.push_back(pid);
  }
  return pids;
}

std::vector<std::string> mountsUnder(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  const std::string prefix = dir + "/";
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point.rfind(prefix, 0) == 0) out.push_back(point);
  }
  return out;
}

/// What a fixture may leave on the machine, by name.
struct Leftovers {
  std::string dir, bridge, network, cgroup;
  std::vector<std::string> netns, sandboxes;
};

/// Removes the cgroup `path` and the ones under it in every hierarchy (v1 and v2); cgroups
/// with processes stay (rmdir fails).
void removeCgroups(const std::string& path) {
  std::error_code ec;
  std::vector<std::string> roots = {"/sys/fs/cgroup"};
  for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    if (h.is_directory(ec)) roots.push_back(h.path());
  }
  for (const auto& root : roots) {
    const std::string top = root + path;
    if (!fs::is_directory(top, ec)) continue;
    std::vector<std::string> dirs = {top};
    for (auto it = fs::recursive_directory_iterator(top, ec);
         it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec) && !it->is_symlink(ec)) dirs.push_back(it->path());
    }
    for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) ::rmdir(d->c_str());  // deepest first
  }
}

/// Removes whatever a fixture left behind when CRI could not clean up (a daemon that would
/// not start, a failed call, a test process killed mid-test): processes that name its
/// directory (daemon, shims) and their children (the pause processes), mounts under the
/// directory, the pods' network namespaces, the bridge, libcni's cached results, the shims'
/// sockets, the pods' cgroups, the directory. Only ever things named after this fixture or
/// its sandboxes.
void removeLeftovers(const Leftovers& l) noexcept {
  const std::string& dir = l.dir;
  try {
    const auto owned = processesNaming({" " + dir + "/"});
    if (!owned.empty()) {
      const auto pids = allPids();
      for (int p : owned) {
        warn("killing leftover process " + std::to_string(p));
        for (int child : pids) {
          if (parentPid(child) == p) ::kill(child, SIGKILL);
        }
        ::kill(p, SIGKILL);
      }
      const auto deadline = Clock::now() + std::chrono::seconds(5);
      while (!processesNaming({" " + dir + "/"}).empty() && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  } catch (const std::exception& e) {
    warn(e.what());
  }
  try {
    auto points = mountsUnder(dir);
    for (auto it = points.rbegin(); it != points.rend(); ++it) {
      warn("unmounting " + *it);
      ::umount2(it->c_str(), MNT_DETACH);
    }
    for (const auto& ns : l.netns) {
      if (ns.rfind("/proc/", 0) == 0 || !fs::exists(ns)) continue;
      warn("removing network namespace " + ns);
      ::umount2(ns.c_str(), MNT_DETACH);
      std::error_code ec;
      fs::remove(ns, ec);
    }
    if (!l.bridge.empty() && fs::exists("/sys/class/net/" + l.bridge)) {
      shOutput("ip link del " + quote(l.bridge) + " 2>&1");
    }
    // libcni caches each attachment's result as NETWORK-SANDBOX-IFNAME (containerd names its
    // loopback network cni-loopback); DEL removes it, but not when DEL never ran.
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/var/lib/cni/results", ec)) {
      const std::string name = entry.path().filename();
      bool ours = !l.network.empty() && name.rfind(l.network + "-", 0) == 0;
      for (const auto& id : l.sandboxes)
        ours = ours || name.find("-" + id + "-") != std::string::npos;
      if (ours) fs::remove(entry.path(), ec);
    }
    // A shim listens on /run/containerd/s/<sha256 of "ADDRESS/NAMESPACE/ID"> (containerd
    // 1.6 and 1.7) and removes it when it exits normally.
    for (const auto& id : l.sandboxes) {
      const std::string key = dir + "/containerd.sock/k8s.io/" + id;
      const std::string hash = shOutput("printf %s " + quote(key) + " | sha256sum").substr(0, 64);
      fs::remove("/run/containerd/s/" + hash, ec);
    }
    if (!l.cgroup.empty()) removeCgroups(l.cgroup);
    if (mountsUnder(dir).empty()) {
      fs::remove_all(dir, ec);
    } else {
      warn("mounts remain under " + dir + ": leaving it");
    }
  } catch (const std::exception& e) {
    warn(e.what());
  }
}

/// Fixtures of test processes that died without their destructors (killed by a timeout, a
/// crash): each directory's fixture.json names its owner (PID and start time) and what to
/// remove. Directories of live owners, and ones still without the file, are not touched.
/// Pause image directories of dead processes go too.
void sweepStale() noexcept {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/tmp", ec)) {
    const std::string dir = entry.path();
    if (dir.rfind(kPauseDirPrefix, 0) == 0) {
      // ayaflow-pause-PID-START-XXXXXX
      std::istringstream name(dir.substr(std::strlen(kPauseDirPrefix)));
      int pid = 0;
      char dash = 0;
      std::string start;
      if (name >> pid >> dash && std::getline(name, start, '-') && processStart(pid) != start) {
        fs::remove_all(dir, ec);
      }
      continue;
    }
    if (dir.rfind(kDirPrefix, 0) != 0) continue;
    const auto state = nlohmann::json::parse(readFile(dir + "/fixture.json"), nullptr, false);
    if (state.is_discarded() || !state.is_object()) continue;
    const int owner = state.value("pid", 0);
    if (owner <= 0 || processStart(owner) == state.value("start", "")) continue;
    warn("removing the fixture " + dir + " of process " + std::to_string(owner) +
         ", which is gone");
    removeLeftovers({dir, state.value("bridge", ""), state.value("network", ""),
                     state.value("cgroup", ""), state.value("netns", std::vector<std::string>{}),
                     state.value("sandboxes", std::vector<std::string>{})});
  }
}

}  // namespace

/// The gRPC side, hidden here so users of the header need neither gRPC nor the CRI types.
struct Containerd::Rpc {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<runtime::v1::RuntimeService::Stub> stub;

  explicit Rpc(const std::string& endpoint) {
    // A fresh channel per daemon start: a channel that saw the socket vanish would wait out
    // its reconnect backoff.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
    channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
    stub = runtime::v1::RuntimeService::NewStub(channel);
  }
};

std::string Containerd::socketPath() const { return dir_ + "/containerd.sock"; }

std::string Containerd::daemonLog() const {
  std::string text = readFile(dir_ + "/containerd.log");
  if (text.size() > 6000) {
    text = "..." + text.substr(text.size() - 6000);
  }
  return text;
}

Containerd::Containerd(ContainerdOptions options) {
  const auto t0 = Clock::now();
  sweepStale();
  const int n = g_fixtures.fetch_add(1);
  std::string tmpl = std::string(kDirPrefix) + "XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  dir_ = tmpl;
  const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(n);
  // Interface names have at most 15 characters: "afc" + PID (up to 7 digits) + "-" + n.
  bridge_ = ("afc" + tag).substr(0, 15);
  network_ = "ayaflow-test-" + tag;
  try {
    saveState();
    createBridge(options);
    writeConfig(options);
    spawnDaemon();
    waitForCri();
    const auto t1 = Clock::now();
    importImage(pauseImageTar());
    image_time_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t1);
    auto ctx = context(std::chrono::seconds(5));
    runtime::v1::VersionRequest req;
    runtime::v1::VersionResponse resp;
    const auto s = rpc_->stub->Version(ctx.get(), req, &resp);
    if (!s.ok()) {
      throw std::runtime_error(status("Version", s));
    }
    runtime_version_ = resp.runtime_name() + " " + resp.runtime_version();
  } catch (const std::exception& e) {
    const std::string message = std::string("containerd fixture: ") + e.what() +
                                (fs::exists(dir_ + "/containerd.log") ? "\n" + daemonLog() : "");
    cleanup();
    throw std::runtime_error(message);
  }
  start_time_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
}

Containerd::~Containerd() { cleanup(); }

void Containerd::createBridge(const ContainerdOptions& options) {
  // The bridge exists (up, with the gateway addresses) from the start rather than from the
  // first pod: bridge() and gateway() are usable at once (an agent can attach before pods
  // come), and the subnet's route claims it against another fixture picking the same one.
  // The CNI bridge plugin takes an existing bridge that already has its gateway address.
  for (int attempt = 0;; ++attempt) {
    subnet_ = options.subnet.empty() ? freeSubnet() : options.subnet;
    gateway_ = firstHost(subnet_);
    const std::string prefix = subnet_.substr(subnet_.find('/'));
    sh("ip link add name " + quote(bridge_) + " type bridge");
    sh("ip addr add " + gateway_ + prefix + " dev " + quote(bridge_));
    if (options.ipv6) {
      subnet6_ = options.subnet6.empty() ? v6For(subnet_) : options.subnet6;
      gateway6_ = subnet6_.substr(0, subnet6_.find('/')) + "1";
      sh("ip addr add " + gateway6_ + subnet6_.substr(subnet6_.find('/')) + " dev " +
         quote(bridge_) + " nodad");
    }
    sh("ip link set " + quote(bridge_) + " up");
    // Another process may have taken the same subnet between our look and our address.
    const std::string users = shOutput("ip -4 -o addr show to " + subnet_);
    if (std::count(users.begin(), users.end(), '\n') == 1) return;
    sh("ip link del " + quote(bridge_));
    if (!options.subnet.empty() || attempt == 5) {
      throw std::runtime_error("subnet " + subnet_ + " is in use: " + users);
    }
  }
}

void Containerd::writeConfig(const ContainerdOptions& options) {
  fs::create_directories(dir_ + "/cni/net.d");
  // The CRI plugin's sandbox image must be local (nothing can be pulled); without
  // restrict_oom_score_adj runc fails ("can't get final child's PID from pipe") where the
  // sandbox may not lower its oom_score_adj; the native snapshotter needs no overlay support.
  // runc's state (Root) is private too, so `runc list` of anyone else never shows our pods.
  std::ostringstream c;
  c << "version = 2\n"
    << "root = \"" << dir_ << "/root\"\n"
    << "state = \"" << dir_ << "/state\"\n"
    << "disabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\", "
       "\"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.aufs\", "
       "\"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.tracing.processor.v1.otlp\", "
       "\"io.containerd.internal.v1.tracing\"]\n"
    << "[grpc]\n  address = \"" << socketPath() << "\"\n"
    << "[ttrpc]\n  address = \"" << socketPath() << ".ttrpc\"\n"
    << "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"" << dir_ << "/opt\"\n"
    << "[plugins.\"io.containerd.grpc.v1.cri\"]\n"
    << "  sandbox_image = \"" << kPauseImage << "\"\n"
    << "  restrict_oom_score_adj = true\n"
    << "  stream_server_address = \"127.0.0.1\"\n"
    << "  stream_server_port = \"0\"\n"
    << "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n"
    << "    snapshotter = \"native\"\n"
    << "    default_runtime_name = \"runc\"\n"
    << "    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n"
    << "      runtime_type = \"io.containerd.runc.v2\"\n"
    << "      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n"
    << "        Root = \"" << dir_ << "/runc\"\n"
    << "  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n"
    << "    bin_dir = \"" << options.cni_bin_dir << "\"\n"
    << "    conf_dir = \"" << dir_ << "/cni/net.d\"\n";
  writeFile(dir_ + "/config.toml", c.str());

  nlohmann::json range = {{"subnet", subnet_}};
  if (!options.range_start.empty()) range["rangeStart"] = options.range_start;
  if (!options.range_end.empty()) range["rangeEnd"] = options.range_end;
  // host-local: a list of range sets, one address from each.
  auto ranges = nlohmann::json::array({nlohmann::json::array({range})});
  if (options.ipv6) ranges.push_back(nlohmann::json::array({nlohmann::json{{"subnet", subnet6_}}}));
  const nlohmann::json conflist = {
      {"cniVersion", "0.4.0"},
      {"name", network_},
      {"plugins",
       {{{"type", "bridge"},
         {"bridge", bridge_},
         {"isGateway", true},
         {"ipMasq", false},
         {"ipam", {{"type", "host-local"}, {"ranges", ranges}, {"dataDir", dir_ + "/cni/ipam"}}}},
        {{"type", "loopback"}}}}};
  writeFile(dir_ + "/cni/net.d/10-ayaflow.conflist", conflist.dump(2));
}

void Containerd::spawnDaemon() {
  const std::string config = dir_ + "/config.toml", logfile = dir_ + "/containerd.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, logfile.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<std::string> args = {"containerd", "--config", config};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int err = ::posix_spawnp(&pid, "containerd", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    throw std::runtime_error(std::string("cannot start containerd: ") + std::strerror(err));
  }
  daemon_pid_ = pid;
}

bool Containerd::answers() {
  if (!rpc_) return false;
  auto ctx = context(std::chrono::milliseconds(500));
  runtime::v1::VersionRequest req;
  runtime::v1::VersionResponse resp;
  return rpc_->stub->Version(ctx.get(), req, &resp).ok();
}

void Containerd::waitForCri() {
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  rpc_ = std::make_unique<Rpc>(endpoint());
  while (true) {
    int wstatus = 0;
    if (::waitpid(daemon_pid_, &wstatus, WNOHANG) == daemon_pid_) {
      daemon_pid_ = 0;
      throw std::runtime_error("containerd exited during start");
    }
    if (fs::exists(socketPath())) {
      auto ctx = context(std::chrono::milliseconds(500));
      ctx->set_wait_for_ready(true);
      runtime::v1::VersionRequest req;
      runtime::v1::VersionResponse resp;
      const auto s = rpc_->stub->Version(ctx.get(), req, &resp);
      if (s.ok()) return;
      if (Clock::now() > deadline) throw std::runtime_error(status("CRI Version", s));
    } else if (Clock::now() > deadline) {
      throw std::runtime_error("no socket " + socketPath() + " after 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Containerd::stopDaemon() {
  if (daemon_pid_ <= 0) return;
  rpc_.reset();
  ::kill(daemon_pid_, SIGTERM);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int wstatus = 0;
  while (::waitpid(daemon_pid_, &wstatus, WNOHANG) == 0) {
    if (Clock::now() > deadline) {
      ::kill(daemon_pid_, SIGKILL);
      ::waitpid(daemon_pid_, &wstatus, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  daemon_pid_ = 0;
}

void Containerd::startDaemon() {
  if (daemon_pid_ > 0) return;
  try {
    spawnDaemon();
    waitForCri();
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("containerd fixture: ") + e.what() + "\n" + daemonLog());
  }
}

std::vector<int> Containerd::shimPids() const {
  // A shim's command line names the daemon's socket: `containerd-shim-runc-v2 -namespace
  // k8s.io -id ID -address SOCKET`.
  return processesNaming({"containerd-shim", " " + socketPath() + " "});
}

Containerd::Pod Containerd::runPod(const PodSpec& spec) {
  if (!rpc_) throw std::runtime_error("runPod: the daemon is stopped");
  static std::atomic<int> uids{0};
  runtime::v1::RunPodSandboxRequest req;
  auto* config = req.mutable_config();
  auto* meta = config->mutable_metadata();
  meta->set_name(spec.name);
  meta->set_namespace_(spec.ns);
  meta->set_uid(spec.uid.empty()
                    ? "uid-" + std::to_string(::getpid()) + "-" + std::to_string(uids.fetch_add(1))
                    : spec.uid);
  meta->set_attempt(0);
  config->set_hostname(spec.host_network ? "" : spec.name);
  config->mutable_labels()->insert(spec.labels.begin(), spec.labels.end());
  config->mutable_annotations()->insert(spec.annotations.begin(), spec.annotations.end());
  // Its own cgroup parent, so what a killed test leaves is found (and no kubelet's is used).
  config->mutable_linux()->set_cgroup_parent(cgroupParent());
  config->mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
      spec.host_network ? runtime::v1::NODE : runtime::v1::POD);
  runtime::v1::RunPodSandboxResponse resp;
  auto ctx = context(std::chrono::seconds(60));
  auto s = rpc_->stub->RunPodSandbox(ctx.get(), req, &resp);
  if (!s.ok()) throw std::runtime_error(status("RunPodSandbox " + spec.name, s));

  Pod pod;
  pod.id = resp.pod_sandbox_id();
  sandboxes_.push_back(pod.id);
  saveState();
  pod.name = spec.name;
  pod.ns = spec.ns;
  pod.uid = meta->uid();
  runtime::v1::PodSandboxStatusRequest sreq;
  sreq.set_pod_sandbox_id(pod.id);
  sreq.set_verbose(true);
  runtime::v1::PodSandboxStatusResponse sresp;
  auto sctx = context(std::chrono::seconds(10));
  s = rpc_->stub->PodSandboxStatus(sctx.get(), sreq, &sresp);
  if (!s.ok()) throw std::runtime_error(status("PodSandboxStatus " + spec.name, s));
  // With dual stack, one address per range set: IPv4 first (ip), then IPv6 (additional_ips).
  std::vector<std::string> ips = {sresp.status().network().ip()};
  for (const auto& more : sresp.status().network().additional_ips()) ips.push_back(more.ip());
  for (const auto& ip : ips) {
    auto& slot = ip.find(':') != std::string::npos ? pod.ip6 : pod.ip;
    if (slot.empty()) slot = ip;
  }
  // Verbose status carries containerd's view as JSON: the pause PID and the OCI spec, whose
  // network namespace path (/var/run/netns/cni-..., a bind mount containerd keeps until
  // RemovePodSandbox) stays valid while the daemon is down and across restarts, unlike
  // /proc/PID/ns/net, which dies with the pause process.
  const auto it = sresp.info().find("info");
  if (it != sresp.info().end()) {
    const auto info = nlohmann::json::parse(it->second, nullptr, false);
    if (!info.is_discarded()) {
      pod.pid = info.value("pid", 0);
      const auto& namespaces = info["runtimeSpec"]["linux"]["namespaces"];
      if (namespaces.is_array()) {
        for (const auto& ns : namespaces) {
          if (ns.value("type", "") == "network") pod.netns = ns.value("path", "");
        }
      }
    }
  }
  if (pod.netns.empty() && pod.pid > 0) pod.netns = "/proc/" + std::to_string(pod.pid) + "/ns/net";
  if (pod.netns.empty()) {
    throw std::runtime_error("PodSandboxStatus " + spec.name + ": no network namespace in info");
  }
  if (!spec.host_network) {
    netns_paths_.push_back(pod.netns);
    saveState();
    // "2: eth0@if17: ..." inside the pod: 17 is the host end's ifindex.
    const std::string link = podShOutput(pod, "ip -o link show dev eth0");
    const auto at = link.find("@if");
    char name[IF_NAMESIZE] = {};
    if (at == std::string::npos ||
        ::if_indextoname(static_cast<unsigned>(std::atoi(link.c_str() + at + 3)), name) ==
            nullptr) {
      throw std::runtime_error("pod " + spec.name + ": no host end of eth0 in: " + link);
    }
    pod.host_veth = name;
  }
  return pod;
}

void Containerd::stopPod(const std::string& id) {
  if (!rpc_) throw std::runtime_error("stopPod: the daemon is stopped");
  runtime::v1::StopPodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  runtime::v1::StopPodSandboxResponse resp;
  auto ctx = context(std::chrono::seconds(30));
  const auto s = rpc_->stub->StopPodSandbox(ctx.get(), req, &resp);
  if (!s.ok()) throw std::runtime_error(status("StopPodSandbox " + id, s));
}

void Containerd::removePod(const std::string& id) {
  stopPod(id);
  runtime::v1::RemovePodSandboxRequest req;
  req.set_pod_sandbox_id(id);
  runtime::v1::RemovePodSandboxResponse resp;
  auto ctx = context(std::chrono::seconds(30));
  const auto s = rpc_->stub->RemovePodSandbox(ctx.get(), req, &resp);
  if (!s.ok()) throw std::runtime_error(status("RemovePodSandbox " + id, s));
}

std::vector<Containerd::Listed> Containerd::listPods() {
  if (!rpc_) throw std::runtime_error("listPods: the daemon is stopped");
  runtime::v1::ListPodSandboxRequest req;
  runtime::v1::ListPodSandboxResponse resp;
  auto ctx = context(std::chrono::seconds(10));
  const auto s = rpc_->stub->ListPodSandbox(ctx.get(), req, &resp);
  if (!s.ok()) throw std::runtime_error(status("ListPodSandbox", s));
  std::vector<Listed> out;
  for (const auto& item : resp.items()) {
    Listed l;
    l.id = item.id();
    l.name = item.metadata().name();
    l.ns = item.metadata().namespace_();
    l.uid = item.metadata().uid();
    l.ready = item.state() == runtime::v1::SANDBOX_READY;
    l.labels.insert(item.labels().begin(), item.labels().end());
    l.annotations.insert(item.annotations().begin(), item.annotations().end());
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<std::string> Containerd::mounts() const { return mountsUnder(dir_); }

void Containerd::saveState() const {
  const nlohmann::json state = {{"pid", ::getpid()},        {"start", processStart(::getpid())},
                                {"bridge", bridge_},        {"network", network_},
                                {"cgroup", cgroupParent()}, {"netns", netns_paths_},
                                {"sandboxes", sandboxes_}};
  writeFile(dir_ + "/fixture.json.new", state.dump());
  fs::rename(dir_ + "/fixture.json.new", dir_ + "/fixture.json");
}

void Containerd::cleanup() noexcept {
  // The runtime undoes what it did (pause processes, shims, CNI, mounts, netns) best, so
  // sandboxes go through CRI first; a stopped daemon comes back for that.
  try {
    if (daemon_pid_ <= 0 && !dir_.empty() && fs::exists(dir_ + "/config.toml") &&
        (!shimPids().empty() || !netns_paths_.empty())) {
      startDaemon();
    }
    if (rpc_) {
      for (const auto& pod : listPods()) {
        try {
          removePod(pod.id);
        } catch (const std::exception& e) {
          warn(e.what());
        }
      }
    }
  } catch (const std::exception& e) {
    warn(e.what());
  }
  stopDaemon();
  if (dir_.empty()) return;
  // A shim exits on its own shortly after its sandbox is removed; give it that time before
  // treating it as left over.
  try {
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (!shimPids().empty() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  } catch (const std::exception& e) {
    warn(e.what());
  }
  removeLeftovers({dir_, bridge_, network_, cgroupParent(), netns_paths_, sandboxes_});
}

std::string containerdMissing() {
  std::string missing;
  for (const char* tool : {"containerd", "ctr", "runc", "containerd-shim-runc-v2", "nsenter"}) {
    if (shOutput(std::string("command -v ") + tool).empty()) missing += std::string(" ") + tool;
  }
  for (const char* file : {"/usr/lib/cni/bridge", "/usr/lib/cni/host-local",
                           "/usr/lib/cni/loopback", "/bin/busybox"}) {
    if (!fs::exists(file)) missing += std::string(" ") + file;
  }
  return missing.empty() ? "" : "containerd fixture needs:" + missing;
}

std::string Containerd::ctr(const std::string& args) const {
  const std::string out =
      shOutput("ctr --address " + quote(socketPath()) + " " + args + " 2>&1; echo \"rc=$?\"");
  const auto pos = out.rfind("rc=");
  if (pos == std::string::npos || out.compare(pos, 5, "rc=0\n") != 0) {
    throw std::runtime_error("ctr " + args + ": " + out);
  }
  return out.substr(0, pos);
}

void Containerd::importImage(const std::string& archive) const {
  ctr("--namespace k8s.io images import --snapshotter native " + quote(archive));
}

void inPod(const Containerd::Pod& pod, const std::function<void()>& fn) { inNetns(pod.netns, fn); }

void podSh(const Containerd::Pod& pod, const std::string& command) {
  sh("nsenter --net=" + quote(pod.netns) + " sh -c " + quote(command));
}

std::string podShOutput(const Containerd::Pod& pod, const std::string& command) {
  return shOutput("nsenter --net=" + quote(pod.netns) + " sh -c " + quote(command));
}

}  // namespace ayaflow::test
