/* SPDX-License-Identifier: (GPL-2.0-only OR MIT OR Apache-2.0) */
/*
 * Definitions shared by the kernel tracing probes (bpf/tracing/tcp_health.bpf.c) and
 * userspace (src/health). Plain C, fixed-width fields, every gap a named pad
 * field written as zero; the layout is asserted below on both compilers.
 * Flows are named by struct ayaflow_tuple from ayaflow/abi/event.h.
 */
#ifndef AYAFLOW_ABI_HEALTH_H
#define AYAFLOW_ABI_HEALTH_H

#include "ayaflow/abi/event.h"

/*
 * Per-socket health, in the LRU hash `sock_health`, keyed by the socket's
 * tuple oriented from the socket: src = its local address and port, dst =
 * the remote one (so a client's and a server's entry for one connection on
 * the same node differ). An evicted socket loses its per-socket figures; the
 * totals (`retrans_total`) stay exact.
 *  - retrans_segs: cumulative retransmitted segments of the socket as the
 *    kernel counts them (TcpRetransSegs): at each tcp:tcp_retransmit_skb, the
 *    growth of the socket's tcp_sock.total_retrans since its previous event
 *    (for a socket older than the probe, its first event counts the segments
 *    of that retransmission, tcp_skb_pcount, if it was sent).
 *  - srtt_us: the kernel's smoothed RTT (tcp_sock.srtt_us >> 3) of the latest
 *    sample, 0 until the first; sample_ns: bpf_ktime_get_ns() of that sample.
 *    At most one sample per socket per sample interval (ayaflow_rtt_interval_ns).
 */
#define AYAFLOW_SOCK_HEALTH_ENTRIES 16384 /* LRU maps are preallocated: 2.1 MB of kernel memory */

struct ayaflow_sock_health {
	__u64 retrans_segs;
	__u64 sample_ns;
	__u32 srtt_us;
	__u32 pad;
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_sock_health) == 24, "sock health size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_sock_health, retrans_segs) == 0,
		      "retrans_segs");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_sock_health, sample_ns) == 8, "sample_ns");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_sock_health, srtt_us) == 16, "srtt_us");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_sock_health, pad) == 20, "pad");

/*
 * Drops (skb:kfree_skb with a reason, kernel >= 5.17) of IPv4/IPv6 TCP and
 * UDP packets, per flow and reason in the LRU hash `drop_flows` (tuple = the
 * dropped packet's src -> dst; reason = enum skb_drop_reason of the running
 * kernel, named from its BTF in userspace). Exact totals per reason are in
 * the per-CPU array `drop_totals` (index = reason; reasons at or above
 * AYAFLOW_DROP_REASON_SLOTS - 1 share the last slot). A drop whose flow entry
 * could not be created is still in the totals and also counted in
 * `drop_flow_overflow`.
 *
 * Attribution to flows has a budget: at most ayaflow_drop_flow_budget (a
 * load-time setting, 0 = none) per CPU per window of 2^30 ns (about 1.07 s;
 * the clock is read at most once per jiffy, and only past the budget). Past it, in a
 * drop storm, a drop is still counted in `drop_totals` but only in
 * `drop_flow_rate_limited`, not per flow: the per-flow path (tuple hash, two
 * atomic adds, a clock read) costs about 140 ns, which a flood of dropped
 * packets would otherwise add to every packet on the node; the rest about 60.
 * A drop whose ports cannot be read is in the totals and `drop_flow_overflow`.
 */
#define AYAFLOW_DROP_FLOW_BUDGET 10000
#define AYAFLOW_DROP_FLOW_ENTRIES 16384
#define AYAFLOW_DROP_REASON_SLOTS 512

struct ayaflow_drop_key {
	struct ayaflow_tuple tuple;
	__u32 reason;
	__u32 pad;
};

struct ayaflow_drop_value {
	__u64 packets;
	__u64 bytes; /* IP length of the dropped packets (header included) */
	__u64 last_ns;
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_drop_key) == 48, "drop key size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_drop_key, tuple) == 0, "tuple");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_drop_key, reason) == 40, "reason");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_drop_key, pad) == 44, "pad");
AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_drop_value) == 24, "drop value size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_drop_value, packets) == 0, "packets");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_drop_value, bytes) == 8, "bytes");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_drop_value, last_ns) == 16, "last_ns");

/*
 * The per-CPU counters in the one-entry array `health_totals`: exact however
 * the hash maps evict.
 */
struct ayaflow_health_totals {
	__u64 retrans_segs;	  /* every counted retransmitted segment */
	__u64 drop_flow_overflow; /* drops counted in drop_totals but in no drop_flows entry */
	__u64 rtt_samples;	  /* srtt samples written into sock_health */
	__u64 sock_overflow; /* sock_health updates that failed (retransmits still in the total) */
	__u64 drop_flow_rate_limited; /* drops counted in drop_totals past the attribution budget */
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_health_totals) == 40, "health totals size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_health_totals, retrans_segs) == 0,
		      "retrans_segs");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_health_totals, drop_flow_overflow) == 8,
		      "drop_flow_overflow");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_health_totals, rtt_samples) == 16,
		      "rtt_samples");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_health_totals, sock_overflow) == 24,
		      "sock_overflow");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_health_totals, drop_flow_rate_limited) == 32,
		      "drop_flow_rate_limited");

#endif /* AYAFLOW_ABI_HEALTH_H */
