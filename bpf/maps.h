/* SPDX-License-Identifier: GPL-2.0-only */
/* Maps of the ayaflow TC classifier. */
#ifndef AYAFLOW_BPF_MAPS_H
#define AYAFLOW_BPF_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "ayaflow/abi/event.h"

/* Packet events; userspace sets the size (--ring-buffer-size) before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Exact per-CPU totals by interface, direction, protocol and family. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, AYAFLOW_STATS_MAX_ENTRIES);
	__type(key, struct ayaflow_stats_key);
	__type(value, struct ayaflow_stats);
} stats SEC(".maps");

/* The totals of interfaces with a stats slot (AYAFLOW_STATS_SLOT_INDEX). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AYAFLOW_STATS_SLOTS *AYAFLOW_STATS_SLOT_KEYS);
	__type(key, __u32);
	__type(value, struct ayaflow_stats);
} stats_slots SEC(".maps");

/* Where packets are counted, by direction, once `stats` is full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct ayaflow_stats);
} stats_overflow SEC(".maps");

/*
 * Once per node: ifindex -> role and stats slot (struct ayaflow_iface_info,
 * see ayaflow/abi/event.h), written by userspace: indexes below
 * AYAFLOW_IFACE_ROLES_ARRAY_ENTRIES in the array (role 0: none), larger ones
 * in the hash (no entry: none).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, AYAFLOW_IFACE_ROLES_ARRAY_ENTRIES);
	__type(key, __u32);
	__type(value, struct ayaflow_iface_info);
} iface_info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AYAFLOW_IFACE_ROLES_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct ayaflow_iface_info);
} iface_roles SEC(".maps");

/* Deep inspection: payload records; sized by userspace (small when off). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} payload_events SEC(".maps");

/* Payload records written and lost, by direction. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct ayaflow_payload_stats);
} payload_stats SEC(".maps");

/* Per-CPU scratch space to assemble a variable-length payload record. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ayaflow_payload_event);
} payload_scratch SEC(".maps");

/* TCP connections to port 443 whose first bytes are being captured:
 * client-to-server tuple -> initial sequence number. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ayaflow_tuple);
	__type(value, __u32);
} tls_flows SEC(".maps");

/* Aggregated mode: two flow tables, of which flow_tables[0] is the active one. */
struct flow_table {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AYAFLOW_FLOW_TABLE_ENTRIES);
	__type(key, struct ayaflow_flow_key);
	__type(value, struct ayaflow_flow_value);
} flows_a SEC(".maps"), flows_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct flow_table);
} flow_tables SEC(".maps") = {
    .values = {[0] = &flows_a},
};

/* Packets sent as events because the active flow table was full, by direction. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} flow_table_overflow SEC(".maps");

/* Keep the ABI types in BTF: bpftool then asserts their size in the skeleton. */
struct ayaflow_packet_event _event;
struct ayaflow_stats _stats;
struct ayaflow_stats_key _stats_key;
struct ayaflow_payload_event _payload_event;
struct ayaflow_payload_stats _payload_stats;
struct ayaflow_flow_key _flow_key;
struct ayaflow_flow_value _flow_value;
struct ayaflow_iface_info _iface_info;

#endif /* AYAFLOW_BPF_MAPS_H */
