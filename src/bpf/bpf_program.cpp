// SPDX-License-Identifier: MIT OR Apache-2.0
#include "ayaflow/bpf/bpf_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <unistd.h>
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "ayaflow/abi/event.h"  // before the skeleton: it asserts the ABI sizes
#include "ayaflow/common/logging.h"
#include "ayaflow/common/system_error.h"
#include "ayaflow_bpf.skel.h"

namespace ayaflow::bpf {

/// What userspace keeps beside the kernel maps; readTotals() may run on any thread.
struct BpfProgram::State {
  std::mutex mu;  // the stats map walk and retirement exclude each other
  /// Counters of retired interfaces, by direction, protocol and family.
  std::map<std::tuple<std::uint8_t, std::uint8_t, std::uint8_t>, KernelCounter> retired;
  std::map<int, std::uint8_t> roles;  // the roles last given to setRoles()
  /// Stats slots in use (1..AYAFLOW_STATS_SLOTS), by ifindex; freed by retireInterfaces().
  std::map<int, std::uint16_t> slots;
  /// What `iface_info` / `iface_roles` hold for each ifindex with a role or a slot.
  std::map<int, ayaflow_iface_info> written;
};

namespace {

bool g_libbpf_verbose = false;

/// A file descriptor closed when it goes out of scope; negative values (a libbpf
/// -errno) are held as they are and never closed.
class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

/// Adds one key's per-CPU counters to `c`.
void addPerCpu(KernelCounter& c, const std::vector<ayaflow_stats>& per_cpu) {
  for (const auto& s : per_cpu) {
    c.packets += s.packets;
    c.bytes += s.bytes;
    c.events_lost += s.events_lost;
    c.super_packets += s.super_packets;
    c.elsewhere_packets += s.elsewhere_packets;
    c.elsewhere_bytes += s.elsewhere_bytes;
  }
}

int libbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG && !g_libbpf_verbose) {
    return 0;
  }
  // Control plane only: the verifier log can be long, so size the buffer.
  va_list copy;
  va_copy(copy, args);
  const int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) {
    return n;
  }
  std::string buf(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(buf.data(), buf.size(), format, args);
  std::string_view text(buf.data(), static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  // libbpf adds the kernel's netlink extack text to failures we handle and
  // report ourselves (for example "no filter there" while probing): debug.
  if (text.find("Kernel error message:") != std::string_view::npos) {
    level = LIBBPF_DEBUG;
    if (!g_libbpf_verbose) {
      return n;
    }
  }
  auto log = logger("bpf");
  switch (level) {
    case LIBBPF_WARN:
      log->warn("{}", text);
      break;
    case LIBBPF_INFO:
      log->info("{}", text);
      break;
    default:
      log->debug("{}", text);
      break;
  }
  return n;
}

}  // namespace

void installLibbpfLogger(bool verbose) {
  g_libbpf_verbose = verbose;
  libbpf_set_print(libbpfPrint);
}

