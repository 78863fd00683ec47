/* SPDX-License-Identifier: (GPL-2.0-only OR MIT OR Apache-2.0) */
/*
 * The only definitions shared by the BPF program (bpf/ayaflow.bpf.c) and the
 * userspace agent. Plain C, fixed-width fields, no implicit padding: every
 * gap is a named pad field that the BPF side writes as zero. The layout is
 * asserted on both compilers below and against the program's BTF in a unit
 * test; change AYAFLOW_ABI_VERSION when it changes.
 */
#ifndef AYAFLOW_ABI_EVENT_H
#define AYAFLOW_ABI_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#ifdef __cplusplus
#include <cstddef>
#define AYAFLOW_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#define AYAFLOW_OFFSETOF(type, member) offsetof(type, member)
#else
#ifndef __bpf__
#include <stddef.h>
#endif
#define AYAFLOW_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#define AYAFLOW_OFFSETOF(type, member) __builtin_offsetof(type, member)
#endif

#define AYAFLOW_ABI_VERSION 6

/* ayaflow_packet_event.kind, ayaflow_payload_event.kind */
#define AYAFLOW_EVENT_PACKET 1
#define AYAFLOW_EVENT_PAYLOAD 2

/* ayaflow_packet_event.direction: fixed by the attach point, not guessed. */
#define AYAFLOW_DIR_INGRESS 0
#define AYAFLOW_DIR_EGRESS 1

/* ayaflow_packet_event.flags */
#define AYAFLOW_F_FRAGMENT 0x01 /* a non-first IP fragment: ports are 0 */
/*
 * Seen inside a tunnel (VXLAN, Geneve, IP-in-IP) and decapsulated: the tuple,
 * family and length are the inner packet's; the tunnel's own headers are not
 * counted.
 */
#define AYAFLOW_F_TUNNEL 0x02

/*
 * The directional 5-tuple and address family of a packet, embedded unchanged in
 * every record that names a flow (packet event, flow-table key, payload record),
 * so the kernel copies it with one assignment. 40 bytes.
 */
struct ayaflow_tuple {
	__u8 src_addr[16]; /* network order; IPv4 as ::ffff:a.b.c.d */
	__u8 dst_addr[16]; /* network order; IPv4 as ::ffff:a.b.c.d */
	__u16 src_port;	   /* host byte order; 0 for non-first fragments */
	__u16 dst_port;	   /* host byte order; 0 for non-first fragments */
	__u8 protocol;	   /* IPPROTO_TCP (6) or IPPROTO_UDP (17) */
	__u8 addr_type;	   /* 4 or 6 */
	__u8 pad[2];
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_tuple) == 40, "tuple size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_tuple, src_addr) == 0, "src_addr");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_tuple, dst_addr) == 16, "dst_addr");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_tuple, src_port) == 32, "src_port");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_tuple, dst_port) == 34, "dst_port");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_tuple, protocol) == 36, "protocol");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_tuple, addr_type) == 37, "addr_type");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_tuple, pad) == 38, "pad");

/*
 * One event per TCP or UDP skb (IPv4, and IPv6 when enabled) seen at the
 * hook. A GSO super-packet (egress) or GRO-merged packet (ingress) stands
 * for segs packets on the wire (skb gso_segs, at least 1), and pkt_len is
 * the sum of their IP lengths: the skb's IP length plus segs - 1 copies of
 * the IP and TCP (or UDP) headers. 64 bytes, 8-byte aligned.
 */
