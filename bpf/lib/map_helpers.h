/* SPDX-License-Identifier: GPL-2.0-only */
/* Map access patterns shared by the ayaflow BPF programs. */
#ifndef AYAFLOW_BPF_LIB_MAP_HELPERS_H
#define AYAFLOW_BPF_LIB_MAP_HELPERS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/*
 * The value under key in a hash map, created as a copy of init if missing.
 * BPF_NOEXIST never overwrites a value another CPU created in the meantime
 * (the update then fails with -EEXIST and the lookup after it finds that
 * value). Returns NULL only when the map is full (-E2BIG).
 */
static __always_inline void *map_lookup_or_init(void *map, const void *key, const void *init)
{
	void *value = bpf_map_lookup_elem(map, key);

	if (value)
		return value;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/* Forced wake-ups of a ring buffer's reader are at least this far apart. */
#define AYAFLOW_WAKEUP_GAP_NS 250000ULL

/*
 * Flags for bpf_ringbuf_output(): records go in without waking the reader
 * until `threshold` bytes are pending; then the reader is woken, and woken
 * again at most every AYAFLOW_WAKEUP_GAP_NS while the bytes stay pending.
 * Each forced wake-up costs the sending CPU an IRQ work; without the gap, a
 * reader that is slow to get a CPU meets a storm of them (one per record),
 * which slows the senders when the reader needs them least. `last` holds the
 * time of the latest forced wake-up (a global: CPUs race on it, and the race
 * costs at most an extra wake-up); `now` is bpf_ktime_get_ns(). The reader
 * also drains on a short timer, so nothing waits long for a wake-up.
 */
static __always_inline __u64 ringbuf_wakeup_flags(void *ring, __u64 threshold, __u64 now,
						  volatile __u64 *last)
{
	if (bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) < threshold)
		return BPF_RB_NO_WAKEUP;
	if (now - *last < AYAFLOW_WAKEUP_GAP_NS)
		return BPF_RB_NO_WAKEUP;
	*last = now;
	return BPF_RB_FORCE_WAKEUP;
}

#endif /* AYAFLOW_BPF_LIB_MAP_HELPERS_H */
