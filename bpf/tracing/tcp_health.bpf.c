// SPDX-License-Identifier: GPL-2.0-only
/*
 * ayaflow kernel tracing probes: TCP smoothed RTT, retransmissions and
 * packet drops with the kernel's reason, kept in maps that userspace reads
 * about once a second (src/health). Each probe is a separate program that
 * userspace loads only when switched on and present in the running kernel
 * (a missing hook is left out, the others still load):
 *  - RTT: fentry/tcp_rcv_established (or tp_btf/tcp_probe where fentry
 *    cannot attach) runs for each segment an established socket receives
 *    and costs one socket-local storage lookup and a jiffies read; only when
 *    the socket's last sample is older than ayaflow_rtt_interval_ns does it
 *    read srtt_us and write sock_health. tp_btf/inet_sock_set_state takes a
 *    last sample when a socket leaves ESTABLISHED.
 *  - Retransmissions: tp_btf/tcp_retransmit_skb adds the segments of each
 *    retransmitted skb (tcp_skb_pcount) that left the socket.
 *  - Drops: tp_btf/kfree_skb with its reason (kernel >= 5.17), for IPv4 and
 *    IPv6 TCP/UDP packets, per flow and reason; see drop_is_noise().
 * The programs only read: they never change what the kernel does.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "ayaflow/abi/health.h"
#include "kernel_types.h"
#include "lib/map_helpers.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define SKB_HEADER_UNSET 0xffff

/* Load-time setting (.rodata): at most one RTT sample per socket per interval. */
const volatile __u64 ayaflow_rtt_interval_ns = 1000000000ULL;
/* What the state-change program does (userspace sets them for the probes switched on). */
const volatile bool ayaflow_state_rtt = false;
const volatile bool ayaflow_state_rtx = false;
/* Drops attributed to flows per CPU per second; 0 = no limit (see abi/health.h). */
const volatile __u32 ayaflow_drop_flow_budget = AYAFLOW_DROP_FLOW_BUDGET;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AYAFLOW_SOCK_HEALTH_ENTRIES); /* userspace may resize */
	__type(key, struct ayaflow_tuple);
	__type(value, struct ayaflow_sock_health);
} sock_health SEC(".maps");

/*
 * A plain hash, not LRU: an entry is never evicted before userspace has read
 * it (it prunes idle ones), so a flow's count only grows; a drop that finds
 * the map full is counted in drop_flow_overflow instead. Not preallocated:
 * drops are rare, and the map then costs memory (charged to the agent's
 * cgroup) only for the flows that have them.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, AYAFLOW_DROP_FLOW_ENTRIES); /* userspace may resize */
	__type(key, struct ayaflow_drop_key);
	__type(value, struct ayaflow_drop_value);
} drop_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AYAFLOW_DROP_REASON_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drop_totals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ayaflow_health_totals);
} health_totals SEC(".maps");

/* This CPU's attribution budget: the window it is in and the drops it attributed there. */
struct drop_budget {
	__u64 window;  /* bpf_ktime_get_ns() >> 30 (about a second) when `used` restarted */
	__u64 used;    /* drops attributed since */
	__u64 jiffies; /* when a spent budget last read the clock */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct drop_budget);
} drop_budget SEC(".maps");

/*
 * Per socket, freed with it (never evicted):
 *  - rtt_last: jiffies of its last RTT sample;
 *  - rtx_seen: tcp_sock.total_retrans at its last retransmission event, valid when
 *    rtx_known (set when the socket starts connecting, or at its first event).
 */
struct sock_state {
	__u64 rtt_last;
	__u32 rtx_seen;
	__u32 rtx_known;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_state);
} sock_state SEC(".maps");

static __always_inline struct ayaflow_health_totals *totals(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&health_totals, &zero);
}

