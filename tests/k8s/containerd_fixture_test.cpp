// SPDX-License-Identifier: MIT OR Apache-2.0
// The real-containerd fixture itself: pods get addresses on its bridge and talk over it,
// CRI reports what was asked for, host-local reuses an address when the range holds one,
// the daemon can go away and come back under running pods, and nothing of it survives its
// destructor.

#include "containerd_fixture.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "netns.h"

namespace ayaflow::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

/// True when `ip` lies in the IPv4 subnet "a.b.c.d/len".
bool inSubnet(const std::string& ip, const std::string& subnet) {
  const auto slash = subnet.find('/');
  in_addr a{}, net{};
  if (inet_pton(AF_INET, ip.c_str(), &a) != 1 ||
      inet_pton(AF_INET, subnet.substr(0, slash).c_str(), &net) != 1) {
    return false;
  }
  const int len = std::stoi(subnet.substr(slash + 1));
  const std::uint32_t mask = len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
  return (ntohl(a.s_addr) & mask) == (ntohl(net.s_addr) & mask);
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), to tell it from a later
/// process with the same PID; empty when it is gone or has exited (a zombie: shims and pause
/// processes are reparented to PID 1, which reaps them when it gets to it).
std::string startTime(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos || stat.compare(close, 4, ") Z ") == 0) return "";
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
  }
  return field;  // field 22: starttime
}

/// `count` datagrams from `from` to `to` (port 5000) arrive, each once: the receiving socket
/// is bound in `to`'s namespace, the sender's in `from`'s.
void udpBetween(const Containerd::Pod& from, const Containerd::Pod& to, int count,
                bool v6 = false) {
  const std::string& src = v6 ? from.ip6 : from.ip;
  const std::string& dst = v6 ? to.ip6 : to.ip;
  int rx = -1, tx = -1;
  inPod(to, [&] { rx = udpSocket(dst, 5000); });
  inPod(from, [&] { tx = udpSocket(src, 0); });
  for (int i = 0; i < count; ++i) udpSend(tx, dst, 5000, 100);
  udpReceive(rx, count);
  close(tx);
  close(rx);
}

/// Interfaces enslaved to the bridge (the pods' host-side veths).
std::set<std::string> bridgePorts(const std::string& bridge) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/sys/class/net/" + bridge + "/brif", ec)) {
    out.insert(e.path().filename());
  }
  return out;
}

