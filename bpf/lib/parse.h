/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Header parsing into a struct parse_ctx. Every read goes through
 * bpf_skb_load_bytes(), so headers outside the skb's linear part are read
 * as well as inline ones, and a short packet simply fails the read.
 *
 * Each step starts at an offset and records where the next header begins,
 * so the same parser can run again from an inner header (after a tunnel
 * header: parse_frame() for an inner Ethernet frame, parse_ip() for an
 * inner IP packet).
 */
#ifndef AYAFLOW_BPF_LIB_PARSE_H
#define AYAFLOW_BPF_LIB_PARSE_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "ayaflow/abi/event.h"

#define AYAFLOW_ETH_P_8021Q 0x8100
#define AYAFLOW_ETH_P_8021AD 0x88A8
#define AYAFLOW_MAX_VLAN_TAGS 2
#define AYAFLOW_MAX_IPV6_EXT_HDRS 8

#define AYAFLOW_IPPROTO_HOPOPTS 0
#define AYAFLOW_IPPROTO_ROUTING 43
#define AYAFLOW_IPPROTO_FRAGMENT 44
#define AYAFLOW_IPPROTO_AH 51
#define AYAFLOW_IPPROTO_DSTOPTS 60

/* What the parser learnt about one TCP/UDP packet; offsets from the start of the skb data. */
struct parse_ctx {
	struct ayaflow_tuple tuple; /* addresses, ports (0 in later fragments), protocol, family */
	__u32 l3_off;		    /* the IP header */
	__u32 l4_off;		    /* the TCP/UDP header */
	__u32 ip_len;		    /* IPv4 total length, IPv6 payload length + 40 */
	__u16 l3_proto;		    /* ETH_P_IP or ETH_P_IPV6 */
	__u8 flags;		    /* AYAFLOW_F_* */
};

struct vlan_tag {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; /* only meaningful in a fragment header */
	__u32 rest;
};

/* Writes the IPv4 address as ::ffff:a.b.c.d. */
static __always_inline void map_ipv4(__u8 out[16], __be32 addr)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &addr, 4);
}

/*
 * The Ethernet header at off and up to two VLAN tags (802.1Q or 802.1ad)
 * after it. A tag the driver moved into skb metadata is already gone from
 * the frame. Sets *l3_off and *l3_proto (host order) to what follows.
 * Returns 0, or -1 if the frame is too short.
 */
static __always_inline int parse_l2(struct __sk_buff *skb, __u32 off, __u32 *l3_off,
				    __u16 *l3_proto)
{
	struct ethhdr eth;
	struct vlan_tag tag;
	__u16 proto;

	if (bpf_skb_load_bytes(skb, off, &eth, sizeof(eth)) < 0)
		return -1;
	off += sizeof(eth);
	proto = bpf_ntohs(eth.h_proto);
#pragma unroll
	for (int i = 0; i < AYAFLOW_MAX_VLAN_TAGS; i++) {
		if (proto != AYAFLOW_ETH_P_8021Q && proto != AYAFLOW_ETH_P_8021AD)
			break;
		if (bpf_skb_load_bytes(skb, off, &tag, sizeof(tag)) < 0)
			return -1;
		proto = bpf_ntohs(tag.encapsulated_proto);
		off += sizeof(tag);
	}
	*l3_off = off;
	*l3_proto = proto;
	return 0;
}

/*
 * IPv4 at ctx->l3_off: header length from IHL; non-first fragments carry no
 * ports. Sets the addresses, protocol, family, ip_len, flags and l4_off.
 * Returns 0, or -1 (not TCP/UDP, malformed, truncated).
 */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct parse_ctx *ctx)
{
	__u32 off = ctx->l3_off;
	struct iphdr ip;
	__u32 hlen, tot_len;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
		return -1;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return -1;
	hlen = ip.ihl * 4;
	tot_len = bpf_ntohs(ip.tot_len);
	/* GSO / BIG TCP packets may carry 0: use what the skb holds. */
	if (tot_len < hlen)
		tot_len = skb->len > off ? skb->len - off : 0;
	ctx->tuple.protocol = ip.protocol;
	ctx->tuple.addr_type = 4;
	ctx->ip_len = tot_len;
	if (bpf_ntohs(ip.frag_off) & 0x1fff)
		ctx->flags |= AYAFLOW_F_FRAGMENT;
	map_ipv4(ctx->tuple.src_addr, ip.saddr);
	map_ipv4(ctx->tuple.dst_addr, ip.daddr);
	ctx->l4_off = off + hlen;
	return 0;
}

