// SPDX-License-Identifier: GPL-2.0-only
/*
 * ayaflow TC classifier: one program per direction, ayaflow_in and
 * ayaflow_eg (the attach point fixes the direction), and their IP-only
 * variants ayaflow_in_ip and ayaflow_eg_ip for devices without a
 * link-layer header. For every TCP/UDP packet over IPv4 (and IPv6 when
 * enabled) it counts the packet and its bytes in per-CPU totals (a GSO or
 * GRO skb as the packets it stands for on the wire) and then either adds
 * it to its flow in the active flow table (aggregated mode, see
 * struct ayaflow_flow_key) or writes an ayaflow_packet_event into the
 * `events` ring buffer; a full ring buffer drops the event, never the
 * packet, and is counted. Each packet is counted once per node, at the
 * first hook of the node it passes (the roles in ayaflow/abi/event.h); at a
 * later hook it only adds to that hook's elsewhere_* counters.
 *
 * It never changes a packet's fate: every path returns TC_ACT_UNSPEC, which
 * lets the next program on the hook (a CNI's, for example) run and, when it
 * is the last, lets the packet continue as if nothing were attached.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "ayaflow/abi/event.h"
#include "lib/map_helpers.h"
#include "lib/parse.h"
#include "maps.h"
#include "payload.h"
#include "settings.h"

/* An interface's role and stats slot; NULL if it has no entry (only above the array). */
static __always_inline const struct ayaflow_iface_info *iface_info_of(__u32 ifindex)
{
	if (ifindex < AYAFLOW_IFACE_ROLES_ARRAY_ENTRIES)
		return bpf_map_lookup_elem(&iface_info, &ifindex);
	return bpf_map_lookup_elem(&iface_roles, &ifindex);
}

/*
 * The counters for this packet's interface, direction, protocol and family:
 * in the interface's stats slot when it has one, otherwise in the hash,
 * created on first use.
 */
static __always_inline struct ayaflow_stats *stats_for(const struct ayaflow_iface_info *info,
						       __u32 ifindex, __u8 direction,
						       const struct parse_ctx *ctx)
{
	struct ayaflow_stats zero_stats = {};
	struct ayaflow_stats_key key;
	struct ayaflow_stats *st;
	__u32 dir = direction & 1;

	if (info && info->stats_slot) {
		__u32 idx = AYAFLOW_STATS_SLOT_INDEX(info->stats_slot, direction,
						     ctx->tuple.protocol == IPPROTO_UDP,
						     ctx->tuple.addr_type == 6);

		st = bpf_map_lookup_elem(&stats_slots, &idx);
		if (st)
			return st;
		/* A slot past the array: userspace never writes one, count in the hash. */
	}
	__builtin_memset(&key, 0, sizeof(key));
	key.ifindex = ifindex;
	key.direction = direction;
	key.protocol = ctx->tuple.protocol;
	key.addr_type = ctx->tuple.addr_type;
	st = map_lookup_or_init(&stats, &key, &zero_stats);
	if (st)
		return st;
	return bpf_map_lookup_elem(&stats_overflow, &dir); /* the map is full */
}

/*
 * Aggregated mode, TCP: what the handshake and the end of a connection need
 * (struct ayaflow_flow_value). The atomic OR runs only when the packet brings
 * a flag the entry has not seen yet, so a bulk transfer pays one compare.
 */
static __always_inline void count_tcp(struct ayaflow_flow_value *v, __u8 tcp_flags)
{
	__u64 f = tcp_flags;

	if (f & AYAFLOW_TCP_ACK) {
		if (f & AYAFLOW_TCP_SYN)
			f |= AYAFLOW_TCPF_SYNACK;
		if (f & AYAFLOW_TCP_FIN)
			f |= AYAFLOW_TCPF_FINACK;
		if (f & AYAFLOW_TCP_RST)
			f |= AYAFLOW_TCPF_RSTACK;
	}
	if ((v->tcp_flags & f) != f)
		__sync_fetch_and_or(&v->tcp_flags, f);
	/* The handshake's round-trip time needs the precise clock (see handle()). */
	if (f & AYAFLOW_TCP_SYN) {
		__sync_fetch_and_add(&v->syns, 1);
		v->syn_ns = bpf_ktime_get_ns();
	} else if ((f & AYAFLOW_TCP_ACK) && v->ack_ns == 0) {
		v->ack_ns = bpf_ktime_get_ns();
	}
}

