/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Deep inspection: copies DNS payloads and the first bytes of TLS client
 * streams into the `payload_events` ring buffer (only in programs loaded
 * with the ayaflow_deep_inspect switch on). Payload is read with bpf_skb_load_bytes, so
 * bytes outside the skb's linear part (GSO packets, paged data) are reached.
 */
#ifndef AYAFLOW_BPF_PAYLOAD_H
#define AYAFLOW_BPF_PAYLOAD_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "ayaflow/abi/event.h"
#include "lib/parse.h"
#include "lib/map_helpers.h"
#include "maps.h"
#include "settings.h"

#define AYAFLOW_TLS_HANDSHAKE 0x16
#define AYAFLOW_PAYLOAD_HEADER_LEN 64 /* offsetof(struct ayaflow_payload_event, data) */

struct tcp_seq_flags {
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res; /* data offset in the high nibble */
	__u8 flags;
};

static __always_inline __u64 payload_wakeup_flags(__u64 now)
{
	return ringbuf_wakeup_flags(&payload_events, ayaflow_payload_wakeup_bytes, now,
				    &ayaflow_payload_woken_ns);
}

/*
 * Sends bytes [data_off, data_off + len) of the packet as records of at most
 * AYAFLOW_PAYLOAD_CHUNK bytes (len 0: one marker record without data).
 */
static __always_inline void emit_payload(struct __sk_buff *skb,
					 const struct ayaflow_packet_event *ev, __u32 seq,
					 __u8 flags, __u32 data_off, __u32 len)
{
	__u32 zero = 0;
	__u32 dir = ev->direction & 1;
	struct ayaflow_payload_stats *ps = bpf_map_lookup_elem(&payload_stats, &dir);
	struct ayaflow_payload_event *pe = bpf_map_lookup_elem(&payload_scratch, &zero);

	if (!ps || !pe)
		return;
	pe->abi_version = AYAFLOW_ABI_VERSION;
	pe->kind = AYAFLOW_EVENT_PAYLOAD;
	pe->direction = ev->direction;
	pe->flags = flags;
	pe->pad = 0;
	pe->ifindex = ev->ifindex;
	pe->timestamp_ns = ev->timestamp_ns;
	pe->tuple = ev->tuple;

	if (len == 0) {
		pe->seq = seq;
		pe->data_len = 0;
		if (bpf_ringbuf_output(&payload_events, pe, AYAFLOW_PAYLOAD_HEADER_LEN,
				       payload_wakeup_flags(ev->timestamp_ns)) < 0)
			ps->lost += 1;
		else
			ps->events += 1;
		return;
	}
#pragma unroll
	for (int i = 0; i < AYAFLOW_PAYLOAD_CHUNKS_PER_SEGMENT; i++) {
		__u32 off = i * AYAFLOW_PAYLOAD_CHUNK;
		__u32 n;

		if (off >= len)
			break;
		n = len - off;
		if (n > AYAFLOW_PAYLOAD_CHUNK)
			n = AYAFLOW_PAYLOAD_CHUNK;
		/* Verifier: a comparison on a copy does not bound the original
		 * register clang passes on; a mask does. n is 1..CHUNK here, so
		 * ((n - 1) & (CHUNK - 1)) + 1 == n, provably within 1..CHUNK. */
		n = ((n - 1) & (AYAFLOW_PAYLOAD_CHUNK - 1)) + 1;
		if (bpf_skb_load_bytes(skb, data_off + off, pe->data, n) < 0)
			break;
		pe->seq = seq + off;
		pe->data_len = n;
		if (bpf_ringbuf_output(&payload_events, pe, AYAFLOW_PAYLOAD_HEADER_LEN + n,
				       payload_wakeup_flags(ev->timestamp_ns)) < 0) {
			ps->lost += 1;
			break;
		}
		ps->events += 1;
	}
}