struct ayaflow_packet_event {
	__u16 abi_version;  /* AYAFLOW_ABI_VERSION */
	__u8 kind;	    /* AYAFLOW_EVENT_PACKET */
	__u8 direction;	    /* AYAFLOW_DIR_* */
	__u8 flags;	    /* AYAFLOW_F_* */
	__u8 tcp_flags;	    /* TCP: the header's flags byte (FIN 0x01 .. CWR 0x80); 0 for UDP */
	__u16 segs;	    /* wire packets this skb stands for: 1, or its gso_segs */
	__u32 ifindex;	    /* interface the program is attached to */
	__u32 pkt_len;	    /* IP bytes of those segs packets on the wire */
	__u64 timestamp_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	struct ayaflow_tuple tuple; /* addresses, ports, protocol, family */
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_packet_event) == 64, "packet event size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, abi_version) == 0,
		      "abi_version");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, kind) == 2, "kind");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, direction) == 3, "direction");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, flags) == 4, "flags");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, tcp_flags) == 5, "tcp_flags");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, segs) == 6, "segs");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, ifindex) == 8, "ifindex");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, pkt_len) == 12, "pkt_len");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, timestamp_ns) == 16,
		      "timestamp_ns");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_packet_event, tuple) == 24, "tuple");

/*
 * Exact totals kept by the kernel in a per-CPU hash map (`stats`), one entry
 * per interface, direction, protocol and address family. packets/bytes count
 * exactly the wire packets of the skbs that produce an event (whether or not
 * the ring buffer had room), a GSO/GRO skb as its segs packets (see
 * ayaflow_packet_event); events_lost counts failed ring-buffer writes, and
 * super_packets the skbs that stood for more than one packet. Userspace sums
 * the CPUs and the keys. When the map is full (AYAFLOW_STATS_MAX_ENTRIES
 * keys) the program counts into the one-entry `stats_overflow` array under
 * the key's direction instead, so totals stay exact.
 *
 * Each packet is counted once per node, at the first hook it passes (see
 * AYAFLOW_ROLE_* below): a packet seen at a hook after it was counted at
 * another one adds to elsewhere_packets/elsewhere_bytes of this hook's key
 * instead of packets/bytes, and produces no event.
 */
#define AYAFLOW_STATS_MAX_ENTRIES 1024

struct ayaflow_stats_key {
	__u32 ifindex;
	__u8 direction; /* AYAFLOW_DIR_* */
	__u8 protocol;	/* 6 or 17 */
	__u8 addr_type; /* 4 or 6 */
	__u8 pad;
};

struct ayaflow_stats {
	__u64 packets;
	__u64 bytes;
	__u64 events_lost;
	__u64 super_packets;	 /* GSO/GRO skbs with segs > 1 */
	__u64 elsewhere_packets; /* passed this hook, counted at another one */
	__u64 elsewhere_bytes;
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_stats_key) == 8, "stats key size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats_key, ifindex) == 0, "ifindex");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats_key, direction) == 4, "direction");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats_key, protocol) == 5, "protocol");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats_key, addr_type) == 6, "addr_type");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats_key, pad) == 7, "pad");
AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_stats) == 48, "stats size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats, packets) == 0, "packets");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats, bytes) == 8, "bytes");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats, events_lost) == 16, "events_lost");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats, super_packets) == 24, "super_packets");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats, elsewhere_packets) == 32,
		      "elsewhere_packets");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_stats, elsewhere_bytes) == 40,
		      "elsewhere_bytes");

/*
 * Once per node: the role of each interface the counting rule needs to know,
 * written by userspace into `iface_roles` (ifindex -> __u8). A packet is
 * counted at the ingress hook of the interface it enters the node through,
 * and at an egress hook only if it did not enter through a hook that counts
 * it or a device that re-delivers such packets (the kernel's ingress_ifindex
 * of the skb names that interface; 0 for packets the node itself sends).
 *  - COUNT: an attached interface (a pod's veth, an uplink): counts ingress,
 *    and what arrives through it is not counted again on the way out.
 *  - OBSERVE: an attached bridge or tunnel device while interfaces of the
 *    other kind are attached: it only passes on packets counted elsewhere, so
 *    it counts nothing (its figures go to elsewhere_*).
 *  - REENTRY: a device not attached that re-delivers packets already counted
 *    (a bridge with an attached port, a tunnel device whose encapsulated
 *    packets arrive through an attached uplink): what arrives through it is
 *    not counted again on the way out.
 * An attached interface without an entry counts both ways (as before roles).
 * Key 0 stands for packets that a tunnel device encapsulated for another
 * node: the device clears their ingress interface, so an egress hook sees
 * 0. A decapsulated packet (AYAFLOW_F_TUNNEL) with ingress interface 0 and
 * no local socket was forwarded into the tunnel, and is counted elsewhere
 * when key 0 has a role (REENTRY: the pods' interfaces are attached).
 */
