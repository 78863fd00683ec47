/* SPDX-License-Identifier: GPL-2.0-only */
/* Settings of the ayaflow TC classifier, written by userspace (BpfProgram). */
#ifndef AYAFLOW_BPF_SETTINGS_H
#define AYAFLOW_BPF_SETTINGS_H

#include <stdbool.h>
#include <linux/types.h>

/*
 * Load-time switches in .rodata: set between open and load, then frozen.
 * The verifier knows their values, so the code a switch disables is
 * dropped from the loaded program rather than skipped at run time.
 *  - ayaflow_enable_ipv6: count IPv6 packets too (IPv4 only when off).
 *  - ayaflow_deep_inspect: copy DNS and TLS ClientHello payloads into
 *    `payload_events` (payload.h).
 *  - ayaflow_flow_table: aggregated mode, count packets per flow in the
 *    active flow table instead of sending an event per packet.
 *  - ayaflow_decapsulate: count a packet carried in one level of VXLAN,
 *    Geneve or IP-in-IP as the packet inside (its flow, its length), marked
 *    AYAFLOW_F_TUNNEL, as the pods' own interfaces see it (lib/parse.h,
 *    parse_packet()). Off: every packet is counted by its outer headers.
 *  - ayaflow_tcp_state: report TCP flags (packet events) and the handshake's
 *    flags, counts and times (flow tables), from which userspace derives each
 *    connection's state and handshake round-trip time.
 */
const volatile bool ayaflow_enable_ipv6 = false;
const volatile bool ayaflow_deep_inspect = false;
const volatile bool ayaflow_flow_table = false;
const volatile bool ayaflow_decapsulate = true;
const volatile bool ayaflow_tcp_state = true;

/*
 * Run-time settings in .bss (an mmap-able array map): userspace may change
 * them while the programs run.
 *  - ayaflow_wakeup_bytes: events are submitted without waking the reader
 *    until this many bytes are pending; the reader also drains on a short
 *    timer, so quiet periods are not delayed for long.
 *  - ayaflow_payload_wakeup_bytes: the same for `payload_events`.
 */
volatile __u64 ayaflow_wakeup_bytes;
volatile __u64 ayaflow_payload_wakeup_bytes;

/* Written by the programs: when each ring's reader was last woken (ringbuf_wakeup_flags). */
volatile __u64 ayaflow_events_woken_ns;
volatile __u64 ayaflow_payload_woken_ns;

#endif /* AYAFLOW_BPF_SETTINGS_H */