/*
 * IPv6 at ctx->l3_off, with a bounded walk over extension headers (hop-by-hop,
 * routing, fragment, destination options, AH); a fragment header with a
 * non-zero offset marks a later fragment. Sets what parse_ipv4() sets.
 * Returns 0, or -1.
 */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct parse_ctx *ctx)
{
	__u32 off = ctx->l3_off;
	struct ipv6hdr ip6;
	struct ipv6_ext ext;
	__u8 next;
	__u32 payload_len;

	if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
		return -1;
	if (ip6.version != 6)
		return -1;
	payload_len = bpf_ntohs(ip6.payload_len);
	/* Jumbograms and GSO packets may carry 0: use what the skb holds. */
	if (payload_len == 0)
		ctx->ip_len = skb->len > off ? skb->len - off : 0;
	else
		ctx->ip_len = payload_len + sizeof(ip6);
	next = ip6.nexthdr;
	off += sizeof(ip6);
#pragma unroll
	for (int i = 0; i < AYAFLOW_MAX_IPV6_EXT_HDRS; i++) {
		if (next != AYAFLOW_IPPROTO_HOPOPTS && next != AYAFLOW_IPPROTO_ROUTING &&
		    next != AYAFLOW_IPPROTO_FRAGMENT && next != AYAFLOW_IPPROTO_AH &&
		    next != AYAFLOW_IPPROTO_DSTOPTS)
			break;
		if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)) < 0)
			return -1;
		if (next == AYAFLOW_IPPROTO_FRAGMENT) {
			if (bpf_ntohs(ext.frag_off) & 0xfff8)
				ctx->flags |= AYAFLOW_F_FRAGMENT;
			off += 8;
		} else if (next == AYAFLOW_IPPROTO_AH) {
			off += (ext.hdrlen + 2) * 4;
		} else {
			off += (ext.hdrlen + 1) * 8;
		}
		next = ext.nexthdr;
	}
	if (next != IPPROTO_TCP && next != IPPROTO_UDP)
		return -1; /* another protocol, or more extension headers than we walk */
	ctx->tuple.protocol = next;
	ctx->tuple.addr_type = 6;
	__builtin_memcpy(ctx->tuple.src_addr, &ip6.saddr, 16);
	__builtin_memcpy(ctx->tuple.dst_addr, &ip6.daddr, 16);
	ctx->l4_off = off;
	return 0;
}

/*
 * The IP packet at l3_off, l3_proto (host order) saying which version:
 * IPv4, or IPv6 when ipv6 is set, carrying TCP or UDP with readable ports
 * (a non-first fragment has none: its ports stay 0). Writes all of ctx,
 * pads included. Returns 0, or -1 for anything else.
 */
static __always_inline int parse_ip(struct __sk_buff *skb, struct parse_ctx *ctx, __u32 l3_off,
				    __u16 l3_proto, bool ipv6)
{
	__be16 ports[2];

	__builtin_memset(ctx, 0, sizeof(*ctx));
	/*
	 * Keep ctx in memory. Split into one register per field (and per byte
	 * of the IPv4-mapped addresses), it needs all of them live where the
	 * IPv4 and IPv6 paths join, and the spills made the program ~8% larger.
	 */
	asm volatile("" : : "r"(ctx) : "memory");
	ctx->l3_off = l3_off;
	ctx->l3_proto = l3_proto;
	if (l3_proto == ETH_P_IP) {
		if (parse_ipv4(skb, ctx) < 0)
			return -1;
	} else if (l3_proto == ETH_P_IPV6 && ipv6) {
		if (parse_ipv6(skb, ctx) < 0)
			return -1;
	} else {
		return -1;
	}
	if (ctx->flags & AYAFLOW_F_FRAGMENT)
		return 0;
	/* TCP and UDP both start with the two ports. */
	if (bpf_skb_load_bytes(skb, ctx->l4_off, ports, sizeof(ports)) < 0)
		return -1;
	ctx->tuple.src_port = bpf_ntohs(ports[0]);
	ctx->tuple.dst_port = bpf_ntohs(ports[1]);
	return 0;
}

/*
 * The headers that every segment of a GSO/GRO packet repeats: the IP header
 * with any IPv6 extension headers, and the TCP header with its options or
 * the UDP header. Reads the TCP data offset, so call it only for packets of
 * more than one segment. Returns 0 if the TCP header cannot be read.
 */
static __always_inline __u32 segment_header_len(struct __sk_buff *skb, const struct parse_ctx *ctx)
{
	__u32 len = ctx->l4_off - ctx->l3_off;
	__u8 doff;

	if (ctx->tuple.protocol == IPPROTO_UDP)
		return len + 8;
	/* Byte 12 of the TCP header: the data offset in its high nibble. */
	if (bpf_skb_load_bytes(skb, ctx->l4_off + 12, &doff, 1) < 0)
		return 0;
	return len + (doff >> 4) * 4;
}

/* An Ethernet frame at off (VLAN tags allowed) carrying what parse_ip() takes. */
static __always_inline int parse_frame(struct __sk_buff *skb, struct parse_ctx *ctx, __u32 off,
				       bool ipv6)
{
	__u32 l3_off;
	__u16 l3_proto;

	if (parse_l2(skb, off, &l3_off, &l3_proto) < 0)
		return -1;
	return parse_ip(skb, ctx, l3_off, l3_proto, ipv6);
}

/*
 * The packet as the TC hook sees it. ip_only (a constant per program) is for
 * devices without a link-layer header (tun, WireGuard, ipip, PPP): the
 * packet starts with the IP header and skb->protocol says which.
 */
static __always_inline int parse_packet(struct __sk_buff *skb, struct parse_ctx *ctx, bool ip_only,
					bool ipv6)
{
	if (ip_only)
		return parse_ip(skb, ctx, 0, bpf_ntohs((__be16)skb->protocol), ipv6);
	return parse_frame(skb, ctx, 0, ipv6);
}

#endif /* AYAFLOW_BPF_LIB_PARSE_H */
