// SPDX-License-Identifier: MIT OR Apache-2.0
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "ayaflow/abi/event.h"
#include "ayaflow/bpf/link_layer.h"
#include "ayaflow/bpf/skeleton.h"

struct ayaflow_bpf;  // bpftool skeleton, only seen by bpf_program.cpp

namespace ayaflow::bpf {

/// Settings that go into the program before load. The switches are fixed for the
/// program's lifetime: the verifier drops the code of what is off.
struct ProgramOptions {
  std::uint32_t ring_buffer_size = 256 * 1024;  // power of two, >= page size
  /// Count IPv6 packets too (IPv4 only when off).
  bool enable_ipv6 = false;
  /// Payload capture for DNS/TLS; its ring buffer gets ring_buffer_size when
  /// on, one page when off.
  bool deep_inspect = false;
  /// Aggregated mode: count packets per flow in the kernel flow tables (see FlowTables)
  /// instead of sending an event per packet; events only when a table is full.
  bool flow_table = false;
  /// Count a packet in one level of VXLAN (UDP 4789, 8472), Geneve (UDP 6081) or IP-in-IP
  /// as the packet inside (its tuple and IP length, flag AYAFLOW_F_TUNNEL), as the pods'
  /// interfaces see it; off: by its outer headers.
  bool decapsulate = true;
  /// TCP flags in packet events and handshake flags/times in flow-table entries, from which
  /// userspace derives connection states and the handshake round-trip time.
  bool tcp_state = true;
  /// Entries of each of the two flow tables (kernel memory: ~176 bytes each, preallocated).
  /// Without flow_table the tables get one entry each.
  std::uint32_t flow_table_entries = AYAFLOW_FLOW_TABLE_ENTRIES;
};

/// Exact counters of one interface/direction/protocol/family, summed over CPUs.
struct KernelCounter {
  std::uint32_t ifindex = 0;   // 0: counted in the overflow slot (stats map full)
  std::uint8_t direction = 0;  // AYAFLOW_DIR_*
  std::uint8_t protocol = 0;   // 6 or 17; 0 in the overflow slot
  std::uint8_t addr_type = 0;  // 4 or 6; 0 in the overflow slot
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
  std::uint64_t events_lost = 0;
  std::uint64_t super_packets = 0;  // GSO/GRO skbs that stood for more than one packet
  /// Passed this hook but counted at another hook of the node (AYAFLOW_ROLE_*).
  std::uint64_t elsewhere_packets = 0;
  std::uint64_t elsewhere_bytes = 0;
};

/// KernelCounter::ifindex of the counters of interfaces that are gone (retireInterfaces()).
inline constexpr std::uint32_t kRetiredIfindex = 0xffffffffu;

/// Deep-inspection payload records written and lost, summed over CPUs.
struct PayloadTotals {
  std::uint64_t events = 0;
  std::uint64_t lost = 0;
};

/// Exact totals summed over the kernel's per-CPU counters.
struct KernelTotals {
  std::uint64_t packets[2] = {0, 0};  // by AYAFLOW_DIR_*
  std::uint64_t bytes[2] = {0, 0};
  std::uint64_t events_lost[2] = {0, 0};
  std::vector<KernelCounter> counters;  // the breakdown the totals are summed from
  std::uint64_t totalPackets() const { return packets[0] + packets[1]; }
  std::uint64_t totalBytes() const { return bytes[0] + bytes[1]; }
  std::uint64_t totalLost() const { return events_lost[0] + events_lost[1]; }
};

/// Owns the loaded ayaflow BPF object (embedded skeleton: no file is read).
/// Construction opens, sizes, configures and loads it; throws SystemError on failure
/// with the libbpf errno text (for example a verifier rejection or missing
/// capabilities), having released everything it created. Move-only. readTotals() is a syscall on a
/// map fd and may be called from any thread; everything else belongs to the owning thread.
class BpfProgram {
 public:
  explicit BpfProgram(const ProgramOptions& options);
  ~BpfProgram();
  BpfProgram(BpfProgram&&) noexcept;
  BpfProgram& operator=(BpfProgram&&) noexcept;
  BpfProgram(const BpfProgram&) = delete;
  BpfProgram& operator=(const BpfProgram&) = delete;

  /// The program for an interface's ingress (egress) hook: one variant per link layer.
  int ingressProgramFd(LinkLayer layer = LinkLayer::kEthernet) const;
  int egressProgramFd(LinkLayer layer = LinkLayer::kEthernet) const;
  int eventsMapFd() const;
  int statsMapFd() const;
  int statsOverflowMapFd() const;
  int payloadEventsMapFd() const;
  int flowTablesMapFd() const;       // the array of maps whose slot 0 is the active table
  int flowTableFd(int index) const;  // 0: table a, 1: table b
  std::uint32_t ringBufferSize() const { return ring_buffer_size_; }

  /// Pending bytes in the ring buffer at which the program wakes the reader; takes effect
  /// for the next packet.
  void setWakeupBytes(std::uint64_t bytes);

  /// Sums the payload record counters. Throws SystemError if a map read fails.
  PayloadTotals readPayloadTotals() const;

  /// Packets sent as events because the active flow table was full, summed over CPUs and
  /// directions. Throws SystemError if a map read fails.
  std::uint64_t readFlowTableOverflow() const;

  /// Reads and sums the per-CPU counters (a few syscalls per interface). Counters of
  /// retired interfaces come as one counter per direction, protocol and family with ifindex
  /// kRetiredIfindex. Throws SystemError if a map read fails.
  KernelTotals readTotals() const;

  /// Folds the kernel counters of every interface not in `present` into the retired
  /// counters and deletes them from the kernel map, so pods that come and go do not grow the
  /// map (it holds AYAFLOW_STATS_MAX_ENTRIES keys) or the metric series. Call it for
  /// interfaces gone for a while (no program still runs for them); totals stay exact and
  /// never go down (readTotals() and this exclude each other). Returns the keys retired.
  /// Throws SystemError if a map operation fails.
  std::size_t retireInterfaces(const std::set<std::uint32_t>& present);

  /// Replaces the once-per-node roles (ifindex -> AYAFLOW_ROLE_*) in the kernel map:
  /// writes what changed, deletes what is gone. Throws SystemError naming the interface.
  void setRoles(const std::map<int, std::uint8_t>& roles);

 private:
  struct State;
  /// Writes ifindex's role and stats slot (as State holds them) to the kernel if they
  /// changed. Called with State::mu held.
  void writeInterfaceInfo(int ifindex);
  SkeletonPtr<ayaflow_bpf> skel_;
  std::unique_ptr<State> state_;
  std::uint32_t ring_buffer_size_ = 0;
};

/// Routes libbpf's messages to the "bpf" spdlog logger; libbpf debug output
/// is kept only when verbose.
void installLibbpfLogger(bool verbose);

}  // namespace ayaflow::bpf
