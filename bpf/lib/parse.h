/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Header parsing into a struct parse_ctx. Every read goes through
 * load_hdr(): a header in the skb's linear part is read directly (skb->data),
 * one outside it (a GSO/GRO skb's paged data, an odd layout) through
 * bpf_skb_load_bytes(), and a short packet simply fails the read.
 *
 * Each step starts at an offset and records where the next header begins,
 * so the same IP parser runs again from an inner header: with decapsulation
 * on, one level of VXLAN, Geneve or IP-in-IP is looked through and the packet
 * is described by its inner IP and TCP/UDP headers (see parse_packet()).
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
#define AYAFLOW_IPPROTO_IPIP 4	/* IPv4 inside */
#define AYAFLOW_IPPROTO_IPV6 41 /* IPv6 inside */
#define AYAFLOW_IPPROTO_ROUTING 43
#define AYAFLOW_IPPROTO_FRAGMENT 44
#define AYAFLOW_IPPROTO_AH 51
#define AYAFLOW_IPPROTO_DSTOPTS 60

/* UDP destination ports of the tunnels we look into. */
#define AYAFLOW_VXLAN_PORT 4789	      /* IANA */
#define AYAFLOW_VXLAN_LINUX_PORT 8472 /* the Linux default, flannel's and Cilium's */
#define AYAFLOW_GENEVE_PORT 6081
#define AYAFLOW_TCP_FIN 0x01
#define AYAFLOW_TCP_SYN 0x02
#define AYAFLOW_TCP_RST 0x04
#define AYAFLOW_TCP_ACK 0x10
#define AYAFLOW_VXLAN_FLAG_I 0x08 /* the VNI is valid */
#define AYAFLOW_ETH_P_TEB 0x6558  /* Geneve protocol type: an Ethernet frame follows */

/* What the parser learnt about one TCP/UDP packet; offsets from the start of the skb data. */
struct parse_ctx {
	struct ayaflow_tuple tuple; /* addresses, ports (0 in later fragments), protocol, family */
	__u32 l3_off;		    /* the IP header */
	__u32 l4_off;		    /* the TCP/UDP header */
	__u32 ip_len;		    /* IPv4 total length, IPv6 payload length + 40 */
	__u16 l3_proto;		    /* ETH_P_IP or ETH_P_IPV6 */
	__u8 flags;		    /* AYAFLOW_F_* */
	__u8 fragmented;	    /* a fragment, the first included: never decapsulated */
	__u8 tcp_flags;		    /* TCP: the header's flags byte; 0 otherwise */
	__u8 tcp_doff;	       /* TCP: the header's data offset byte (length in its high nibble) */
} __attribute__((aligned(8))); /* word stores into the tuple (map_ipv4) */

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

/*
 * Headers are read directly from the linear part only below this offset:
 * the verifier needs a bound on a variable offset into the packet, and every
 * header we parse (Ethernet, two VLAN tags, IPv6 with extension headers, a
 * tunnel and the packet inside) starts well before it in an ordinary packet.
 */
#define AYAFLOW_DIRECT_MAX_OFF 511

/* A stack buffer load_hdr() copies into. */
#define AYAFLOW_HDR_BUF __attribute__((aligned(8)))

/*
 * Copies len bytes at offset off of the packet into to, which must be 8-byte
 * aligned (stack accesses are checked for alignment). Reading the linear part
 * directly costs a few loads where the helper costs a call and a copy loop;
 * the fallback reaches any byte of the packet. Both ways leave the same thing
 * on the stack, so the verifier prunes one of them after the first check.
 * Returns 0, or a negative error if the packet is too short.
 */
static __always_inline int load_hdr(struct __sk_buff *skb, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	void *p;

	if (off <= AYAFLOW_DIRECT_MAX_OFF) {
		p = data + off;
		/* Keep clang from turning the check into a subtraction of packet pointers. */
		asm volatile("" : "+r"(p));
		if (p + len <= data_end) {
			/* 4-byte loads: headers start at even offsets and the JIT's loads
			 * need no alignment on the architectures that run TC programs. */
			__builtin_memcpy(to, (const __u32 *)p, len);
			return 0;
		}
	}
	/*
	 * Not needed by the helper, which writes every byte or fails; but a
	 * buffer first written by a helper call trips a verifier bug on some
	 * kernels (6.18: "stack slot 5, total slots 5") unless an instruction
	 * has written it before. Only packets with headers outside the linear
	 * part come here.
	 */
	__builtin_memset(to, 0, len);
	return bpf_skb_load_bytes(skb, off, to, len);
}

/*
 * Writes the IPv4 address as ::ffff:a.b.c.d into a tuple address of a
 * struct parse_ctx, which is 8-byte aligned: word stores, where a byte array
 * of unknown alignment would take one store per byte.
 */
static __always_inline void map_ipv4(__u8 out[16], __be32 addr)
{
	__u32 *w = (__u32 *)out;

	*(__u64 *)out = 0;
	w[2] = bpf_htonl(0xffff);
	w[3] = addr;
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
	struct ethhdr eth AYAFLOW_HDR_BUF;
	struct vlan_tag tag AYAFLOW_HDR_BUF;
	__u16 proto;

	if (load_hdr(skb, off, &eth, sizeof(eth)) < 0)
		return -1;
	off += sizeof(eth);
	proto = bpf_ntohs(eth.h_proto);
#pragma unroll
	for (int i = 0; i < AYAFLOW_MAX_VLAN_TAGS; i++) {
		if (proto != AYAFLOW_ETH_P_8021Q && proto != AYAFLOW_ETH_P_8021AD)
			break;
		if (load_hdr(skb, off, &tag, sizeof(tag)) < 0)
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
 * ports. Sets the addresses, protocol (whatever it is), family, ip_len, flags,
 * fragmented and l4_off. Returns 0, or -1 (malformed, truncated).
 */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct parse_ctx *ctx)
{
	__u32 off = ctx->l3_off;
	struct iphdr ip AYAFLOW_HDR_BUF;
	__u32 hlen, tot_len;

	if (load_hdr(skb, off, &ip, sizeof(ip)) < 0)
		return -1;
	if (ip.version != 4 || ip.ihl < 5)
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
	if (bpf_ntohs(ip.frag_off) & 0x3fff) /* MF or an offset */
		ctx->fragmented = 1;
	map_ipv4(ctx->tuple.src_addr, ip.saddr);
	map_ipv4(ctx->tuple.dst_addr, ip.daddr);
	ctx->l4_off = off + hlen;
	return 0;
}

/*
 * IPv6 at ctx->l3_off, with a bounded walk over extension headers (hop-by-hop,
 * routing, fragment, destination options, AH); a fragment header with a
 * non-zero offset marks a later fragment. Sets what parse_ipv4() sets, the
 * protocol being the header after the extension headers. Returns 0, or -1
 * (malformed, truncated, more extension headers than we walk).
 */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct parse_ctx *ctx)
{
	__u32 off = ctx->l3_off;
	struct ipv6hdr ip6 AYAFLOW_HDR_BUF;
	struct ipv6_ext ext AYAFLOW_HDR_BUF;
	__u8 next;
	__u32 payload_len;

	if (load_hdr(skb, off, &ip6, sizeof(ip6)) < 0)
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
		if (load_hdr(skb, off, &ext, sizeof(ext)) < 0)
			return -1;
		if (next == AYAFLOW_IPPROTO_FRAGMENT) {
			if (bpf_ntohs(ext.frag_off) & 0xfff8)
				ctx->flags |= AYAFLOW_F_FRAGMENT;
			/* An offset or M: an atomic fragment (neither) is whole. */
			if (bpf_ntohs(ext.frag_off) & 0xfff9)
				ctx->fragmented = 1;
			off += 8;
		} else if (next == AYAFLOW_IPPROTO_AH) {
			off += (ext.hdrlen + 2) * 4;
		} else {
			off += (ext.hdrlen + 1) * 8;
		}
		next = ext.nexthdr;
	}
	if (next == AYAFLOW_IPPROTO_HOPOPTS || next == AYAFLOW_IPPROTO_ROUTING ||
	    next == AYAFLOW_IPPROTO_FRAGMENT || next == AYAFLOW_IPPROTO_AH ||
	    next == AYAFLOW_IPPROTO_DSTOPTS)
		return -1; /* more extension headers than we walk */
	ctx->tuple.protocol = next;
	ctx->tuple.addr_type = 6;
	__builtin_memcpy(ctx->tuple.src_addr, &ip6.saddr, 16);
	__builtin_memcpy(ctx->tuple.dst_addr, &ip6.daddr, 16);
	ctx->l4_off = off;
	return 0;
}

