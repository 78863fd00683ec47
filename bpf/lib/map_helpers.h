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

#endif /* AYAFLOW_BPF_LIB_MAP_HELPERS_H */