/* DNS over UDP, either port 53: the first AYAFLOW_PAYLOAD_CHUNK bytes. */
static __always_inline void inspect_udp(struct __sk_buff *skb, const struct parse_ctx *ctx,
					const struct ayaflow_packet_event *ev, __u32 l3_end)
{
	__u32 data_off = ctx->l4_off + 8;
	__u32 len;

	if (ctx->tuple.src_port != AYAFLOW_DNS_PORT && ctx->tuple.dst_port != AYAFLOW_DNS_PORT)
		return;
	if (l3_end <= data_off)
		return;
	len = l3_end - data_off;
	if (len > AYAFLOW_PAYLOAD_CHUNK)
		len = AYAFLOW_PAYLOAD_CHUNK;
	emit_payload(skb, ev, 0, 0, data_off, len);
}

/*
 * TCP to port 443: the first AYAFLOW_TLS_CAPTURE_BYTES of the client's
 * stream, tracked from the SYN (or from a first segment that starts a TLS
 * handshake record, for connections older than the agent).
 */
static __always_inline void inspect_tcp(struct __sk_buff *skb, const struct parse_ctx *ctx,
					const struct ayaflow_packet_event *ev, __u32 l3_end)
{
	struct ayaflow_tuple key = ctx->tuple; /* the client-to-server stream */
	struct tcp_seq_flags th;
	__u32 *isn_p;
	__u32 isn, seq, data_off, plen, rel, cap;
	__u8 first;

	if (ctx->tuple.dst_port != AYAFLOW_TLS_PORT)
		return;
	if (bpf_skb_load_bytes(skb, ctx->l4_off + 4, &th, sizeof(th)) < 0)
		return;
	seq = bpf_ntohl(th.seq);

	if ((th.flags & AYAFLOW_TCP_SYN) && !(th.flags & AYAFLOW_TCP_ACK)) {
		bpf_map_update_elem(&tls_flows, &key, &seq, BPF_ANY);
		emit_payload(skb, ev, seq, AYAFLOW_PF_SYN, 0, 0);
		return;
	}
	isn_p = bpf_map_lookup_elem(&tls_flows, &key);
	if (th.flags & (AYAFLOW_TCP_FIN | AYAFLOW_TCP_RST)) {
		if (isn_p) {
			bpf_map_delete_elem(&tls_flows, &key);
			emit_payload(skb, ev, seq, AYAFLOW_PF_FIN, 0, 0);
		}
		return;
	}
	data_off = ctx->l4_off + (th.doff_res >> 4) * 4;
	if (l3_end <= data_off)
		return; /* a bare ACK */
	plen = l3_end - data_off;
	if (isn_p) {
		isn = *isn_p;
	} else {
		/* No SYN seen: only a segment that starts a TLS record begins a stream. */
		if (bpf_skb_load_bytes(skb, data_off, &first, 1) < 0 ||
		    first != AYAFLOW_TLS_HANDSHAKE)
			return;
		isn = seq - 1;
		bpf_map_update_elem(&tls_flows, &key, &isn, BPF_ANY);
	}
	rel = seq - (isn + 1); /* offset in the stream; wraps like TCP */
	if (rel >= AYAFLOW_TLS_CAPTURE_BYTES) {
		bpf_map_delete_elem(&tls_flows, &key);
		return;
	}
	cap = AYAFLOW_TLS_CAPTURE_BYTES - rel;
	if (plen < cap)
		cap = plen;
	emit_payload(skb, ev, seq, 0, data_off, cap);
}

/*
 * Entry point, after the packet has been counted and its event written or
 * counted in a flow table (ev is the event, with the same tuple as ctx).
 */
static __always_inline void inspect_payload(struct __sk_buff *skb, const struct parse_ctx *ctx,
					    const struct ayaflow_packet_event *ev)
{
	__u32 l3_end;

	if (ctx->flags & AYAFLOW_F_FRAGMENT)
		return;
	l3_end = ctx->l3_off + ctx->ip_len;
	if (ctx->tuple.protocol == IPPROTO_UDP)
		inspect_udp(skb, ctx, ev, l3_end);
	else
		inspect_tcp(skb, ctx, ev, l3_end);
}

#endif /* AYAFLOW_BPF_PAYLOAD_H */