BpfProgram::BpfProgram(const ProgramOptions& options)
    : ring_buffer_size_(options.ring_buffer_size) {
  const auto page = static_cast<std::uint32_t>(sysconf(_SC_PAGESIZE));
  if (ring_buffer_size_ < page || (ring_buffer_size_ & (ring_buffer_size_ - 1)) != 0) {
    throw ConfigError("--ring-buffer-size: " + std::to_string(ring_buffer_size_) +
                      " is not a power of two of at least the page size (" + std::to_string(page) +
                      ")");
  }
  // From here on a throw destroys the skeleton with the member that owns it.
  skel_.reset(ayaflow_bpf::open());
  if (!skel_) {
    AYAFLOW_SYSTEM_ERROR(errno, "open BPF object");
  }
  int err = bpf_map__set_max_entries(skel_->maps.events, ring_buffer_size_);
  if (err != 0) {
    AYAFLOW_SYSTEM_ERROR(-err, "size ring buffer 'events'");
  }
  const std::uint32_t payload_ring = options.deep_inspect ? ring_buffer_size_ : page;
  err = bpf_map__set_max_entries(skel_->maps.payload_events, payload_ring);
  if (err != 0) {
    AYAFLOW_SYSTEM_ERROR(-err, "size ring buffer 'payload_events'");
  }
  // Both tables, and the template the outer map is created with, must agree on the size;
  // libbpf's own template keeps the compiled-in size, so hand it one of ours. libbpf does
  // not take the template's fd: it is ours to close, once the outer map exists.
  const std::uint32_t flow_entries = options.flow_table ? options.flow_table_entries : 1;
  err = bpf_map__set_max_entries(skel_->maps.flows_a, flow_entries);
  if (err == 0) err = bpf_map__set_max_entries(skel_->maps.flows_b, flow_entries);
  if (err != 0) {
    AYAFLOW_SYSTEM_ERROR(-err, "size the flow tables");
  }
  const Fd inner_template(bpf_map_create(BPF_MAP_TYPE_HASH, "flow_tmpl", sizeof(ayaflow_flow_key),
                                         sizeof(ayaflow_flow_value), flow_entries, nullptr));
  if (inner_template.get() < 0) {
    AYAFLOW_SYSTEM_ERROR(-inner_template.get(), "size the flow tables");
  }
  err = bpf_map__set_inner_map_fd(skel_->maps.flow_tables, inner_template.get());
  if (err != 0) {
    AYAFLOW_SYSTEM_ERROR(-err, "size the flow tables");
  }
  // Load-time switches: the verifier drops the code of what is off.
  skel_->rodata->ayaflow_enable_ipv6 = options.enable_ipv6;
  skel_->rodata->ayaflow_deep_inspect = options.deep_inspect;
  skel_->rodata->ayaflow_flow_table = options.flow_table;
  skel_->rodata->ayaflow_decapsulate = options.decapsulate;
  skel_->rodata->ayaflow_tcp_state = options.tcp_state;
  // Wake the reader once a quarter of the ring is pending (~900 events with
  // the default 256 KiB): each wake-up costs the program and the reader, and
  // three quarters stay free while the reader wakes (the 50 ms timer drains
  // quiet periods). Measured with bench/compare.sh: see docs/benchmarks.md.
  skel_->bss->ayaflow_wakeup_bytes = ring_buffer_size_ / 4;
  skel_->bss->ayaflow_payload_wakeup_bytes = payload_ring / 16;
  state_ = std::make_unique<State>();
  err = ayaflow_bpf::load(skel_.get());
  if (err != 0) {
    AYAFLOW_SYSTEM_ERROR(-err,
                         "load BPF programs (needs root or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON, "
                         "and a kernel with BTF)");
  }
}

BpfProgram::~BpfProgram() = default;

namespace {

bool sameInfo(const ayaflow_iface_info& a, const ayaflow_iface_info& b) {
  return a.role == b.role && a.stats_slot == b.stats_slot;
}

/// Reads the AYAFLOW_STATS_SLOT_KEYS counters of `slot` of ifindex into `out` (those with any
/// non-zero field).
void readSlot(int fd, int ifindex, std::uint16_t slot, std::vector<ayaflow_stats>& per_cpu,
              std::vector<KernelCounter>& out) {
  for (std::uint32_t k = 0; k < AYAFLOW_STATS_SLOT_KEYS; ++k) {
    const std::uint32_t dir = k >> 2;
    const bool udp = (k & 2) != 0;
    const bool ipv6 = (k & 1) != 0;
    const std::uint32_t index = AYAFLOW_STATS_SLOT_INDEX(slot, dir, udp, ipv6);
    if (bpf_map_lookup_elem(fd, &index, per_cpu.data()) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "read map 'stats_slots'");
    }
    KernelCounter c{static_cast<std::uint32_t>(ifindex), static_cast<std::uint8_t>(dir),
                    static_cast<std::uint8_t>(udp ? 17 : 6),
                    static_cast<std::uint8_t>(ipv6 ? 6 : 4)};
    addPerCpu(c, per_cpu);
    if (c.packets != 0 || c.bytes != 0 || c.events_lost != 0 || c.super_packets != 0 ||
        c.elsewhere_packets != 0 || c.elsewhere_bytes != 0) {
      out.push_back(c);
    }
  }
}

}  // namespace