/* IPv4 as ::ffff:a.b.c.d, as in every ayaflow tuple. */
static __always_inline void mapped_v4(__u8 *dst, __be32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

static __always_inline int is_mapped_v4(const __u8 *a)
{
	__u64 lo;
	__u32 mid;

	__builtin_memcpy(&lo, a, 8);
	__builtin_memcpy(&mid, a + 8, 4);
	return lo == 0 && mid == bpf_htonl(0x0000ffff);
}

/*
 * The socket's tuple seen from the socket: src = local address and port,
 * dst = remote. An IPv6 socket talking to an IPv4 peer (v4-mapped
 * addresses) is named as IPv4, as the packets on the wire are. Returns -1
 * for families other than IPv4/IPv6.
 */
static __always_inline int sock_tuple(const struct sock *sk, struct ayaflow_tuple *t)
{
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);

	__builtin_memset(t, 0, sizeof(*t));
	if (family == AF_INET) {
		mapped_v4(t->src_addr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		mapped_v4(t->dst_addr, BPF_CORE_READ(sk, __sk_common.skc_daddr));
		t->addr_type = 4;
	} else if (family == AF_INET6) {
		/* bpf_core_read with the size: BPF_CORE_READ_INTO would take sizeof(*array), 1 byte
		 */
		bpf_core_read(t->src_addr, sizeof(t->src_addr), &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(t->dst_addr, sizeof(t->dst_addr), &sk->__sk_common.skc_v6_daddr);
		t->addr_type = is_mapped_v4(t->dst_addr) ? 4 : 6;
	} else {
		return -1;
	}
	t->src_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->dst_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	t->protocol = IPPROTO_TCP;
	return 0;
}

static __always_inline struct ayaflow_sock_health *sock_entry(const struct ayaflow_tuple *key)
{
	struct ayaflow_sock_health init = {};

	return map_lookup_or_init(&sock_health, key, &init);
}

/* Writes the socket's smoothed RTT into its sock_health entry. */
static __always_inline void rtt_sample(const struct sock *sk, __u64 now)
{
	struct ayaflow_health_totals *tot;
	struct ayaflow_sock_health *h;
	struct ayaflow_tuple key;
	__u32 srtt = BPF_CORE_READ((const struct tcp_sock *)sk, srtt_us) >> 3;

	if (srtt == 0 || sock_tuple(sk, &key) != 0)
		return;
	h = sock_entry(&key);
	tot = totals();
	if (!h) {
		if (tot)
			tot->sock_overflow++;
		return;
	}
	h->srtt_us = srtt;
	h->sample_ns = now;
	if (tot)
		tot->rtt_samples++;
}

/*
 * The sample interval in jiffies, 0 while it is being measured. The RTT hook runs for every
 * segment: reading jiffies there instead of bpf_ktime_get_ns() saves about 40 ns per run
 * (measured with bench_health_probes), and jiffies are fine enough for intervals of a
 * second. The kernel's tick rate is not known to the program (and the kernel configuration
 * is not readable on every node), so the first runs after load measure it against the
 * nanosecond clock over RTT_CALIBRATION_NS; they take no samples meanwhile. Several CPUs
 * may race here: each writes a valid measurement, the last one stays.
 */
#define RTT_CALIBRATION_NS 200000000ULL

__u64 ayaflow_rtt_gap_jiffies;
__u64 ayaflow_rtt_calibration_ns;
__u64 ayaflow_rtt_calibration_jiffies;

static __always_inline __u64 rtt_gap_jiffies(void)
{
	__u64 gap = ayaflow_rtt_gap_jiffies;
	__u64 now_ns, elapsed, jiffies;

	if (gap)
		return gap;
	now_ns = bpf_ktime_get_ns();
	jiffies = bpf_jiffies64();
	if (ayaflow_rtt_calibration_ns == 0) {
		ayaflow_rtt_calibration_jiffies = jiffies;
		ayaflow_rtt_calibration_ns = now_ns;
		return 0;
	}
	elapsed = now_ns - ayaflow_rtt_calibration_ns;
	if (elapsed < RTT_CALIBRATION_NS)
		return 0;
	gap = ayaflow_rtt_interval_ns * (jiffies - ayaflow_rtt_calibration_jiffies) / elapsed;
	if (gap == 0)
		gap = 1; /* an interval below one tick: a sample per tick */
	ayaflow_rtt_gap_jiffies = gap;
	return gap;
}

/* Per received segment: a sample only when this socket's last one is old enough. */
static __always_inline void rtt_maybe_sample(struct sock *sk)
{
	struct sock_state *st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	__u64 gap, now;

	if (!st)
		return;
	gap = rtt_gap_jiffies();
	if (!gap)
		return;
	now = bpf_jiffies64();
	if (st->rtt_last != 0 && now - st->rtt_last < gap)
		return;
	st->rtt_last = now;
	rtt_sample(sk, bpf_ktime_get_ns());
}

SEC("fentry/tcp_rcv_established")
int BPF_PROG(ayaflow_rtt_fe, struct sock *sk, struct sk_buff *skb)
{
	rtt_maybe_sample(sk);
	return 0;
}

/* The same where fentry cannot attach: tcp_probe fires at the start of tcp_rcv_established. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(ayaflow_rtt_tp, struct sock *sk, struct sk_buff *skb)
{
	rtt_maybe_sample(sk);
	return 0;
}

/*
 * TCP state changes (rare next to segments), for both other probes:
 *  - RTT (ayaflow_state_rtt): a last sample as the socket leaves ESTABLISHED;
 *  - retransmits (ayaflow_state_rtx): a socket that starts connecting (SYN_SENT) or is
 *    created by a listener (SYN_RECV) has retransmitted nothing yet: from here on its
 *    retransmissions are counted from the kernel's own per-socket count (count_retransmit).
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ayaflow_state, struct sock *sk, int oldstate, int newstate)
{
	struct sock_state *st;

	if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	if (ayaflow_state_rtt && oldstate == TCP_ESTABLISHED) {
		rtt_sample(sk, bpf_ktime_get_ns());
		return 0;
	}
	if (ayaflow_state_rtx && (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV)) {
		st = bpf_sk_storage_get(&sock_state, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st) {
			st->rtx_seen = BPF_CORE_READ((const struct tcp_sock *)sk, total_retrans);
			st->rtx_known = 1;
		}
	}
	return 0;
}

/*
 * The segments a retransmission event adds to the kernel's count (TcpRetransSegs, and the
 * socket's tcp_sock.total_retrans, which grow together): the growth of total_retrans since
 * the socket's previous event. That is exact whatever the event's outcome: the kernel counts
 * an attempt before transmitting it, so an attempt whose transmit then fails is counted
 * (and, before 6.13, fires no event: the next event catches up). For a socket older than
 * the probe, its first event has no previous value: it counts the segments of this
 * retransmission if it was sent (`sent`), and later events are exact.
 */
static __always_inline void count_retransmit(const struct sock *sk, const struct sk_buff *skb,
					     bool sent)
{
	unsigned long cb = (unsigned long)skb + bpf_core_field_offset(struct sk_buff, cb);
	struct sock_state *st =
	    bpf_sk_storage_get(&sock_state, (struct sock *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	__u32 total = BPF_CORE_READ((const struct tcp_sock *)sk, total_retrans);
	struct ayaflow_health_totals *tot = totals();
	struct ayaflow_sock_health *h;
	struct ayaflow_tuple key;
	__u32 segs = 0;

	if (st && st->rtx_known) {
		segs = total - st->rtx_seen;
	} else if (sent) {
		segs = BPF_CORE_READ((const struct tcp_skb_cb *)cb, tcp_gso_segs);
		if (segs == 0)
			segs = 1; /* tcp_skb_pcount() of a buffer not yet sized is 1 */
	}
	if (st) {
		st->rtx_seen = total;
		st->rtx_known = 1;
	}
	if (segs == 0)
		return;
	if (tot)
		tot->retrans_segs += segs;
	if (sock_tuple(sk, &key) != 0)
		return;
	h = sock_entry(&key);
	if (h)
		__sync_fetch_and_add(&h->retrans_segs, segs);
	else if (tot)
		tot->sock_overflow++;
}

/* Since 6.13 the tracepoint fires for every attempt, with its error. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(ayaflow_rtx, const struct sock *sk, const struct sk_buff *skb, int err)
{
	count_retransmit(sk, skb, err == 0);
	return 0;
}

/* Before 6.13: (sk, skb), fired only for a retransmission that was sent. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(ayaflow_rtx_old, const struct sock *sk, const struct sk_buff *skb)
{
	count_retransmit(sk, skb, true);
	return 0;
}

/*
 * Not drops of traffic, so not counted (reasons resolved in the running
 * kernel's enum, never numbers):
 *  - SKB_CONSUMED (and SKB_NOT_DROPPED_YET): a buffer freed after use; some
 *    paths free consumed buffers through kfree_skb_reason(SKB_CONSUMED).
 *  - NOT_SPECIFIED: every plain kfree_skb() call; most are ordinary frees
 *    (clones, queue purges, closed sockets' queues), not lost packets. The
 *    peers found the same: counted, it buries the real drops.
 *  - OTHERHOST: a frame for another host's MAC address that a device in
 *    promiscuous mode (a capture, a bridge port's relay) delivered to the
 *    stack, which rightly discards it; the packet was never this node's.
 */
static __always_inline int drop_is_noise(__u32 reason)
{
	if (reason == 0 ||
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED))
		return 1;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_CONSUMED) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED))
		return 1;
	if (bpf_core_enum_value_exists(enum skb_drop_reason, SKB_DROP_REASON_OTHERHOST) &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_OTHERHOST))
		return 1;
	return 0;
}

