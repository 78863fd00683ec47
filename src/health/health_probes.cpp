// SPDX-License-Identifier: MIT OR Apache-2.0
// Loading the tracing probes: each switched-on program is first tried alone (loaded into a
// throw-away copy of the object with tiny maps, attached and detached), so a hook the running
// kernel lacks (no BTF, no fentry on this architecture, a tracepoint without the reason
// argument) is found and left out without failing the others; then the chosen programs are
// loaded together and attached.
#include "ayaflow/health/health_probes.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "ayaflow_health_bpf.skel.h"

namespace ayaflow::health {
namespace {

// Program names in bpf/tracing/tcp_health.bpf.c.
constexpr const char* kRttFentry = "ayaflow_rtt_fe";
constexpr const char* kRttTracepoint = "ayaflow_rtt_tp";
constexpr const char* kStateChange = "ayaflow_state";
constexpr const char* kRetransmit = "ayaflow_rtx";
constexpr const char* kRetransmitOld = "ayaflow_rtx_old";
constexpr const char* kDrop = "ayaflow_drop";

struct Candidate {
  const char* program;
  const char* attach_point;
};

int silentPrint(enum libbpf_print_level, const char*, va_list) { return 0; }

/// Silences libbpf while trials fail on purpose (a verifier log per missing hook would
/// bury the one line that says what is missing).
class QuietLibbpf {
 public:
  QuietLibbpf() : previous_(libbpf_set_print(silentPrint)) {}
  ~QuietLibbpf() { libbpf_set_print(previous_); }

 private:
  libbpf_print_fn_t previous_;
};

using Skeleton = bpf::SkeletonPtr<ayaflow_health_bpf>;

Skeleton openSkeleton() {
  Skeleton skel(ayaflow_health_bpf::open());
  if (!skel) AYAFLOW_SYSTEM_ERROR(errno, "open BPF object ayaflow_health_bpf");
  return skel;
}

void onlyAutoload(ayaflow_health_bpf* skel, const std::vector<const char*>& programs) {
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    bool wanted = false;
    for (const char* name : programs)
      wanted = wanted || std::strcmp(bpf_program__name(prog), name) == 0;
    bpf_program__set_autoload(prog, wanted);
  }
}

/// Whether `program` loads and attaches on this kernel on its own: 0, or the negative error.
/// EPERM is not taken as "no permission" here: a kernel whose fentry cannot attach refuses
/// it with EPERM too (the constructor tells the two apart: with no permission, nothing loads).
int tryProgram(const char* program) {
  QuietLibbpf quiet;
  Skeleton skel = openSkeleton();
  skel->rodata->ayaflow_state_rtt = true;  // every path of the program must load
  skel->rodata->ayaflow_state_rtx = true;
  bpf_map__set_max_entries(skel->maps.sock_health, 1);
  bpf_map__set_max_entries(skel->maps.drop_flows, 1);
  onlyAutoload(skel.get(), {program});
  const int err = ayaflow_health_bpf::load(skel.get());
  if (err == -ENOMEM) AYAFLOW_SYSTEM_ERROR(ENOMEM, std::string("load BPF program ") + program);
  if (err != 0) return err;
  bpf_link* link = bpf_program__attach(bpf_object__find_program_by_name(skel->obj, program));
  if (link == nullptr) return -errno;
  bpf_link__destroy(link);
  return 0;
}

/// The first candidate that works, or nullptr; `error` holds the last failure.
const Candidate* firstWorking(const std::vector<Candidate>& candidates,
                              const std::vector<std::string>& absent, int& error) {
  for (const Candidate& c : candidates) {
    if (std::find(absent.begin(), absent.end(), c.attach_point) != absent.end()) {
      error = -ENOENT;
      continue;
    }
    error = tryProgram(c.program);
    if (error == 0) return &c;
  }
  return nullptr;
}

/// Sums a per-CPU value of `n` u64 counters over `cpus` CPUs.
template <std::size_t N>
std::array<std::uint64_t, N> sumCpus(const std::vector<std::uint64_t>& values, int cpus,
                                     std::size_t offset_words = 0) {
  std::array<std::uint64_t, N> sum{};
  for (int cpu = 0; cpu < cpus; ++cpu) {
    for (std::size_t i = 0; i < N; ++i) {
      sum[i] += values[offset_words + static_cast<std::size_t>(cpu) * N + i];
    }
  }
  return sum;
}

/// Visits every entry of a hash map: batch lookups (one syscall per 256 entries) where the
/// kernel has them, else get_next_key + lookup.
template <typename Key, typename Value, typename Visit>
void walkMap(int fd, const char* name, const Visit& visit) {
  constexpr std::uint32_t kBatch = 256;
  thread_local std::vector<Key> keys;
  thread_local std::vector<Value> values;
  keys.resize(kBatch);
  values.resize(kBatch);
  Key token{};  // the batch cursor: a bucket index, at most key-sized
  Key next_token{};
  bool first = true;
  for (;;) {
    std::uint32_t count = kBatch;
    const int rc = bpf_map_lookup_batch(fd, first ? nullptr : &token, &next_token, keys.data(),
                                        values.data(), &count, nullptr);
    const int err = rc == 0 ? 0 : errno;
    if (rc != 0 && err != ENOENT) {
      if (first && (err == EINVAL || err == ENOTSUP || err == ENOSPC || err == EOPNOTSUPP)) {
        break;  // no batch operations here (or a bucket larger than the batch): walk by key
      }
      AYAFLOW_SYSTEM_ERROR(err, std::string("read map '") + name + "'");
    }
    for (std::uint32_t i = 0; i < count; ++i) visit(keys[i], values[i]);
    if (err == ENOENT) return;
    token = next_token;
    first = false;
  }
  Key key{}, next{};
  Value value{};
  const Key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (bpf_map_lookup_elem(fd, &next, &value) == 0) visit(next, value);
    key = next;
    prev = &key;
  }
}

}  // namespace