/*
 * Aggregated mode: adds the packet to its flow in the active table. The key
 * is built from the parser's output: no packet event is assembled for a
 * packet that a flow counts. Returns 0 when counted there, -1 when the table
 * is full (or missing) and the packet must go to the ring buffer instead.
 */
static __always_inline int count_flow(const struct parse_ctx *ctx, __u32 ifindex, __u8 direction,
				      __u32 segs, __u32 pkt_len, __u64 now)
{
	struct ayaflow_flow_value init = {
	    .first_ns = now,
	    .last_ns = now,
	};
	struct ayaflow_flow_value *v;
	struct ayaflow_flow_key key;
	__u32 zero = 0;
	void *table;

	table = bpf_map_lookup_elem(&flow_tables, &zero);
	if (!table)
		return -1;
	/* A hash key: every byte counts, pads included. */
	__builtin_memset(&key, 0, sizeof(key));
	key.tuple = ctx->tuple;
	key.ifindex = ifindex;
	key.direction = direction;
	key.flags = ctx->flags;
	v = map_lookup_or_init(table, &key, &init);
	if (!v)
		return -1;
	__sync_fetch_and_add(&v->packets, segs);
	__sync_fetch_and_add(&v->bytes, pkt_len);
	if (now > v->last_ns)
		v->last_ns = now;
	if (ayaflow_tcp_state && ctx->tuple.protocol == IPPROTO_TCP)
		count_tcp(v, ctx->tcp_flags);
	return 0;
}

/*
 * Once per node (roles in ayaflow/abi/event.h): true when this hook is not
 * where the packet counts, because it was counted at an earlier hook on this
 * node or will be at none of this device's hooks. info is this interface's
 * entry (iface_info_of(skb->ifindex)).
 */
static __always_inline bool counted_elsewhere(struct __sk_buff *skb,
					      const struct ayaflow_iface_info *info, __u8 direction,
					      __u8 flags)
{
	const struct ayaflow_iface_info *from;
	__u32 ifindex;

	if (info && info->role == AYAFLOW_ROLE_OBSERVE)
		return true;
	if (direction != AYAFLOW_DIR_EGRESS)
		return false;
	ifindex = skb->ingress_ifindex;
	/*
	 * 0: sent by this node, or sent into a tunnel, whose device clears the
	 * ingress interface of what it encapsulates. A tunnelled packet without
	 * a local socket was forwarded into the tunnel; the role under key 0
	 * says whether it entered the node at a counting hook (a pod's veth).
	 */
	if (ifindex == 0 && (!(flags & AYAFLOW_F_TUNNEL) || skb->sk))
		return false;
	from = iface_info_of(ifindex);
	return from && from->role != 0;
}