#define AYAFLOW_IFACE_ROLES_MAX_ENTRIES 16384
/*
 * Interface indexes below this have their entry in the array `iface_info`
 * (role 0: no role), which the verifier turns into an indexed load; larger
 * ones (a node that has created many devices) in the hash `iface_roles`.
 * Every packet looks its interface up, so the array saves a hash lookup per
 * packet.
 */
#define AYAFLOW_IFACE_ROLES_ARRAY_ENTRIES 4096

/*
 * Per-CPU totals by slot: userspace gives each attached interface (up to
 * AYAFLOW_STATS_SLOTS of them) a slot, and the program counts its packets in
 * the per-CPU array `stats_slots` at AYAFLOW_STATS_SLOT_INDEX() instead of
 * the `stats` hash: the interface's entry is looked up anyway for its role,
 * so the totals cost an indexed load instead of a second hash lookup. An
 * interface without a slot (none free, or no role written) is counted in the
 * hash as before; userspace adds both.
 */
#define AYAFLOW_STATS_SLOTS 128
#define AYAFLOW_STATS_SLOT_KEYS 8 /* direction x protocol (TCP, UDP) x family (4, 6) */
#define AYAFLOW_STATS_SLOT_INDEX(slot, direction, udp, ipv6)                                       \
	(((slot)-1) * AYAFLOW_STATS_SLOT_KEYS + ((direction)&1) * 4 + ((udp) ? 2 : 0) +            \
	 ((ipv6) ? 1 : 0))

/* The value of `iface_info` and `iface_roles`: an interface's role and stats slot. */
struct ayaflow_iface_info {
	__u8 role; /* AYAFLOW_ROLE_*, 0: none */
	__u8 pad;
	__u16 stats_slot; /* 1..AYAFLOW_STATS_SLOTS, 0: counted in the `stats` hash */
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_iface_info) == 4, "iface info size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_iface_info, stats_slot) == 2, "stats_slot");
#define AYAFLOW_ROLE_COUNT 1
#define AYAFLOW_ROLE_OBSERVE 2
#define AYAFLOW_ROLE_REENTRY 3

/*
 * Deep inspection (--deep-inspect): payload bytes of DNS (UDP port 53, either
 * side) and of the first AYAFLOW_TLS_CAPTURE_BYTES of each TCP connection's
 * client-to-server stream to port 443 (where a TLS ClientHello lives), in
 * the `payload_events` ring buffer. A segment is sent as one or more
 * records of at most AYAFLOW_PAYLOAD_CHUNK data bytes; records are variable
 * length: the fixed header below plus data_len bytes.
 */
#define AYAFLOW_PAYLOAD_CHUNK 1024
#define AYAFLOW_PAYLOAD_CHUNKS_PER_SEGMENT 4
#define AYAFLOW_TLS_CAPTURE_BYTES 4096
#define AYAFLOW_TLS_PORT 443
#define AYAFLOW_DNS_PORT 53

/* ayaflow_payload_event.flags */
#define AYAFLOW_PF_SYN 0x01 /* a TCP SYN: seq is the initial sequence number, no data */
#define AYAFLOW_PF_FIN 0x02 /* a TCP FIN or RST: the stream ends */

struct ayaflow_payload_event {
	__u16 abi_version; /* AYAFLOW_ABI_VERSION */
	__u8 kind;	   /* AYAFLOW_EVENT_PAYLOAD */
	__u8 direction;	   /* AYAFLOW_DIR_* */
	__u8 flags;	   /* AYAFLOW_PF_* */
	__u8 pad;
	__u16 data_len; /* bytes of data that follow (record length - header) */
	__u32 ifindex;
	__u32 seq;		    /* TCP: sequence number of data[0]; UDP: 0 */
	__u64 timestamp_ns;	    /* bpf_ktime_get_ns() */
	struct ayaflow_tuple tuple; /* TCP: client to server; UDP: source to destination */
	__u8 data[AYAFLOW_PAYLOAD_CHUNK];
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_payload_event) == 64 + AYAFLOW_PAYLOAD_CHUNK,
		      "payload event size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, abi_version) == 0,
		      "abi_version");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, kind) == 2, "kind");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, direction) == 3, "direction");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, flags) == 4, "flags");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, pad) == 5, "pad");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, data_len) == 6, "data_len");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, ifindex) == 8, "ifindex");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, seq) == 12, "seq");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, timestamp_ns) == 16,
		      "timestamp_ns");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, tuple) == 24, "tuple");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_event, data) == 64, "data");