/*
 * The IP header at l3_off, l3_proto (host order) saying which version:
 * IPv4, or IPv6 when ipv6 is set. Writes all of ctx, pads included, and for
 * TCP and UDP the ports (a non-first fragment has none: they stay 0).
 * Returns 0 whatever the protocol (parse_packet() decides what it takes), or
 * -1 if the header is not one we read: another version, malformed,
 * truncated, or TCP/UDP without readable ports.
 *
 * A BPF-to-BPF call, not inlined: a tunnelled packet runs it twice, outer and
 * inner header, and one copy keeps the program small. A static function is
 * still verified at each call with the caller's values, so what the ipv6
 * switch turns off is dropped all the same.
 */
static __noinline int parse_ip(struct __sk_buff *skb, struct parse_ctx *ctx, __u32 l3_off,
			       __u32 l3_proto, bool ipv6)
{
	__be16 ports[2] AYAFLOW_HDR_BUF;

	__builtin_memset(ctx, 0, sizeof(*ctx));
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
	if (ctx->tuple.protocol != IPPROTO_TCP && ctx->tuple.protocol != IPPROTO_UDP)
		return 0;
	if (ctx->flags & AYAFLOW_F_FRAGMENT)
		return 0;
	if (ctx->tuple.protocol == IPPROTO_TCP) {
		/* Ports, sequence and acknowledgment numbers, data offset, flags. */
		struct {
			__be16 ports[2];
			__be32 seq_ack[2];
			__u8 doff;
			__u8 flags;
		} th AYAFLOW_HDR_BUF;

		if (load_hdr(skb, ctx->l4_off, &th, 14) < 0)
			return -1;
		ctx->tuple.src_port = bpf_ntohs(th.ports[0]);
		ctx->tuple.dst_port = bpf_ntohs(th.ports[1]);
		ctx->tcp_doff = th.doff;
		ctx->tcp_flags = th.flags;
		return 0;
	}
	/* UDP starts with the two ports too. */
	if (load_hdr(skb, ctx->l4_off, ports, sizeof(ports)) < 0)
		return -1;
	ctx->tuple.src_port = bpf_ntohs(ports[0]);
	ctx->tuple.dst_port = bpf_ntohs(ports[1]);
	return 0;
}