/* IPv4 header fields read (no options needed: the transport offset comes from ihl). */
struct ipv4_head {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_head {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/*
 * A dropped packet's network header and, where the transport header follows
 * it directly (no IPv4 options, no IPv6 extension headers: nearly always),
 * its ports, read from the buffer in one copy.
 */
struct drop_head {
	union {
		struct {
			struct ipv4_head ip;
			__be16 ports[2];
		} v4;
		struct {
			struct ipv6_head ip;
			__be16 ports[2];
		} v6;
	};
	__u16 nh; /* network header offset from skb->head */
	__u16 th; /* transport header offset */
	__u8 l4;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 v6_; /* 1: the v6 member */
};

/*
 * Reads the dropped packet's headers (skb->head + network_header) and keeps
 * only first (or only) fragments of IPv4/IPv6 TCP or UDP: returns -1 for
 * anything else, or when the headers are not set or not readable (a buffer
 * dropped before the IP layer parsed it, for example). IPv6 extension
 * headers are passed over only when the kernel has already set the transport
 * header behind them. One helper call: this runs for every counted drop.
 */
static __always_inline int drop_head_read(const struct sk_buff *skb, struct drop_head *h)
{
	/* skb is a trusted pointer here: plain loads, no helper call per field */
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 th = skb->transport_header;
	__be16 proto = skb->protocol;

	if (nh == SKB_HEADER_UNSET)
		return -1;
	h->nh = nh;
	if (proto == bpf_htons(ETH_P_IP)) {
		if (bpf_probe_read_kernel(&h->v4, sizeof(h->v4), head + nh) != 0 ||
		    (h->v4.ip.ver_ihl >> 4) != 4)
			return -1;
		if (h->v4.ip.frag_off & bpf_htons(0x1fff))
			return -1; /* a later fragment: no ports */
		h->l4 = h->v4.ip.protocol;
		h->v6_ = 0;
		if (th == SKB_HEADER_UNSET || th <= nh)
			th = nh + (h->v4.ip.ver_ihl & 0x0f) * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		if (bpf_probe_read_kernel(&h->v6, sizeof(h->v6), head + nh) != 0 ||
		    (bpf_ntohl(h->v6.ip.ver_tc_flow) >> 28) != 6)
			return -1;
		h->l4 = h->v6.ip.nexthdr;
		h->v6_ = 1;
		if (th == SKB_HEADER_UNSET || th <= nh)
			th = nh + 40;
		else if (h->l4 != IPPROTO_TCP && h->l4 != IPPROTO_UDP)
			return -1; /* extension headers: the protocol is further on; not worth a
				      walk */
	} else {
		return -1;
	}
	if (h->l4 != IPPROTO_TCP && h->l4 != IPPROTO_UDP)
		return -1;
	h->th = th;
	return 0;
}

/*
 * The dropped packet's tuple and IP length from its headers; reads the ports
 * again only when they do not follow the network header directly.
 */
static __always_inline int drop_tuple(const struct sk_buff *skb, const struct drop_head *h,
				      struct ayaflow_tuple *t, __u32 *ip_len)
{
	__be16 ports[2];

