// SPDX-License-Identifier: MIT OR Apache-2.0
// The TC classifier's size and per-packet cost (root): loads the program as the agent does
// (aggregated mode, IPv4 only, unless told otherwise), prints the translated and JIT size of
// each program and runs crafted frames through BPF_PROG_TEST_RUN `--repeat` times each,
// several rounds interleaved, so a plain frame and a tunnelled one are compared in one run on
// the same machine state. The kernel times the repeats itself (test_run's duration: mean ns
// per run, including the test-run loop's own overhead, which is the same for every frame);
// compare ratios, not absolute figures. bench/bench_bpf_parse_compare.sh runs two builds of
// it in turn: before and after a change of the program, in one invocation.
//
//   --raw           raw mode (an event per packet; the ring is drained after each batch)
//   --deep-inspect  DNS/TLS payload capture on
//   --ipv6          IPv6 counted too
//
//   bench_bpf_parse [--repeat N] [--rounds R] [--raw] [--deep-inspect] [--ipv6]
//                   [--no-decapsulate] [--pause]
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/bpf_program.h"
#include "packet_builder.h"

namespace {

using ayaflow::test::Bytes;
using namespace ayaflow::test;

/// "translated/JIT" bytes of the program `fd`.
std::string progSize(int fd) {
  bpf_prog_info info{};
  std::uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return "?";
  return std::to_string(info.xlated_prog_len) + "/" + std::to_string(info.jited_prog_len);
}

int drop(void*, void*, size_t) { return 0; }

/// Mean ns per run of `repeat` runs of the program `fd` on `frame`, as the kernel timed it;
/// the skb entered the node through `ingress_ifindex` (0: sent by the node).
double nsPerRun(int fd, const Bytes& frame, int repeat, std::uint32_t ingress_ifindex) {
  __sk_buff ctx{};
  ctx.ingress_ifindex = ingress_ifindex;
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<__u32>(frame.size()), .ctx_in = &ctx,
              .ctx_size_in = sizeof(ctx), .repeat = repeat);
  const int err = bpf_prog_test_run_opts(fd, &opts);
  if (err != 0) {
    std::fprintf(stderr, "test run: %s\n", std::strerror(-err));
    std::exit(1);
  }
  return opts.duration;
}

/// A VXLAN frame written out by hand (outer Ethernet/IPv4/UDP 4789, VXLAN, inner frame).
Bytes vxlanByHand(const Bytes& inner_frame) {
  Bytes udp;
  put16(udp, 40000);
  put16(udp, 4789);
  put16(udp, static_cast<std::uint16_t>(8 + 8 + inner_frame.size()));
  put16(udp, 0);
  const Bytes vx = {0x08, 0, 0, 0, 0, 0, 0x2a, 0};
  return concat(ethernet(0x0800),
                ipv4(17, "192.168.0.1", "192.168.0.2", concat(concat(udp, vx), inner_frame)));
}

}  // namespace