/*
 * The headers that every segment of a GSO/GRO packet repeats: the IP header
 * with any IPv6 extension headers, and the TCP header with its options or
 * the UDP header.
 */
static __always_inline __u32 segment_header_len(const struct parse_ctx *ctx)
{
	__u32 len = ctx->l4_off - ctx->l3_off;

	if (ctx->tuple.protocol == IPPROTO_UDP)
		return len + 8;
	/* Byte 12 of the TCP header, read by parse_ip(): the data offset in its high nibble. */
	return len + (ctx->tcp_doff >> 4) * 4;
}

/*
 * Whether the parsed IP packet in ctx is a tunnel we look into, and where
 * the packet inside begins:
 *  - IP-in-IP: protocol (IPv4) or next header (IPv6) 4, IPv4 inside, or
 *    41, IPv6 inside;
 *  - VXLAN: UDP to port 4789 or 8472, an 8-byte header with the I flag
 *    and every reserved bit zero, an Ethernet frame inside;
 *  - Geneve: UDP to port 6081, version 0, 8 bytes plus its options, then
 *    an Ethernet frame (protocol type 0x6558) or an IP packet (0x0800,
 *    0x86DD).
 * Returns 0 and sets *l3_off and *l3_proto to the inner IP header (an inner
 * frame's VLAN tags skipped; *l3_proto is 0 if the inner frame is too short
 * for its Ethernet header, so nothing is counted). Returns -1 when there is
 * no tunnel header we take (another port or protocol, VXLAN flags other than
 * the I flag alone, another Geneve version or protocol type, a header or its
 * options cut short): the packet then stands for itself.
 */