/* The packet's event; ring buffer memory is not zeroed, so every byte is written, pads included. */
static __always_inline void fill_event(struct ayaflow_packet_event *ev, const struct parse_ctx *ctx,
				       __u32 ifindex, __u8 direction, __u32 segs, __u32 pkt_len,
				       __u64 now)
{
	__builtin_memset(ev, 0, sizeof(*ev));
	ev->abi_version = AYAFLOW_ABI_VERSION;
	ev->kind = AYAFLOW_EVENT_PACKET;
	ev->direction = direction;
	ev->flags = ctx->flags;
	ev->segs = segs;
	ev->ifindex = ifindex;
	ev->pkt_len = pkt_len;
	ev->timestamp_ns = now;
	ev->tuple = ctx->tuple;
	if (ayaflow_tcp_state)
		ev->tcp_flags = ctx->tcp_flags;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 direction, bool ip_only)
{
	const struct ayaflow_iface_info *info;
	struct ayaflow_packet_event ev;
	struct ayaflow_stats *st;
	struct parse_ctx ctx;
	__u32 segs, hdr_len, pkt_len, ifindex;
	__u64 flags, now;
	bool counted;

	if (parse_packet(skb, &ctx, ip_only, ayaflow_enable_ipv6, ayaflow_decapsulate) < 0)
		return TC_ACT_UNSPEC;
	/*
	 * A GSO super-packet (egress) or GRO-merged packet (ingress) is segs
	 * packets on the wire, each with its own copy of the headers; 0 means
	 * an ordinary skb. Read once: the field is a load from skb_shinfo().
	 */
	segs = skb->gso_segs;
	hdr_len = 0;
	if (segs > 1)
		hdr_len = segment_header_len(&ctx);
	else
		segs = 1;
	pkt_len = ctx.ip_len + (segs - 1) * hdr_len;
	ifindex = skb->ifindex;

	/* One lookup of the interface gives its role and where its totals are. */
	info = iface_info_of(ifindex);
	st = stats_for(info, ifindex, direction, &ctx);
	if (!st)
		return TC_ACT_UNSPEC; /* cannot happen: the overflow array has both slots */
	if (counted_elsewhere(skb, info, direction, ctx.flags)) {
		st->elsewhere_packets += segs;
		st->elsewhere_bytes += pkt_len;
		return TC_ACT_UNSPEC;
	}
	st->packets += segs;
	st->bytes += pkt_len;
	if (segs > 1)
		st->super_packets += 1;

	/*
	 * A flow's first and last times need no better than the kernel tick: the
	 * coarse clock (CLOCK_MONOTONIC_COARSE, the same base, up to a tick
	 * behind) is a few loads, where the precise one reads the clocksource,
	 * tens of ns in a VM (kvm-clock). Events keep the precise clock: a raw
	 * row is one packet, and the handshake times derived from events need it.
	 */
	now = ayaflow_flow_table ? bpf_ktime_get_coarse_ns() : bpf_ktime_get_ns();
	counted =
	    ayaflow_flow_table && count_flow(&ctx, ifindex, direction, segs, pkt_len, now) == 0;
	if (!counted) {
		if (ayaflow_flow_table) {
			__u32 dir = direction & 1;
			__u64 *full = bpf_map_lookup_elem(&flow_table_overflow, &dir);

			if (full)
				*full += 1;
			now = bpf_ktime_get_ns();
		}
		fill_event(&ev, &ctx, ifindex, direction, segs, pkt_len, now);
		/* Batch wake-ups: wake the reader only once enough bytes are pending. */
		flags = ringbuf_wakeup_flags(&events, ayaflow_wakeup_bytes, now,
					     &ayaflow_events_woken_ns);
		if (bpf_ringbuf_output(&events, &ev, sizeof(ev), flags) < 0)
			st->events_lost += 1;
	}
	if (ayaflow_deep_inspect) {
		if (counted) /* payload records carry the precise time, as events do */
			fill_event(&ev, &ctx, ifindex, direction, segs, pkt_len,
				   bpf_ktime_get_ns());
		inspect_payload(skb, &ctx, &ev);
	}
	return TC_ACT_UNSPEC;
}

/*
 * The kernel keeps 15 characters of a program's name, and userspace tells
 * its own filters from others' by that name (src/bpf/tc_attachment.cpp):
 * each name below fits, so the kernel keeps it whole and it is matched
 * exactly.
 */

/* Devices with an Ethernet header (physical NICs, veth, bridges, VXLAN). */
SEC("tc")
int ayaflow_in(struct __sk_buff *skb) { return handle(skb, AYAFLOW_DIR_INGRESS, false); }

SEC("tc")
int ayaflow_eg(struct __sk_buff *skb) { return handle(skb, AYAFLOW_DIR_EGRESS, false); }

/* Devices without a link-layer header: the packet starts at the IP header. */
SEC("tc")
int ayaflow_in_ip(struct __sk_buff *skb) { return handle(skb, AYAFLOW_DIR_INGRESS, true); }

SEC("tc")
int ayaflow_eg_ip(struct __sk_buff *skb) { return handle(skb, AYAFLOW_DIR_EGRESS, true); }

char LICENSE[] SEC("license") = "GPL";