TEST(ContainerdFixture, PodsGetAddressesTalkOverTheBridgeAndAreListedWithLabels) {
  AYAFLOW_REQUIRE_CONTAINERD();
  Containerd runtime;
  std::cout << "fixture start " << runtime.startTime().count() << " ms (pause image import "
            << runtime.imageTime().count() << " ms), " << runtime.runtimeVersion() << ", subnet "
            << runtime.subnet() << ", bridge " << runtime.bridge() << "\n";
  EXPECT_NE(runtime.runtimeVersion().find("containerd"), std::string::npos);
  EXPECT_NE(runtime.ctr("--namespace k8s.io images ls -q").find("ayaflow.test/pause:1"),
            std::string::npos);

  // The bridge is there, up, with the gateway address, before any pod.
  EXPECT_NE(shOutput("ip -4 -o addr show dev " + runtime.bridge() + " up")
                .find(" " + runtime.gateway() + "/"),
            std::string::npos);

  auto t = Clock::now();
  const auto web = runtime.runPod({"web-7d9f8c-abcde", "shop", "", {{"app", "web"}}, {}});
  const double web_ms = ms(Clock::now() - t);
  t = Clock::now();
  const auto db =
      runtime.runPod({"db-0", "data", "", {{"app", "db"}, {"tier", "storage"}}, {{"a", "b"}}});
  const double db_ms = ms(Clock::now() - t);
  std::cout << "runPod " << web_ms << " ms, " << db_ms << " ms\n";
  RecordProperty("fixture_start_ms", static_cast<int>(runtime.startTime().count()));
  RecordProperty("run_pod_ms", static_cast<int>(web_ms));

  // Distinct addresses on the subnet, neither the gateway's.
  EXPECT_NE(web.ip, db.ip);
  EXPECT_TRUE(inSubnet(web.ip, runtime.subnet())) << web.ip;
  EXPECT_TRUE(inSubnet(db.ip, runtime.subnet())) << db.ip;
  EXPECT_NE(web.ip, runtime.gateway());
  EXPECT_GT(web.pid, 0);
  EXPECT_NE(web.netns, db.netns);

  // Independently of CRI: the address is on the pod's eth0, the gateway on the bridge, and
  // each pod hangs on the bridge by its own veth.
  EXPECT_NE(podShOutput(web, "ip -4 -o addr show dev eth0").find(" " + web.ip + "/"),
            std::string::npos);
  EXPECT_NE(
      shOutput("ip -4 -o addr show dev " + runtime.bridge()).find(" " + runtime.gateway() + "/"),
      std::string::npos);
  EXPECT_EQ(bridgePorts(runtime.bridge()), (std::set<std::string>{web.host_veth, db.host_veth}));
  EXPECT_EQ(web.ip6, "");

  // Traffic over the bridge: ping both ways and to the gateway, exact UDP datagrams.
  podSh(web, "busybox ping -c 1 -W 5 " + db.ip);
  podSh(db, "busybox ping -c 1 -W 5 " + web.ip);
  podSh(web, "busybox ping -c 1 -W 5 " + runtime.gateway());
  udpBetween(web, db, 20);
  udpBetween(db, web, 7);

  // ListPodSandbox gives back names, namespaces, labels and annotations.
  const auto listed = runtime.listPods();
  ASSERT_EQ(listed.size(), 2u);
  for (const auto& l : listed) {
    EXPECT_TRUE(l.ready);
    if (l.id == web.id) {
      EXPECT_EQ(l.name, "web-7d9f8c-abcde");
      EXPECT_EQ(l.ns, "shop");
      EXPECT_EQ(l.uid, web.uid);
      EXPECT_EQ(l.labels, (std::map<std::string, std::string>{{"app", "web"}}));
    } else {
      EXPECT_EQ(l.id, db.id);
      EXPECT_EQ(l.name, "db-0");
      EXPECT_EQ(l.ns, "data");
      EXPECT_EQ(l.labels, (std::map<std::string, std::string>{{"app", "db"}, {"tier", "storage"}}));
      EXPECT_EQ(l.annotations, (std::map<std::string, std::string>{{"a", "b"}}));
    }
  }

  // Stop: the pause process goes (it exits on the signal), the pod stays listed, not ready.
  const std::string web_start = startTime(web.pid);
  t = Clock::now();
  runtime.stopPod(web.id);
  std::cout << "stopPod " << ms(Clock::now() - t) << " ms\n";
  EXPECT_NE(startTime(web.pid), web_start) << "pause process " << web.pid << " survived";
  for (const auto& l : runtime.listPods()) {
    EXPECT_EQ(l.ready, l.id != web.id) << l.name;
  }
  runtime.removePod(web.id);
  EXPECT_EQ(runtime.listPods().size(), 1u);
  EXPECT_FALSE(fs::exists(web.netns));
  EXPECT_EQ(bridgePorts(runtime.bridge()), std::set<std::string>{db.host_veth});
}

TEST(ContainerdFixture, PauseProcessExitsOnSigterm) {
  AYAFLOW_REQUIRE_CONTAINERD();
  Containerd runtime;
  const auto pod = runtime.runPod({"p", "default", "", {}, {}});
  const std::string start = startTime(pod.pid);
  ASSERT_NE(start, "");
  // PID 1 of a PID namespace ignores signals it has no handler for; the pause image's
  // entrypoint handles SIGTERM, so the sandbox ends without a SIGKILL.
  ASSERT_EQ(kill(pod.pid, SIGTERM), 0);
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (startTime(pod.pid) == start && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(startTime(pod.pid), start) << "pause process ignored SIGTERM";
}

TEST(ContainerdFixture, DualStackPodsGetBothAddressesAndTalkOverIpv6) {
  AYAFLOW_REQUIRE_CONTAINERD();
  ContainerdOptions options;
  options.ipv6 = true;
  Containerd runtime(options);
  const auto a = runtime.runPod({"a", "default", "", {}, {}});
  const auto b = runtime.runPod({"b", "default", "", {}, {}});
  EXPECT_TRUE(inSubnet(a.ip, runtime.subnet())) << a.ip;
  ASSERT_FALSE(a.ip6.empty());
  ASSERT_FALSE(b.ip6.empty());
  EXPECT_NE(a.ip6, b.ip6);
  const std::string prefix6 = runtime.subnet6().substr(0, runtime.subnet6().find("::") + 1);
  EXPECT_EQ(a.ip6.rfind(prefix6, 0), 0u) << a.ip6 << " not in " << runtime.subnet6();
  EXPECT_NE(podShOutput(a, "ip -6 -o addr show dev eth0").find(" " + a.ip6 + "/"),
            std::string::npos);
  podSh(a, "busybox ping -6 -c 1 -W 5 " + runtime.gateway6());
  udpBetween(a, b, 9, true);
  udpBetween(b, a, 4, true);
  udpBetween(a, b, 2);
}

/// The /tmp/ayaflow-ctrd-* directories (fixtures of this and other test processes).
std::set<std::string> fixtureDirs() {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator("/tmp")) {
    if (e.path().filename().string().rfind("ayaflow-ctrd-", 0) == 0) out.insert(e.path());
  }
  return out;
}