void BpfProgram::writeInterfaceInfo(int ifindex) {
  // Small interface indexes live in an array (role 0: none), the rest in a hash: see
  // AYAFLOW_IFACE_ROLES_ARRAY_ENTRIES.
  State& st = *state_;
  ayaflow_iface_info want{};
  if (const auto r = st.roles.find(ifindex); r != st.roles.end()) want.role = r->second;
  if (const auto sl = st.slots.find(ifindex); sl != st.slots.end()) want.stats_slot = sl->second;
  const bool none = want.role == 0 && want.stats_slot == 0;
  const auto w = st.written.find(ifindex);
  if (w != st.written.end() ? sameInfo(w->second, want) : none) return;
  const auto key = static_cast<std::uint32_t>(ifindex);
  const bool in_array = key < AYAFLOW_IFACE_ROLES_ARRAY_ENTRIES;
  const int fd = bpf_map__fd(in_array ? skel_->maps.iface_info : skel_->maps.iface_roles);
  if (none && !in_array) {
    if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) {
      AYAFLOW_SYSTEM_ERROR(errno, "forget the role of ifindex " + std::to_string(key));
    }
  } else if (bpf_map_update_elem(fd, &key, &want, BPF_ANY) != 0) {
    AYAFLOW_SYSTEM_ERROR(errno, "set the role of ifindex " + std::to_string(key));
  }
  if (none) {
    st.written.erase(ifindex);
  } else {
    st.written[ifindex] = want;
  }
}

void BpfProgram::setRoles(const std::map<int, std::uint8_t>& roles) {
  std::lock_guard<std::mutex> lock(state_->mu);
  State& st = *state_;
  std::set<int> touched;
  for (const auto& [ifindex, role] : st.roles) touched.insert(ifindex);
  st.roles = roles;
  // An attached interface (COUNT or OBSERVE) gets a stats slot while one is free; it keeps
  // it until retireInterfaces() folds its counters away.
  std::set<std::uint16_t> used;
  for (const auto& [ifindex, slot] : st.slots) used.insert(slot);
  std::uint16_t next = 1;
  for (const auto& [ifindex, role] : roles) {
    touched.insert(ifindex);
    if (ifindex <= 0 || (role != AYAFLOW_ROLE_COUNT && role != AYAFLOW_ROLE_OBSERVE) ||
        st.slots.count(ifindex) != 0) {
      continue;
    }
    while (next <= AYAFLOW_STATS_SLOTS && used.count(next) != 0) ++next;
    if (next > AYAFLOW_STATS_SLOTS) continue;  // counted in the `stats` hash
    st.slots[ifindex] = next;
    used.insert(next);
  }
  for (const int ifindex : touched) writeInterfaceInfo(ifindex);
}

BpfProgram::BpfProgram(BpfProgram&&) noexcept = default;
BpfProgram& BpfProgram::operator=(BpfProgram&&) noexcept = default;

int BpfProgram::ingressProgramFd(LinkLayer layer) const {
  return bpf_program__fd(layer == LinkLayer::kIpOnly ? skel_->progs.ayaflow_in_ip
                                                     : skel_->progs.ayaflow_in);
}
int BpfProgram::egressProgramFd(LinkLayer layer) const {
  return bpf_program__fd(layer == LinkLayer::kIpOnly ? skel_->progs.ayaflow_eg_ip
                                                     : skel_->progs.ayaflow_eg);
}
int BpfProgram::eventsMapFd() const { return bpf_map__fd(skel_->maps.events); }
int BpfProgram::statsMapFd() const { return bpf_map__fd(skel_->maps.stats); }
int BpfProgram::payloadEventsMapFd() const { return bpf_map__fd(skel_->maps.payload_events); }
int BpfProgram::flowTablesMapFd() const { return bpf_map__fd(skel_->maps.flow_tables); }
int BpfProgram::flowTableFd(int index) const {
  return bpf_map__fd(index == 0 ? skel_->maps.flows_a : skel_->maps.flows_b);
}
int BpfProgram::statsOverflowMapFd() const { return bpf_map__fd(skel_->maps.stats_overflow); }