	__builtin_memset(t, 0, sizeof(*t));
	if (!h->v6_) {
		mapped_v4(t->src_addr, h->v4.ip.saddr);
		mapped_v4(t->dst_addr, h->v4.ip.daddr);
		t->addr_type = 4;
		*ip_len = bpf_ntohs(h->v4.ip.tot_len);
		ports[0] = h->v4.ports[0];
		ports[1] = h->v4.ports[1];
		if (h->th != h->nh + sizeof(struct ipv4_head) &&
		    bpf_probe_read_kernel(ports, sizeof(ports), skb->head + h->th) != 0)
			return -1;
	} else {
		__builtin_memcpy(t->src_addr, h->v6.ip.saddr, 16);
		__builtin_memcpy(t->dst_addr, h->v6.ip.daddr, 16);
		t->addr_type = 6;
		*ip_len = bpf_ntohs(h->v6.ip.payload_len) + 40;
		ports[0] = h->v6.ports[0];
		ports[1] = h->v6.ports[1];
		if (h->th != h->nh + sizeof(struct ipv6_head) &&
		    bpf_probe_read_kernel(ports, sizeof(ports), skb->head + h->th) != 0)
			return -1;
	}
	t->src_port = bpf_ntohs(ports[0]);
	t->dst_port = bpf_ntohs(ports[1]);
	t->protocol = h->l4;
	return 0;
}

/*
 * This CPU's attribution budget when some of it is left in the current
 * window, else NULL. Per CPU, so no atomics: a tracing program does not
 * migrate while it runs. The caller takes one (used++) once the drop is
 * attributed. The clock is read only once the budget is spent, and then at
 * most once per jiffy (a cheap read): on a VM's kvm-clock a clock read costs
 * 40 ns, more than the rest of this path. So `used` restarts when a spent
 * budget finds the window changed, at most a jiffy late: never more than the
 * budget in one window.
 */
static __always_inline struct drop_budget *drop_budget_left(void)
{
	struct drop_budget *b;
	__u32 zero = 0;
	__u64 window, j;

	b = bpf_map_lookup_elem(&drop_budget, &zero);
	if (!b)
		return NULL;
	if (b->used < ayaflow_drop_flow_budget)
		return b;
	j = bpf_jiffies64();
	if (j == b->jiffies)
		return NULL;
	b->jiffies = j;
	window = bpf_ktime_get_ns() >> 30;
	if (b->window == window)
		return NULL;
	b->window = window;
	b->used = 0;
	return b;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(ayaflow_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	struct ayaflow_drop_value init = {};
	struct ayaflow_health_totals *tot;
	struct drop_budget *budget = NULL;
	struct ayaflow_drop_value *v;
	struct ayaflow_drop_key key;
	struct drop_head h;
	__u32 slot = reason;
	__u32 ip_len = 0;
	__u64 *total;

	if (drop_is_noise(reason))
		return 0;
	if (drop_head_read(skb, &h) != 0)
		return 0;
	if (slot >= AYAFLOW_DROP_REASON_SLOTS)
		slot = AYAFLOW_DROP_REASON_SLOTS - 1;
	total = bpf_map_lookup_elem(&drop_totals, &slot);
	if (total)
		*total += 1;
	if (ayaflow_drop_flow_budget != 0) {
		budget = drop_budget_left();
		if (!budget) {
			tot = totals();
			if (tot)
				tot->drop_flow_rate_limited++;
			return 0;
		}
	}
	if (drop_tuple(skb, &h, &key.tuple, &ip_len) != 0) {
		/* in the totals, but its ports cannot be read: as if its flow's entry were
		 * missing */
		tot = totals();
		if (tot)
			tot->drop_flow_overflow++;
		return 0;
	}
	if (budget)
		budget->used++;
	key.reason = reason;
	key.pad = 0;
	v = map_lookup_or_init(&drop_flows, &key, &init);
	if (!v) {
		tot = totals();
		if (tot)
			tot->drop_flow_overflow++;
		return 0;
	}
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, ip_len);
	v->last_ns = bpf_ktime_get_ns();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