static __always_inline int tunnel_inner(struct __sk_buff *skb, const struct parse_ctx *ctx,
					__u32 *l3_off, __u16 *l3_proto)
{
	__u32 off = ctx->l4_off;
	__u16 port = ctx->tuple.dst_port;
	__u8 hdr[8] AYAFLOW_HDR_BUF;
	__u16 proto;

	if (ctx->tuple.protocol == AYAFLOW_IPPROTO_IPIP) {
		*l3_off = off;
		*l3_proto = ETH_P_IP;
		return 0;
	}
	if (ctx->tuple.protocol == AYAFLOW_IPPROTO_IPV6) {
		*l3_off = off;
		*l3_proto = ETH_P_IPV6;
		return 0;
	}
	if (ctx->tuple.protocol != IPPROTO_UDP)
		return -1;
	if (port != AYAFLOW_VXLAN_PORT && port != AYAFLOW_VXLAN_LINUX_PORT &&
	    port != AYAFLOW_GENEVE_PORT)
		return -1;
	off += 8; /* the UDP header */
	if (load_hdr(skb, off, hdr, sizeof(hdr)) < 0)
		return -1;
	off += sizeof(hdr);
	if (port == AYAFLOW_GENEVE_PORT) {
		/* Byte 0: version (2 bits), options length in 4-byte words (6 bits). */
		if (hdr[0] >> 6)
			return -1;
		off += (hdr[0] & 0x3f) * 4;
		if (off > skb->len)
			return -1;
		proto = ((__u16)hdr[2] << 8) | hdr[3];
		if (proto == ETH_P_IP || proto == ETH_P_IPV6) {
			*l3_off = off;
			*l3_proto = proto;
			return 0;
		}
		if (proto != AYAFLOW_ETH_P_TEB)
			return -1;
	} else if (hdr[0] != AYAFLOW_VXLAN_FLAG_I || hdr[1] || hdr[2] || hdr[3] || hdr[7]) {
		/*
		 * The header a Linux VXLAN device takes without extensions: the
		 * I flag alone, reserved bits zero. Any other UDP payload to these
		 * ports (a flood's 'xxxx' has the I bit) stays an ordinary packet.
		 */
		return -1;
	}
	*l3_off = off;
	*l3_proto = 0;
	parse_l2(skb, off, l3_off, l3_proto);
	return 0;
}

/*
 * The packet as the TC hook sees it, into ctx: a TCP or UDP packet over IPv4,
 * or IPv6 when ipv6 is set. ip_only (a constant per program) is for devices
 * without a link-layer header (tun, WireGuard, ipip, PPP): the packet starts
 * with the IP header and skb->protocol says which.
 *
 * With decapsulate set, a packet carrying one level of tunnel (see
 * tunnel_inner()) is described by the packet inside: its addresses, ports,
 * protocol, family and IP length, with AYAFLOW_F_TUNNEL, as the same packet is
 * seen on the pod's own interface. If what is inside is not TCP or UDP (ARP,
 * ICMP), is IPv6 with ipv6 off, or is cut short, nothing is counted, as
 * nothing would be there either. A fragment of the outer packet (the first
 * included: the inner packet is incomplete in it) is never looked into.
 * Returns 0, or -1 when the packet is not counted.
 */
static __always_inline int parse_packet(struct __sk_buff *skb, struct parse_ctx *ctx, bool ip_only,
					bool ipv6, bool decapsulate)
{
	__u32 l3_off = 0;
	__u16 l3_proto;

	if (ip_only)
		l3_proto = bpf_ntohs((__be16)skb->protocol);
	else if (parse_l2(skb, 0, &l3_off, &l3_proto) < 0)
		return -1;
	if (parse_ip(skb, ctx, l3_off, l3_proto, ipv6) < 0)
		return -1;
	if (decapsulate && !ctx->fragmented && tunnel_inner(skb, ctx, &l3_off, &l3_proto) == 0) {
		if (parse_ip(skb, ctx, l3_off, l3_proto, ipv6) < 0)
			return -1;
		ctx->flags |= AYAFLOW_F_TUNNEL;
	}
	if (ctx->tuple.protocol != IPPROTO_TCP && ctx->tuple.protocol != IPPROTO_UDP)
		return -1;
	return 0;
}

#endif /* AYAFLOW_BPF_LIB_PARSE_H */