void BpfProgram::setWakeupBytes(std::uint64_t bytes) { skel_->bss->ayaflow_wakeup_bytes = bytes; }

PayloadTotals BpfProgram::readPayloadTotals() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) {
    AYAFLOW_SYSTEM_ERROR(-cpus, "count possible CPUs");
  }
  std::vector<ayaflow_payload_stats> per_cpu(static_cast<size_t>(cpus));
  PayloadTotals totals;
  for (std::uint32_t dir = 0; dir < 2; ++dir) {
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.payload_stats), &dir, per_cpu.data()) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "read map 'payload_stats'");
    }
    for (const auto& s : per_cpu) {
      totals.events += s.events;
      totals.lost += s.lost;
    }
  }
  return totals;
}

std::uint64_t BpfProgram::readFlowTableOverflow() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) {
    AYAFLOW_SYSTEM_ERROR(-cpus, "count possible CPUs");
  }
  std::vector<std::uint64_t> per_cpu(static_cast<size_t>(cpus));
  std::uint64_t total = 0;
  for (std::uint32_t dir = 0; dir < 2; ++dir) {
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.flow_table_overflow), &dir, per_cpu.data()) !=
        0) {
      AYAFLOW_SYSTEM_ERROR(errno, "read map 'flow_table_overflow'");
    }
    for (const std::uint64_t n : per_cpu) {
      total += n;
    }
  }
  return total;
}

KernelTotals BpfProgram::readTotals() const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) {
    AYAFLOW_SYSTEM_ERROR(-cpus, "count possible CPUs");
  }
  std::vector<ayaflow_stats> per_cpu(static_cast<size_t>(cpus));
  KernelTotals totals;
  auto add = [&](KernelCounter counter) {
    addPerCpu(counter, per_cpu);
    const int d = counter.direction & 1;
    totals.packets[d] += counter.packets;
    totals.bytes[d] += counter.bytes;
    totals.events_lost[d] += counter.events_lost;
    if (counter.packets != 0 || counter.ifindex != 0) {
      totals.counters.push_back(counter);
    }
  };

  // Keys are deleted only by retireInterfaces(), under the same lock, so walking with
  // get_next_key sees each once.
  std::lock_guard<std::mutex> lock(state_->mu);
  for (const auto& entry : state_->retired) {
    const KernelCounter& c = entry.second;
    const int d = c.direction & 1;
    totals.packets[d] += c.packets;
    totals.bytes[d] += c.bytes;
    totals.events_lost[d] += c.events_lost;
    totals.counters.push_back(c);
  }
  ayaflow_stats_key key{};
  ayaflow_stats_key next{};
  const ayaflow_stats_key* prev = nullptr;
  while (bpf_map_get_next_key(statsMapFd(), prev, &next) == 0) {
    key = next;
    prev = &key;
    if (bpf_map_lookup_elem(statsMapFd(), &key, per_cpu.data()) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "read map 'stats'");
    }
    add(KernelCounter{key.ifindex, key.direction, key.protocol, key.addr_type});
  }
  if (errno != ENOENT) {
    AYAFLOW_SYSTEM_ERROR(errno, "walk map 'stats'");
  }
  // Interfaces with a stats slot: one counter per key, the hash's (if the interface was
  // counted there before it had a slot) and the slot's added together.
  std::vector<KernelCounter> from_slots;
  for (const auto& [ifindex, slot] : state_->slots) {
    readSlot(bpf_map__fd(skel_->maps.stats_slots), ifindex, slot, per_cpu, from_slots);
  }
  for (const KernelCounter& c : from_slots) {
    const int d = c.direction & 1;
    totals.packets[d] += c.packets;
    totals.bytes[d] += c.bytes;
    totals.events_lost[d] += c.events_lost;
    const auto same =
        std::find_if(totals.counters.begin(), totals.counters.end(), [&](const KernelCounter& o) {
          return o.ifindex == c.ifindex && o.direction == c.direction && o.protocol == c.protocol &&
                 o.addr_type == c.addr_type;
        });
    if (same == totals.counters.end()) {
      totals.counters.push_back(c);
      continue;
    }
    same->packets += c.packets;
    same->bytes += c.bytes;
    same->events_lost += c.events_lost;
    same->super_packets += c.super_packets;
    same->elsewhere_packets += c.elsewhere_packets;
    same->elsewhere_bytes += c.elsewhere_bytes;
  }
  for (std::uint32_t dir = 0; dir < 2; ++dir) {
    if (bpf_map_lookup_elem(statsOverflowMapFd(), &dir, per_cpu.data()) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "read map 'stats_overflow'");
    }
    add(KernelCounter{0, static_cast<std::uint8_t>(dir), 0, 0});
  }
  return totals;
}

