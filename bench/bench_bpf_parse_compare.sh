#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Before/after for the TC classifier in one invocation (root): runs two builds of
# bench_bpf_parse in turn, REPS times each, with the same options, and prints for every
# frame the fastest ns per run of each build and their ratio (after / before). The machine
# is shared and noisy: the minimum over interleaved runs is the figure least disturbed by
# other work, and both builds meet the same disturbances.
#
#   bench/bench_bpf_parse_compare.sh BEFORE_BIN AFTER_BIN [bench_bpf_parse options...]
#   REPS (5), REPEAT (300000), ROUNDS (2)
set -euo pipefail
[[ $# -ge 2 ]] || {
  echo "usage: $0 BEFORE_BIN AFTER_BIN [bench_bpf_parse options...]" >&2
  exit 2
}
before=$1
after=$2
shift 2
reps=${REPS:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ((r = 0; r < reps; r++)); do
  "$before" --repeat "${REPEAT:-300000}" --rounds "${ROUNDS:-2}" "$@" | sed 's/^/before /' >>"$out"
  "$after" --repeat "${REPEAT:-300000}" --rounds "${ROUNDS:-2}" "$@" | sed 's/^/after /' >>"$out"
done
grep -m1 '^before mode' "$out" | sed 's/^before //' || true
grep -m1 '^before xlated' "$out" || true
grep -m1 '^after xlated' "$out" || true
# Lines: "<build> <frame> <bytes> bytes  min <ns> ns/run ...": the minimum per build and frame.
awk '$2 != "mode" && $2 != "xlated/jited" && $4 == "bytes" {
       k = $2; v = $6 + 0
       if ($1 == "before") { if (!(k in b) || v < b[k]) b[k] = v }
       else { if (!(k in a) || v < a[k]) a[k] = v }
       if (!(k in seen)) { seen[k] = 1; order[n++] = k }
     }
     END {
       printf "%-8s %10s %10s %7s\n", "frame", "before ns", "after ns", "ratio"
       for (i = 0; i < n; i++) { k = order[i]; printf "%-8s %10.1f %10.1f %7.3f\n", k, b[k], a[k], a[k] / b[k] }
     }' "$out"
