/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Header parsing for the ayaflow TC classifier. Every read goes through
 * bpf_skb_load_bytes(), so headers outside the skb's linear part are read
 * as well as inline ones, and a short packet simply fails the read.
 */
#ifndef AYAFLOW_BPF_PARSE_H
#define AYAFLOW_BPF_PARSE_H

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
 * Skips Ethernet and up to two VLAN tags (802.1Q or 802.1ad). A tag the
 * driver moved into skb metadata is already gone from the frame.
 * Returns the L3 offset, or -1 if the frame is too short.
 */
static __always_inline int parse_l2(struct __sk_buff *skb, __u16 *proto)
{
	struct ethhdr eth;
	struct vlan_tag tag;
	int off = sizeof(eth);

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0)
		return -1;
	*proto = bpf_ntohs(eth.h_proto);
#pragma unroll
	for (int i = 0; i < AYAFLOW_MAX_VLAN_TAGS; i++) {
		if (*proto != AYAFLOW_ETH_P_8021Q && *proto != AYAFLOW_ETH_P_8021AD)
			break;
		if (bpf_skb_load_bytes(skb, off, &tag, sizeof(tag)) < 0)
			return -1;
		*proto = bpf_ntohs(tag.encapsulated_proto);
		off += sizeof(tag);
	}
	return off;
}

/*
 * IPv4: header length from IHL; non-first fragments carry no ports.
 * Returns the L4 offset or -1 (not TCP/UDP, malformed, truncated).
 */
static __always_inline int parse_ipv4(struct __sk_buff *skb, int off,
				      struct ayaflow_packet_event *ev)
{
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
		tot_len = skb->len > (__u32)off ? skb->len - off : 0;
	ev->tuple.protocol = ip.protocol;
	ev->tuple.addr_type = 4;
	ev->pkt_len = tot_len;
	if (bpf_ntohs(ip.frag_off) & 0x1fff)
		ev->flags |= AYAFLOW_F_FRAGMENT;
	map_ipv4(ev->tuple.src_addr, ip.saddr);
	map_ipv4(ev->tuple.dst_addr, ip.daddr);
	return off + hlen;
}

/*
 * IPv6 with a bounded walk over extension headers (hop-by-hop, routing,
 * fragment, destination options, AH). Returns the L4 offset or -1.
 */
static __always_inline int parse_ipv6(struct __sk_buff *skb, int off,
				      struct ayaflow_packet_event *ev)
{
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
		ev->pkt_len = skb->len > (__u32)off ? skb->len - off : 0;
	else
		ev->pkt_len = payload_len + sizeof(ip6);
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
				ev->flags |= AYAFLOW_F_FRAGMENT;
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
	ev->tuple.protocol = next;
	ev->tuple.addr_type = 6;
	__builtin_memcpy(ev->tuple.src_addr, &ip6.saddr, 16);
	__builtin_memcpy(ev->tuple.dst_addr, &ip6.daddr, 16);
	return off;
}

/*
 * Fills ev from the packet. Returns 0 if the packet is TCP or UDP over IPv4
 * (or IPv6 when enabled) with readable ports (or a non-first fragment),
 * -1 otherwise. On success *l3 and *l4 are the offsets of the IP and
 * TCP/UDP headers. ip_only (a constant per program) is for devices without
 * a link-layer header (tun, WireGuard, ipip, PPP): the packet starts with
 * the IP header and skb->protocol says which.
 */
static __always_inline int parse_packet(struct __sk_buff *skb, __u32 cfg_flags, bool ip_only,
					struct ayaflow_packet_event *ev, int *l3, int *l4)
{
	__u16 proto;
	__be16 ports[2];
	int off;

	if (ip_only) {
		proto = bpf_ntohs((__be16)skb->protocol);
		off = 0;
	} else {
		off = parse_l2(skb, &proto);
	}
	if (off < 0)
		return -1;
	*l3 = off;
	if (proto == ETH_P_IP)
		off = parse_ipv4(skb, off, ev);
	else if (proto == ETH_P_IPV6 && (cfg_flags & AYAFLOW_CFG_IPV6))
		off = parse_ipv6(skb, off, ev);
	else
		return -1;
	if (off < 0)
		return -1;
	*l4 = off;
	if (ev->flags & AYAFLOW_F_FRAGMENT)
		return 0;
	/* TCP and UDP both start with the two ports. */
	if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)) < 0)
		return -1;
	ev->tuple.src_port = bpf_ntohs(ports[0]);
	ev->tuple.dst_port = bpf_ntohs(ports[1]);
	return 0;
}

#endif /* AYAFLOW_BPF_PARSE_H */