std::size_t BpfProgram::retireInterfaces(const std::set<std::uint32_t>& present) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) {
    AYAFLOW_SYSTEM_ERROR(-cpus, "count possible CPUs");
  }
  std::lock_guard<std::mutex> lock(state_->mu);
  std::vector<ayaflow_stats_key> gone;
  ayaflow_stats_key key{};
  ayaflow_stats_key next{};
  const ayaflow_stats_key* prev = nullptr;
  while (bpf_map_get_next_key(statsMapFd(), prev, &next) == 0) {
    key = next;
    prev = &key;
    if (present.count(key.ifindex) == 0) gone.push_back(key);
  }
  if (errno != ENOENT) {
    AYAFLOW_SYSTEM_ERROR(errno, "walk map 'stats'");
  }
  std::vector<ayaflow_stats> per_cpu(static_cast<size_t>(cpus));
  for (const ayaflow_stats_key& k : gone) {
    if (bpf_map_lookup_elem(statsMapFd(), &k, per_cpu.data()) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "read map 'stats'");
    }
    KernelCounter& r = state_->retired[{k.direction, k.protocol, k.addr_type}];
    r.ifindex = kRetiredIfindex;
    r.direction = k.direction;
    r.protocol = k.protocol;
    r.addr_type = k.addr_type;
    addPerCpu(r, per_cpu);
    if (bpf_map_delete_elem(statsMapFd(), &k) != 0) {
      AYAFLOW_SYSTEM_ERROR(errno, "delete from map 'stats'");
    }
  }
  std::size_t retired = gone.size();
  // Stats slots of interfaces gone: the entry first loses its slot (new packets would go to
  // the hash), then the slot's counters are folded away and zeroed for the next interface.
  const int slots_fd = bpf_map__fd(skel_->maps.stats_slots);
  const std::vector<ayaflow_stats> zero(static_cast<size_t>(cpus));
  for (auto it = state_->slots.begin(); it != state_->slots.end();) {
    const auto [ifindex, slot] = *it;
    if (present.count(static_cast<std::uint32_t>(ifindex)) != 0) {
      ++it;
      continue;
    }
    it = state_->slots.erase(it);
    writeInterfaceInfo(ifindex);
    std::vector<KernelCounter> counters;
    readSlot(slots_fd, ifindex, slot, per_cpu, counters);
    for (const KernelCounter& c : counters) {
      KernelCounter& r = state_->retired[{c.direction, c.protocol, c.addr_type}];
      r.ifindex = kRetiredIfindex;
      r.direction = c.direction;
      r.protocol = c.protocol;
      r.addr_type = c.addr_type;
      r.packets += c.packets;
      r.bytes += c.bytes;
      r.events_lost += c.events_lost;
      r.super_packets += c.super_packets;
      r.elsewhere_packets += c.elsewhere_packets;
      r.elsewhere_bytes += c.elsewhere_bytes;
    }
    for (std::uint32_t k = 0; k < AYAFLOW_STATS_SLOT_KEYS; ++k) {
      const std::uint32_t index = (slot - 1u) * AYAFLOW_STATS_SLOT_KEYS + k;
      if (bpf_map_update_elem(slots_fd, &index, zero.data(), BPF_ANY) != 0) {
        AYAFLOW_SYSTEM_ERROR(errno, "clear map 'stats_slots'");
      }
    }
    retired += counters.size();
  }
  return retired;
}

}  // namespace ayaflow::bpf