const char* probeName(Probe probe) {
  switch (probe) {
    case Probe::Rtt:
      return "rtt";
    case Probe::Retransmits:
      return "retransmits";
    case Probe::Drops:
      return "drops";
  }
  return "unknown";
}

HealthProbes::HealthProbes(const HealthOptions& options) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) AYAFLOW_SYSTEM_ERROR(-cpus, "count possible CPUs");
  ncpus_ = cpus;
  auto log = logger("health");

  // Preferred attach point first, fallbacks after it.
  const std::vector<Candidate> rtt{{kRttFentry, "fentry/tcp_rcv_established"},
                                   {kRttTracepoint, "tp_btf/tcp_probe"}};
  const std::vector<Candidate> retransmit{{kRetransmit, "tp_btf/tcp_retransmit_skb"},
                                          {kRetransmitOld, "tp_btf/tcp_retransmit_skb"}};
  const std::vector<Candidate> drop{{kDrop, "tp_btf/kfree_skb"}};
  const std::vector<Candidate>* candidates[3] = {&rtt, &retransmit, &drop};
  const bool enabled[3] = {options.rtt, options.retransmits, options.drops};
  const char* missing_text[3] = {
      "TCP smoothed RTT unavailable: neither fentry/tcp_rcv_established nor "
      "tp_btf/tcp_probe attaches on this kernel (needs BTF)",
      "TCP retransmissions unavailable: tp_btf/tcp_retransmit_skb does not attach on this "
      "kernel (needs BTF)",
      "drop reasons unavailable: tp_btf/kfree_skb with a reason argument does not attach on "
      "this kernel (needs 5.17 or later with BTF)"};

  std::vector<const char*> chosen;
  const Candidate* picked[3] = {nullptr, nullptr, nullptr};
  for (int i = 0; i < 3; ++i) {
    status_[i].enabled = enabled[i];
    if (!enabled[i]) continue;
    int error = 0;
    picked[i] = firstWorking(*candidates[i], options.absent_hooks, error);
    if (picked[i] == nullptr) {
      status_[i].missing = std::string(missing_text[i]) + " (" + std::strerror(-error) + ")";
      log->warn("{}", status_[i].missing);
      continue;
    }
    chosen.push_back(picked[i]->program);
  }
  // TCP state changes serve the other two: a last RTT sample as a socket leaves ESTABLISHED,
  // and the start of a socket's retransmission count. Both probes work without it (no final
  // sample; a new socket's first retransmission counted only if it was sent).
  bool state_change = false;
  if (picked[0] != nullptr || picked[1] != nullptr) {
    const auto& absent = options.absent_hooks;
    const int error =
        std::find(absent.begin(), absent.end(), "tp_btf/inet_sock_set_state") != absent.end()
            ? -ENOENT
            : tryProgram(kStateChange);
    state_change = error == 0;
    if (!state_change) {
      log->info("no TCP state changes: tp_btf/inet_sock_set_state does not attach ({})",
                std::strerror(-error));
    }
  }
  if (state_change) chosen.push_back(kStateChange);
  if (chosen.empty()) {
    // Every enabled probe refused with EPERM: that is missing privileges, not missing hooks.
    bool all_eperm = true, any = false;
    for (int i = 0; i < 3; ++i) {
      if (!enabled[i]) continue;
      any = true;
      all_eperm = all_eperm && status_[i].missing.find(std::strerror(EPERM)) != std::string::npos;
    }
    if (any && all_eperm) {
      AYAFLOW_SYSTEM_ERROR(EPERM, "load BPF tracing probes (needs root or CAP_BPF + CAP_PERFMON)");
    }
    return;
  }

  skel_ = openSkeleton();
  skel_->rodata->ayaflow_state_rtt = picked[0] != nullptr;
  skel_->rodata->ayaflow_state_rtx = picked[1] != nullptr;
  skel_->rodata->ayaflow_drop_flow_budget = options.drop_flow_budget;
  skel_->rodata->ayaflow_rtt_interval_ns =
      static_cast<std::uint64_t>(options.rtt_sample_interval.count()) * 1000000ULL;
  int err = bpf_map__set_max_entries(skel_->maps.sock_health, std::max(1u, options.socket_entries));
  if (err == 0) {
    err = bpf_map__set_max_entries(skel_->maps.drop_flows, std::max(1u, options.drop_flow_entries));
  }
  if (err != 0) AYAFLOW_SYSTEM_ERROR(-err, "size health maps");
  onlyAutoload(skel_.get(), chosen);
  err = ayaflow_health_bpf::load(skel_.get());
  if (err != 0) {
    AYAFLOW_SYSTEM_ERROR(-err, "load BPF tracing probes (each loaded alone before)");
  }
  for (int i = 0; i < 3; ++i) {
    if (picked[i] == nullptr) continue;
    bpf_program* prog = bpf_object__find_program_by_name(skel_->obj, picked[i]->program);
    bpf_link* link = bpf_program__attach(prog);
    if (link == nullptr) {
      const int e = errno;
      status_[i].missing = std::string(missing_text[i]) + " (" + std::strerror(e) + ")";
      log->warn("{}", status_[i].missing);
      continue;
    }
    // Owned by the skeleton's link slots would need one slot per program; keep them here.
    links_.push_back(link);
    status_[i].attached = true;
    status_[i].attach_point = picked[i]->attach_point;
  }
  if (state_change && (status_[0].attached || status_[1].attached)) {
    bpf_link* link =
        bpf_program__attach(bpf_object__find_program_by_name(skel_->obj, kStateChange));
    if (link != nullptr) links_.push_back(link);
  }
  if (status_[2].attached) reason_names_ = DropReasonNames::fromKernel();
  for (int i = 0; i < 3; ++i) {
    if (status_[i].attached) {
      log->info("{} probe attached at {}", probeName(kProbes[i]), status_[i].attach_point);
    }
  }
}

