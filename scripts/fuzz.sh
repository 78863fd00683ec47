#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Builds the libFuzzer targets (fuzz/) with clang and runs each from its seed corpus for a
# bounded time. Exits non-zero if any target finds a crash, a leak, a timeout or a broken
# property; the reproducer is left in <build dir>/fuzz-artifacts/<target>/ (copy it into
# fuzz/regressions/<target>/ once fixed, so the unit tests replay it).
#
# usage: scripts/fuzz.sh [TOTAL_SECONDS]     (default 60, split evenly across the targets)
# env:   AYAFLOW_FUZZ_BUILD_DIR  build directory (default <repo>/build-fuzz)
#        AYAFLOW_FUZZ_CORPUS_DIR keep the grown corpora here (default: a temporary dir)
#        AYAFLOW_FUZZ_TARGETS    targets to run (default "dns tls reassembler")
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
total=${1:-60}
build=${AYAFLOW_FUZZ_BUILD_DIR:-$root/build-fuzz}
read -r -a targets <<<"${AYAFLOW_FUZZ_TARGETS:-dns tls reassembler}"
[[ $total =~ ^[0-9]+$ ]] || { echo "fuzz.sh: TOTAL_SECONDS must be a number" >&2; exit 2; }
per=$((total / ${#targets[@]}))
((per >= 1)) || per=1
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is missing" >&2; exit 1; }

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DAYAFLOW_BUILD_FUZZ=ON -DAYAFLOW_BUILD_TESTS=OFF -DAYAFLOW_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j2 --target "${targets[@]/#/fuzz_}"

if [[ -n ${AYAFLOW_FUZZ_CORPUS_DIR:-} ]]; then
  corpora=$AYAFLOW_FUZZ_CORPUS_DIR
  mkdir -p "$corpora"
else
  corpora=$(mktemp -d)
  trap 'rm -rf "$corpora"' EXIT
fi

failed=()
for t in "${targets[@]}"; do
  corpus=$corpora/$t
  artifacts=$build/fuzz-artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  # Seeds: the committed corpus and regressions, plus the real captures for the parsers.
  for d in "$root/fuzz/corpus/$t" "$root/fuzz/regressions/$t"; do
    [[ -d $d ]] && find "$d" -maxdepth 1 -type f ! -name '*.md' ! -name '*.py' -exec cp {} "$corpus/" \;
  done
  case $t in
    dns) cp "$root"/tests/inspect/data/dns_*.bin "$corpus/" ;;
    tls) cp "$root"/tests/inspect/data/tls_*.bin "$corpus/" ;;
  esac
  echo "fuzz.sh: fuzz_$t for ${per}s ($(find "$corpus" -type f | wc -l) seeds)"
  if ! "$build/fuzz/fuzz_$t" -max_total_time="$per" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$corpus" 2>"$build/fuzz-$t.log"; then
    failed+=("$t")
    tail -n 40 "$build/fuzz-$t.log" >&2
  fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" \
    "$build/fuzz-$t.log" | sed "s/^/  /" || true
  grep -E "^#[0-9]+.*(DONE|pulse)" "$build/fuzz-$t.log" | tail -n 1 | sed "s/^/  /" || true
done

if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: FAILED: ${failed[*]} (reproducers in $build/fuzz-artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: no crash in ${targets[*]}"