TEST(ContainerdFixture, ASubnetInUseFailsTheConstructorWhichLeavesNothing) {
  AYAFLOW_REQUIRE_CONTAINERD();
  Containerd first;
  const auto dirs = fixtureDirs();
  const auto links = shOutput("ip -o link show | cut -d: -f2");
  ContainerdOptions options;
  options.subnet = first.subnet();
  try {
    Containerd second(options);
    ADD_FAILURE() << "two fixtures on " << first.subnet();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("is in use"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fixtureDirs(), dirs);
  EXPECT_EQ(shOutput("ip -o link show | cut -d: -f2"), links);
  // The first one is untouched.
  const auto pod = first.runPod({"p", "default", "", {}, {}});
  podSh(pod, "busybox ping -c 1 -W 5 " + first.gateway());
}

TEST(ContainerdFixture, HostNetworkPodSharesTheNodesNamespace) {
  AYAFLOW_REQUIRE_CONTAINERD();
  Containerd runtime;
  Containerd::PodSpec spec{"node-agent", "kube-system", "", {}, {}};
  spec.host_network = true;
  const auto pod = runtime.runPod(spec);
  EXPECT_EQ(pod.ip, "");
  struct stat pod_ns {
  }, own_ns{};
  ASSERT_EQ(stat(pod.netns.c_str(), &pod_ns), 0) << pod.netns;
  ASSERT_EQ(stat("/proc/self/ns/net", &own_ns), 0);
  EXPECT_EQ(pod_ns.st_ino, own_ns.st_ino);
}

TEST(ContainerdFixture, OneAddressRangeGivesTheAddressToTheNextPod) {
  AYAFLOW_REQUIRE_CONTAINERD();
  ContainerdOptions options;
  options.subnet = Containerd::freeSubnet();
  const std::string base = options.subnet.substr(0, options.subnet.rfind('.') + 1);
  options.range_start = options.range_end = base + "10";
  Containerd runtime(options);

  const auto first = runtime.runPod({"first", "default", "", {}, {}});
  EXPECT_EQ(first.ip, base + "10");
  // The range is used up: the runtime says why.
  try {
    runtime.runPod({"second", "default", "", {}, {}});
    ADD_FAILURE() << "a second pod got an address from a one-address range";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no IP addresses available"), std::string::npos)
        << e.what();
  }
  runtime.removePod(first.id);
  const auto third = runtime.runPod({"third", "default", "", {}, {}});
  EXPECT_EQ(third.ip, base + "10");
  podSh(third, "busybox ping -c 1 -W 5 " + runtime.gateway());
}

TEST(ContainerdFixture, PodsOutliveTheDaemonWhichComesBackWithThem) {
  AYAFLOW_REQUIRE_CONTAINERD();
  Containerd runtime;
  const auto a = runtime.runPod({"a", "default", "", {{"k", "a"}}, {}});
  const auto b = runtime.runPod({"b", "default", "", {{"k", "b"}}, {}});
  const std::string a_start = startTime(a.pid), b_start = startTime(b.pid);
  const int old_daemon = runtime.daemonPid();
  ASSERT_TRUE(runtime.answers());

  runtime.stopDaemon();
  EXPECT_FALSE(runtime.daemonRunning());
  EXPECT_EQ(startTime(old_daemon), "");
  EXPECT_FALSE(runtime.answers());
  EXPECT_EQ(kill(old_daemon, 0), -1);
  // Pods keep running and talking.
  EXPECT_EQ(startTime(a.pid), a_start);
  EXPECT_EQ(startTime(b.pid), b_start);
  EXPECT_EQ(runtime.shimPids().size(), 2u);
  udpBetween(a, b, 5);

  const auto t = Clock::now();
  runtime.startDaemon();
  std::cout << "startDaemon " << ms(Clock::now() - t) << " ms\n";
  EXPECT_TRUE(runtime.answers());
  EXPECT_NE(runtime.daemonPid(), old_daemon);
  const auto listed = runtime.listPods();
  ASSERT_EQ(listed.size(), 2u);
  for (const auto& l : listed) {
    EXPECT_TRUE(l.ready) << l.name;
    EXPECT_EQ(l.labels.at("k"), l.name);
  }
  // And it still runs new pods next to the old ones.
  const auto c = runtime.runPod({"c", "default", "", {}, {}});
  udpBetween(c, a, 3);
}

/// What a fixture puts on the machine, written down while it runs, to check afterwards that
/// none of it is left.
struct Traces {
  std::string dir, bridge, network, cgroup, socket;
  std::vector<std::string> netns, sandboxes;
  std::vector<std::pair<int, std::string>> processes;  // PID, start time

  Traces() = default;
  explicit Traces(const Containerd& c)
      : dir(c.dir()),
        bridge(c.bridge()),
        network(c.cniNetwork()),
        cgroup(c.cgroupParent()),
        socket(c.socketPath()),
        netns(c.netnsPaths()),
        sandboxes(c.sandboxIds()) {
    if (c.daemonRunning()) addProcess(c.daemonPid());
    for (int pid : c.shimPids()) addProcess(pid);
  }
  void addProcess(int pid) { processes.emplace_back(pid, startTime(pid)); }

  /// While the fixture runs: everything is where it should be.
  void expectPresent() const {
    EXPECT_TRUE(fs::exists(dir));
    EXPECT_TRUE(fs::exists("/sys/class/net/" + bridge));
    for (const auto& ns : netns) EXPECT_TRUE(fs::exists(ns)) << ns;
    for (const auto& [pid, start] : processes) EXPECT_NE(start, "") << pid;
    bool cgroup_seen = false;
    for (const auto& h : fs::directory_iterator("/sys/fs/cgroup")) {
      cgroup_seen = cgroup_seen || fs::exists(h.path().string() + cgroup);
    }
    EXPECT_TRUE(cgroup_seen) << cgroup;
  }

  void expectGone() const {
    for (const auto& [pid, start] : processes) {
      EXPECT_NE(startTime(pid), start) << "process " << pid << " still runs";
    }
    std::ifstream in("/proc/self/mountinfo");
    const std::string mountinfo((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
    EXPECT_EQ(mountinfo.find(dir), std::string::npos) << mountinfo;
    for (const auto& ns : netns) {
      EXPECT_FALSE(fs::exists(ns)) << ns;
      EXPECT_EQ(mountinfo.find(ns), std::string::npos) << ns;
    }
    EXPECT_FALSE(fs::exists("/sys/class/net/" + bridge));
    EXPECT_FALSE(fs::exists(dir));
    // No cgroup, CNI result or shim socket of it; no process naming its directory.
    std::error_code ec;
    EXPECT_FALSE(fs::exists("/sys/fs/cgroup" + cgroup));
    for (const auto& h : fs::directory_iterator("/sys/fs/cgroup", ec)) {
      EXPECT_FALSE(fs::exists(h.path().string() + cgroup)) << h.path() << cgroup;
    }
    for (const auto& e : fs::directory_iterator("/var/lib/cni/results", ec)) {
      const std::string name = e.path().filename();
      EXPECT_NE(name.rfind(network + "-", 0), 0u) << name;
      for (const auto& id : sandboxes) EXPECT_EQ(name.find(id), std::string::npos) << name;
    }
    for (const auto& id : sandboxes) {
      const std::string hash =
          shOutput("printf %s '" + socket + "/k8s.io/" + id + "' | sha256sum").substr(0, 64);
      EXPECT_FALSE(fs::exists("/run/containerd/s/" + hash)) << "shim socket of " << id;
    }
    for (const auto& e : fs::directory_iterator("/proc", ec)) {
      std::ifstream cmd(e.path() / "cmdline");
      const std::string line((std::istreambuf_iterator<char>(cmd)),
                             std::istreambuf_iterator<char>());
      EXPECT_EQ(line.find(dir), std::string::npos) << e.path() << ": " << line;
    }
  }
};

TEST(ContainerdFixture, NothingRemainsAfterTheDestructor) {
  AYAFLOW_REQUIRE_CONTAINERD();
  Traces traces;
  {
    Containerd runtime;
    const auto a = runtime.runPod({"a", "default", "", {}, {}});
    const auto b = runtime.runPod({"b", "default", "", {}, {}});
    const auto c = runtime.runPod({"c", "default", "", {}, {}});
    traces = Traces(runtime);
    for (const auto& pod : {a, b, c}) traces.addProcess(pod.pid);
    EXPECT_EQ(traces.processes.size(), 1u + 3u + 3u);  // daemon, shims, pause processes
    EXPECT_FALSE(runtime.mounts().empty());
    traces.expectPresent();
    runtime.stopPod(c.id);  // one stopped, not removed
    // The hard way out: the daemon is down when the fixture goes.
    runtime.stopDaemon();
  }
  traces.expectGone();
}

TEST(ContainerdFixture, FixtureOfAKilledTestIsRemovedByTheNext) {
  AYAFLOW_REQUIRE_CONTAINERD();
  if (std::getenv("AYAFLOW_FIXTURE_ABANDON") != nullptr) {
    // The child's part: a fixture with a pod, then death without destructors.
    auto* runtime = new Containerd;
    const auto pod = runtime->runPod({"orphan", "default", "", {}, {}});
    Traces traces(*runtime);
    traces.addProcess(pod.pid);
    nlohmann::json out = {{"dir", traces.dir},
                          {"bridge", traces.bridge},
                          {"network", traces.network},
                          {"cgroup", traces.cgroup},
                          {"socket", traces.socket},
                          {"netns", traces.netns},
                          {"sandboxes", traces.sandboxes},
                          {"processes", traces.processes}};
    std::cout << "ABANDONED " << out.dump() << std::endl;
    ::kill(::getpid(), SIGKILL);
  }
  const std::string self = fs::read_symlink("/proc/self/exe");
  const std::string out =
      shOutput("AYAFLOW_FIXTURE_ABANDON=1 " + self +
               " --gtest_filter=ContainerdFixture.FixtureOfAKilledTestIsRemovedByTheNext 2>&1");
  const auto at = out.find("ABANDONED ");
  ASSERT_NE(at, std::string::npos) << out;
  const auto j = nlohmann::json::parse(out.substr(at + 10, out.find('\n', at) - at - 10));
  Traces traces;
  traces.dir = j["dir"];
  traces.bridge = j["bridge"];
  traces.network = j["network"];
  traces.cgroup = j["cgroup"];
  traces.socket = j["socket"];
  traces.netns = j["netns"].get<std::vector<std::string>>();
  traces.sandboxes = j["sandboxes"].get<std::vector<std::string>>();
  traces.processes = j["processes"].get<std::vector<std::pair<int, std::string>>>();
  ASSERT_EQ(traces.processes.size(), 3u);  // daemon, shim, pause
  traces.expectPresent();

  { Containerd next; }  // its constructor removes the orphan

  traces.expectGone();
}

TEST(ContainerdFixture, SequentialFixturesReuseThePauseImage) {
  AYAFLOW_REQUIRE_CONTAINERD();
  for (int i = 0; i < 2; ++i) {
    Containerd runtime;
    const auto t = Clock::now();
    const auto pod = runtime.runPod({"p" + std::to_string(i), "default", "", {}, {}});
    std::cout << "fixture " << i << ": start " << runtime.startTime().count() << " ms (image "
              << runtime.imageTime().count() << " ms), runPod " << ms(Clock::now() - t) << " ms\n";
    EXPECT_TRUE(inSubnet(pod.ip, runtime.subnet()));
  }
}

}  // namespace
}  // namespace ayaflow::test
