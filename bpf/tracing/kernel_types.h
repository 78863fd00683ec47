/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The few kernel-internal types the tracing probes read, declared with only
 * the fields used and relocated at load time against the running kernel's
 * BTF (CO-RE, preserve_access_index): field offsets are the kernel's, never
 * these declarations'. The ___ayaflow suffix keeps the names apart from any
 * header's; libbpf ignores it when it matches the kernel's type.
 */
#ifndef AYAFLOW_BPF_TRACING_KERNEL_TYPES_H
#define AYAFLOW_BPF_TRACING_KERNEL_TYPES_H

#include <linux/types.h>

struct in6_addr___ayaflow {
	__u8 s6_addr[16];
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr___ayaflow skc_v6_daddr;
	struct in6_addr___ayaflow skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol; /* a bitfield before 5.6: read with BPF_CORE_READ_BITFIELD_PROBED */
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 srtt_us;	     /* smoothed RTT << 3, in microseconds */
	__u32 total_retrans; /* retransmitted segments, grows with TcpRetransSegs */
} __attribute__((preserve_access_index));

struct sk_buff {
	unsigned int len;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	unsigned char *head;
	char cb[48];
} __attribute__((preserve_access_index));

/* TCP's control block in skb->cb (TCP_SKB_CB()). */
struct tcp_skb_cb {
	__u32 seq;
	__u32 end_seq;
	union {
		struct {
			__u16 tcp_gso_segs;
			__u16 tcp_gso_size;
		};
		__u32 tcp_tw_isn;
	};
} __attribute__((preserve_access_index));

/*
 * The values are placeholders: every use goes through bpf_core_enum_value(),
 * which takes the running kernel's value (the enum has changed between
 * releases, and values were inserted at its start).
 */
enum skb_drop_reason {
	SKB_NOT_DROPPED_YET = 0,
	SKB_CONSUMED = 1,
	SKB_DROP_REASON_NOT_SPECIFIED = 2,
	SKB_DROP_REASON_OTHERHOST = 3,
};

#endif /* AYAFLOW_BPF_TRACING_KERNEL_TYPES_H */