/* Payload records written and lost (ring buffer full), per CPU, by direction. */
struct ayaflow_payload_stats {
	__u64 events;
	__u64 lost;
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_payload_stats) == 16, "payload stats size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_stats, events) == 0, "events");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_payload_stats, lost) == 8, "lost");

/*
 * Flow tables (aggregated mode, ayaflow_flow_table on): instead of an event
 * per packet, the program adds each packet to its directional flow's entry in
 * the active table (`flow_tables[0]`, one of two hash maps). Userspace swaps
 * the tables about once a second, waits until no program still uses the old
 * one (the kernel's RCU grace period on a map-in-map update) and then reads
 * and empties it, so every packet is counted exactly once. When the active
 * table is full the packet goes to the `events` ring buffer as before and is
 * counted in `flow_table_overflow`.
 */
#define AYAFLOW_FLOW_TABLE_ENTRIES 16384

struct ayaflow_flow_key {
	struct ayaflow_tuple tuple;
	__u32 ifindex;
	__u8 direction; /* AYAFLOW_DIR_* */
	__u8 flags;	/* AYAFLOW_F_* */
	__u8 pad[2];
};

/*
 * TCP (ayaflow_tcp_state on): tcp_flags ORs the header flags of the entry's
 * packets, plus AYAFLOW_TCPF_SYNACK/FINACK/RSTACK for packets that carry ACK
 * with SYN, FIN or RST, so the OR still tells a SYN from a SYN-ACK. syns
 * counts the packets with SYN, syn_ns is the time of the latest of them, and
 * ack_ns the time of the first packet with ACK and without SYN (the last step
 * of a handshake); 0 when there was none. Userspace pairs them across the
 * two directions into the handshake's round-trip time.
 */
#define AYAFLOW_TCPF_SYNACK 0x100
#define AYAFLOW_TCPF_FINACK 0x200
#define AYAFLOW_TCPF_RSTACK 0x400

struct ayaflow_flow_value {
	__u64 packets;	/* sum of segs */
	__u64 bytes;	/* sum of pkt_len */
	__u64 first_ns; /* bpf_ktime_get_ns() of the first packet in this table */
	__u64 last_ns;	/* of the latest packet (approximate across CPUs) */
	__u64 syn_ns;	/* TCP: the latest packet with SYN */
	__u64 ack_ns;	/* TCP: the first packet with ACK and without SYN */
	__u64
	    tcp_flags; /* TCP: header flags OR-ed, AYAFLOW_TCPF_* included (64 bits: BPF atomics) */
	__u64 syns;    /* TCP: packets with SYN */
};

AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_flow_key) == 48, "flow key size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_key, tuple) == 0, "tuple");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_key, ifindex) == 40, "ifindex");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_key, direction) == 44, "direction");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_key, flags) == 45, "flags");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_key, pad) == 46, "pad");
AYAFLOW_STATIC_ASSERT(sizeof(struct ayaflow_flow_value) == 64, "flow value size");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, packets) == 0, "packets");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, bytes) == 8, "bytes");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, first_ns) == 16, "first_ns");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, last_ns) == 24, "last_ns");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, syn_ns) == 32, "syn_ns");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, ack_ns) == 40, "ack_ns");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, tcp_flags) == 48, "tcp_flags");
AYAFLOW_STATIC_ASSERT(AYAFLOW_OFFSETOF(struct ayaflow_flow_value, syns) == 56, "syns");

#endif /* AYAFLOW_ABI_EVENT_H */