int main(int argc, char** argv) {
  int repeat = 1000000;
  bool ipv6 = false;
  bool pause = false;
  int rounds = 5;
  bool decapsulate = true;
  bool raw = false;
  bool deep_inspect = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--repeat" && i + 1 < argc) {
      repeat = std::atoi(argv[++i]);
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else if (a == "--pause") {
      pause = true;
    } else if (a == "--ipv6") {
      ipv6 = true;
    } else if (a == "--no-decapsulate") {
      decapsulate = false;
    } else if (a == "--raw") {
      raw = true;
    } else if (a == "--deep-inspect") {
      deep_inspect = true;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--repeat N] [--rounds R] [--raw] [--deep-inspect] [--ipv6] "
                   "[--no-decapsulate] [--pause]\n",
                   argv[0]);
      return 2;
    }
  }
  ayaflow::bpf::installLibbpfLogger(false);
  ayaflow::bpf::ProgramOptions options;
  options.flow_table = !raw;
  options.enable_ipv6 = ipv6;
  options.decapsulate = decapsulate;
  options.deep_inspect = deep_inspect;
  // Raw mode: room for a whole batch of events (80 bytes each with the ring's header), so
  // every run writes its event as the agent's would, rather than failing on a full ring. The
  // ring is larger than the agent's (256 KiB by default): its writes miss the cache more.
  options.ring_buffer_size = raw ? 8u << 20 : 256u * 1024u;
  if (raw) repeat = std::min(repeat, 100000);
  ayaflow::bpf::BpfProgram program(options);
  ring_buffer* ring = ring_buffer__new(program.eventsMapFd(), drop, nullptr, nullptr);
  if (ring == nullptr) {
    std::fprintf(stderr, "ring buffer: %s\n", std::strerror(errno));
    return 1;
  }
  // A node's roles, as the agent sets them with `--interface auto`: the device the test runs
  // on (lo, ifindex 1) and a pod's veth (1001) count, a bridge (1002) re-delivers.
  constexpr std::uint32_t kPodVeth = 1001;
  program.setRoles({{1, AYAFLOW_ROLE_COUNT},
                    {static_cast<int>(kPodVeth), AYAFLOW_ROLE_COUNT},
                    {1002, AYAFLOW_ROLE_REENTRY},
                    {0, AYAFLOW_ROLE_REENTRY}});
  std::printf(
      "mode %s%s%s\nxlated/jited bytes: ayaflow_in %s, ayaflow_eg %s, ayaflow_in_ip %s, "
      "ayaflow_eg_ip %s\n",
      raw ? "raw" : "aggregated", deep_inspect ? " deep-inspect" : "", ipv6 ? " ipv6" : "",
      progSize(program.ingressProgramFd()).c_str(), progSize(program.egressProgramFd()).c_str(),
      progSize(program.ingressProgramFd(ayaflow::bpf::LinkLayer::kIpOnly)).c_str(),
      progSize(program.egressProgramFd(ayaflow::bpf::LinkLayer::kIpOnly)).c_str());

  if (pause) {
    std::printf("loaded; press enter\n");
    std::fflush(stdout);
    std::getchar();
  }
  const Bytes inner =
      concat(ethernet(0x0800), ipv4(17, "10.244.1.2", "10.244.2.3", l4(17, 5000, 6000, 64)));
  struct Case {
    const char* name;
    Bytes frame;
    bool egress;
    std::uint32_t ingress_ifindex;
    std::vector<double> ns;
  };
  // udp: a pod's packet where it is counted (its veth's ingress); vxlan: the same packet
  // arriving from another node on the uplink; eg-node: a packet the node sends (counted at
  // egress); eg-dup: a pod's packet at the egress of the pod it goes to (counted already:
  // the once-per-node check ends it). A packet between two pods of one node costs udp +
  // eg-dup.
  std::vector<Case> cases = {
      {"udp", inner, false, 1, {}},
      {"vxlan", vxlanByHand(inner), false, 1, {}},
      {"eg-node", inner, true, 0, {}},
      {"eg-dup", inner, true, kPodVeth, {}},
  };
  for (int r = 0; r < rounds; ++r) {
    for (auto& c : cases) {
      const int fd = c.egress ? program.egressProgramFd() : program.ingressProgramFd();
      c.ns.push_back(nsPerRun(fd, c.frame, repeat, c.ingress_ifindex));
      ring_buffer__consume(ring);
    }
  }
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  // The minimum is the run least disturbed by other work on the machine; the median shows
  // how stable the figures are.
  const double base = *std::min_element(cases[0].ns.begin(), cases[0].ns.end());
  for (const auto& c : cases) {
    const double m = *std::min_element(c.ns.begin(), c.ns.end());
    std::printf("%-8s %4zu bytes  min %6.1f ns/run (median %6.1f)  ratio to udp %.3f\n", c.name,
                c.frame.size(), m, median(c.ns), m / base);
  }
  ring_buffer__free(ring);
  return 0;
}