HealthProbes::~HealthProbes() {
  for (bpf_link* link : links_) bpf_link__destroy(link);
}

bool HealthProbes::anyAttached() const {
  for (const auto& s : status_) {
    if (s.attached) return true;
  }
  return false;
}

void HealthProbes::forEachSocket(const SocketVisitor& visit) const {
  if (!skel_) return;
  walkMap<ayaflow_tuple, ayaflow_sock_health>(bpf_map__fd(skel_->maps.sock_health), "sock_health",
                                              visit);
}

void HealthProbes::forEachDrop(const DropVisitor& visit) const {
  if (!skel_) return;
  walkMap<ayaflow_drop_key, ayaflow_drop_value>(bpf_map__fd(skel_->maps.drop_flows), "drop_flows",
                                                visit);
}

std::vector<std::pair<std::uint32_t, std::uint64_t>> HealthProbes::dropTotals() const {
  std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
  if (!skel_ || !status_[2].attached) return out;
  const int fd = bpf_map__fd(skel_->maps.drop_totals);
  const auto cpus = static_cast<std::size_t>(ncpus_);
  std::vector<std::uint32_t> keys(AYAFLOW_DROP_REASON_SLOTS);
  std::vector<std::uint64_t> values(AYAFLOW_DROP_REASON_SLOTS * cpus);
  std::uint32_t count = AYAFLOW_DROP_REASON_SLOTS;
  std::uint32_t next = 0;
  // One syscall for all slots and CPUs where the kernel has batch lookups on arrays.
  if (bpf_map_lookup_batch(fd, nullptr, &next, keys.data(), values.data(), &count, nullptr) != 0 &&
      errno != ENOENT) {
    count = 0;
    for (std::uint32_t slot = 0; slot < AYAFLOW_DROP_REASON_SLOTS; ++slot) {
      keys[slot] = slot;
      if (bpf_map_lookup_elem(fd, &slot, values.data() + slot * cpus) != 0) {
        AYAFLOW_SYSTEM_ERROR(errno, "read map 'drop_totals'");
      }
      ++count;
    }
  }
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint64_t sum = 0;
    for (std::size_t cpu = 0; cpu < cpus; ++cpu) sum += values[i * cpus + cpu];
    if (sum != 0) out.emplace_back(keys[i], sum);
  }
  return out;
}

HealthTotals HealthProbes::totals() const {
  HealthTotals t;
  if (!skel_) return t;
  std::vector<std::uint64_t> values(5 * static_cast<std::size_t>(ncpus_));
  const std::uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.health_totals), &zero, values.data()) != 0) {
    AYAFLOW_SYSTEM_ERROR(errno, "read map 'health_totals'");
  }
  const auto sum = sumCpus<5>(values, ncpus_);
  t.retrans_segs = sum[0];
  t.drop_flow_overflow = sum[1];
  t.rtt_samples = sum[2];
  t.sock_overflow = sum[3];
  t.drop_flow_rate_limited = sum[4];
  return t;
}

void HealthProbes::removeSockets(const std::vector<ayaflow_tuple>& keys) {
  if (!skel_) return;
  const int fd = bpf_map__fd(skel_->maps.sock_health);
  for (const auto& key : keys) bpf_map_delete_elem(fd, &key);  // gone already: fine
}

void HealthProbes::removeDrops(const std::vector<ayaflow_drop_key>& keys) {
  if (!skel_) return;
  const int fd = bpf_map__fd(skel_->maps.drop_flows);
  for (const auto& key : keys) bpf_map_delete_elem(fd, &key);
}

}  // namespace ayaflow::health
