#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Agent memory and CPU benchmark: runs the real agent on one end of a veth pair and
# floods UDP across the pair, sampling the agent's memory (VmRSS/VmHWM) and CPU time.
#
#   bench/rss_bench.sh [BUILD_DIR]     (as root; BUILD_DIR default: build-bench)
#
# BUILD_DIR must hold ayaflow and bench/udp_flood (a Release build). The script creates
# its own network namespace and veth pair (names end in this shell's PID, addresses in
# 10.214.0.0/16), sends traffic only between the two ends of that pair, and removes
# both, its temporary directory and every process it started on exit, also on failure
# or Ctrl-C. It touches no other interface.
#
# Phases: idle (IDLE_SECONDS), flood (RATE packets/s over FLOWS flows for SECONDS),
# churn (CHURN_FLOWS new flows at RATE for CHURN_SECONDS; CHURN_FLOWS=0 skips it), then
# a wait until the churn flows have expired (CONNECTION_TIMEOUT + one 10 s expiry pass).
# During both traffic phases /api/live and /api/stats are read once a second. Prints a
# markdown table; exits non-zero if a check fails (agent died, kernel total below the
# packets sent, exit status of the agent not 0). With SMAPS_DIR=DIR it also keeps the
# agent's /proc/PID/smaps from the idle, flood and expired points in DIR. With
# MEMORY_LIMIT=BYTES (e.g. 128M, the DaemonSet's limit) the agent runs in a cgroup v1
# memory cgroup of its own with that limit (an OOM kill then fails the run), and the
# cgroup's peak usage is reported.
set -euo pipefail

build_dir=${1:-build-bench}
RATE=${RATE:-20000}
SECONDS_FLOOD=${SECONDS_FLOOD:-60}
FLOWS=${FLOWS:-1000}
PAYLOAD=${PAYLOAD:-64}
CHURN_FLOWS=${CHURN_FLOWS:-100000}
CHURN_SECONDS=${CHURN_SECONDS:-30}
CONNECTION_TIMEOUT=${CONNECTION_TIMEOUT:-30}
IDLE_SECONDS=${IDLE_SECONDS:-5}
AGENT_QUIET=${AGENT_QUIET:-1} # 0: run without --quiet and report the agent's final log line
AGENT_ARGS=${AGENT_ARGS:-}     # extra agent flags, e.g. --deep-inspect
FLOOD_PORT=${FLOOD_PORT:-9}    # destination port of the flood (53: every packet is inspected)
MEMORY_LIMIT=${MEMORY_LIMIT:-} # e.g. 128M: run the agent in a memory cgroup with this limit

agent_bin=$build_dir/ayaflow
flood_bin=$build_dir/bench/udp_flood
for f in "$agent_bin" "$flood_bin"; do
  if [[ ! -x $f ]]; then
    echo "rss_bench: $f not found; build it first:" >&2
    echo "  cmake -S . -B $build_dir -G Ninja -DCMAKE_BUILD_TYPE=Release" >&2
    echo "  cmake --build $build_dir --target ayaflow udp_flood" >&2
    exit 2
  fi
done
if [[ $(id -u) -ne 0 ]]; then
  echo "rss_bench: run as root (network namespaces, BPF, raw socket)" >&2
  exit 2
fi
for tool in ip curl; do
  command -v "$tool" >/dev/null || { echo "rss_bench: needs $tool" >&2; exit 2; }
done

ns=ayfb$$
host_if=ayfbh$$ # interface names: at most 15 characters
peer_if=ayfbp$$
tmp=$(mktemp -d /tmp/ayaflow-bench.XXXXXX)
agent_pid=
flood_pid=
sampler_pid=
memcg=

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  teardown_test_run "$rc" $sampler_pid $flood_pid $agent_pid
  [[ -z $memcg ]] || rmdir "$memcg" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_test_link 214 rss_bench

# A free TCP port on 127.0.0.1 for the agent's HTTP server.
port=
for i in $(seq 1 50); do
  candidate=$(( 20000 + (RANDOM % 20000) ))
  if ! ss -Htln "sport = :$candidate" | grep -q .; then
    port=$candidate
    break
  fi
done
[[ -n $port ]] || { echo "rss_bench: no free port" >&2; exit 1; }
api=http://127.0.0.1:$port

kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$agent_pid/status"; }
mb() { awk -v v="$1" 'BEGIN {printf "%.1f", v / 1024}'; }
cpu_ticks() { sed 's/^.*) //' "/proc/$agent_pid/stat" | awk '{print $12 + $13}'; }
stat_field() { curl -sf "$api/api/stats" | sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
alive() {
  kill -0 "$agent_pid" 2>/dev/null || { echo "rss_bench: the agent died" >&2; exit 1; }
}
# Every second, like a dashboard, reads /api/live and /api/stats, then samples VmRSS (kB)
# into $1; until killed.
sample_rss() {
  while kill -0 "$agent_pid" 2>/dev/null; do
    curl -sf "$api/api/live" >/dev/null || true
    curl -sf "$api/api/stats" >/dev/null || true
    awk '$1 == "VmRSS:" {print $2}' "/proc/$agent_pid/status" >>"$1" 2>/dev/null || true
    sleep 1
  done
}
# With SMAPS_DIR set, keeps a copy of the agent's /proc/PID/smaps as $SMAPS_DIR/$1.
save_smaps() {
  if [[ -n ${SMAPS_DIR:-} ]]; then
    mkdir -p "$SMAPS_DIR"
    cp "/proc/$agent_pid/smaps" "$SMAPS_DIR/$1"
  fi
}
max_of() { sort -n "$1" | tail -n 1; }
# Runs udp_flood with $1 flows for $2 seconds while sampling RSS into $3; sets `sent`.
flood() {
  : >"$3"
  sample_rss "$3" &
  sampler_pid=$!
  "$flood_bin" "$host_ip" "$peer_ip:$FLOOD_PORT" "$RATE" "$2" "$1" "$PAYLOAD" >"$tmp/flood.out" &
  flood_pid=$!
  wait "$flood_pid"
  flood_pid=
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  sampler_pid=
  sent=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' "$tmp/flood.out")
  sent_seconds=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$tmp/flood.out")
}

if [[ -n $MEMORY_LIMIT ]]; then
  [[ -d /sys/fs/cgroup/memory ]] || { echo "rss_bench: no cgroup v1 memory controller" >&2; exit 2; }
  memcg=/sys/fs/cgroup/memory/ayaflow-bench-$$
  mkdir "$memcg"
  echo "$MEMORY_LIMIT" >"$memcg/memory.limit_in_bytes"
fi

quiet_flag=(--quiet)
[[ $AGENT_QUIET == 0 ]] && quiet_flag=()
"$agent_bin" --interface "$host_if" --listen-address 127.0.0.1 --port "$port" \
  --db-path "$tmp/traffic.db" --connection-timeout "$CONNECTION_TIMEOUT" "${quiet_flag[@]}" \
  $AGENT_ARGS \
  >"$tmp/agent.log" 2>&1 &
agent_pid=$!
[[ -z $memcg ]] || echo "$agent_pid" >"$memcg/cgroup.procs"
for i in $(seq 1 100); do
  alive
  curl -sf "$api/api/health" >/dev/null && break
  sleep 0.1
done
curl -sf "$api/api/health" >/dev/null || { echo "rss_bench: /api/health never answered" >&2; exit 1; }

sleep "$IDLE_SECONDS"
alive
idle_rss=$(kb VmRSS)
idle_hwm=$(kb VmHWM)
idle_anon=$(kb RssAnon)
idle_file=$(kb RssFile)
threads=$(kb Threads)
save_smaps idle.smaps

# Phase 1: steady flood.
packets0=$(stat_field total_packets)
ticks0=$(cpu_ticks)
flood "$FLOWS" "$SECONDS_FLOOD" "$tmp/rss1"
alive
ticks1=$(cpu_ticks)
sleep 1 # let the agent drain the ring buffer before reading the map size
packets1=$(stat_field total_packets)
conns1=$(stat_field active_connections)
sent1=$sent
seconds1=$sent_seconds
rss1_max=$(max_of "$tmp/rss1")
rss1_end=$(kb VmRSS)
hwm1=$(kb VmHWM)
anon1=$(kb RssAnon)
counted1=$((packets1 - packets0))
clk_tck=$(getconf CLK_TCK)
cpu1=$(awk -v t=$((ticks1 - ticks0)) -v hz="$clk_tck" -v n="$sent1" \
  'BEGIN {printf "%.2f", n ? t / hz / (n / 1e6) : 0}')
cpu1_total=$(awk -v t=$((ticks1 - ticks0)) -v hz="$clk_tck" 'BEGIN {printf "%.2f", t / hz}')
status=ok
if ((counted1 < sent1)); then
  status="FAILED: the kernel counted $counted1 packets, fewer than the $sent1 sent"
fi
save_smaps flood.smaps

# Phase 2: churn through many new flows, then wait until they expire.
if ((CHURN_FLOWS > 0)); then
  ticks2=$(cpu_ticks)
  packets2=$(stat_field total_packets)
  flood "$CHURN_FLOWS" "$CHURN_SECONDS" "$tmp/rss2"
  alive
  ticks3=$(cpu_ticks)
  sleep 1
  counted2=$(( $(stat_field total_packets) - packets2 ))
  conns2=$(stat_field active_connections)
  evicted2=$(curl -sf "$api/metrics" | awk '$1 == "ayaflow_connections_evicted_total" {print $2}')
  sent2=$sent
  rss2_max=$(max_of "$tmp/rss2")
  hwm2=$(kb VmHWM)
  cpu2=$(awk -v t=$((ticks3 - ticks2)) -v hz="$clk_tck" -v n="$sent2" \
    'BEGIN {printf "%.2f", n ? t / hz / (n / 1e6) : 0}')
  if ((counted2 < sent2)); then
    status="FAILED: the kernel counted $counted2 packets, fewer than the $sent2 sent"
  fi
  # Expiry runs every 10 s and removes connections idle for more than the timeout.
  wait_s=$((CONNECTION_TIMEOUT + 12))
  sleep "$wait_s"
  alive
  conns3=$(stat_field active_connections)
  rss3=$(kb VmRSS)
  save_smaps expired.smaps
fi

memcg_peak=
[[ -z $memcg ]] || memcg_peak=$(cat "$memcg/memory.max_usage_in_bytes")
kill -TERM "$agent_pid"
agent_rc=0
wait "$agent_pid" || agent_rc=$?
agent_pid=
[[ $agent_rc -eq 0 ]] || status="FAILED: the agent exited with status $agent_rc after SIGTERM"

rate_text="$RATE pkt/s"
((RATE > 0)) || rate_text="as fast as udp_flood can"
cat <<EOF
| measurement | value |
|---|---|
| agent threads | $threads |
| idle ${IDLE_SECONDS} s: VmRSS / VmHWM | $(mb "$idle_rss") MB / $(mb "$idle_hwm") MB |
| idle: RssAnon / RssFile | $(mb "$idle_anon") MB / $(mb "$idle_file") MB |
| flood: rate, flows, payload | $rate_text, $FLOWS flows, $PAYLOAD B; /api/live polled every second |
| flood: packets sent / counted by the kernel | $sent1 in ${seconds1} s / $counted1 |
| flood: active connections at the end | $conns1 |
| flood: VmRSS max during / at the end | $(mb "$rss1_max") MB / $(mb "$rss1_end") MB |
| flood: VmHWM / RssAnon at the end | $(mb "$hwm1") MB / $(mb "$anon1") MB |
| flood: agent CPU (user+sys) | $cpu1_total s, $cpu1 s per million packets |
EOF
if ((CHURN_FLOWS > 0)); then
  cat <<EOF
| churn: flows, seconds | $CHURN_FLOWS new flows, $CHURN_SECONDS s |
| churn: packets sent / counted by the kernel | $sent2 / $counted2 |
| churn: active connections at the end / evicted by the cap | $conns2 / ${evicted2:-n/a} |
| churn: VmRSS max during / VmHWM | $(mb "$rss2_max") MB / $(mb "$hwm2") MB |
| churn: agent CPU (user+sys) | $cpu2 s per million packets |
| ${wait_s} s later (timeout ${CONNECTION_TIMEOUT} s): connections / VmRSS | $conns3 / $(mb "$rss3") MB |
EOF
fi
if [[ $AGENT_QUIET == 0 ]]; then
  last_line=$(grep 'stopped:' "$tmp/agent.log" | tail -n 1 | sed 's/.*stopped: //; s/|/\\|/g')
  echo "| agent's final log line | ${last_line:-none} |"
fi
if [[ -n $memcg ]]; then
  echo "| memory cgroup: limit / peak usage (RSS + page cache + kernel) | $MEMORY_LIMIT / $(mb $((memcg_peak / 1024))) MB |"
fi
cat <<EOF
| SIGTERM: exit status | $agent_rc |
| result | $status |
EOF
[[ $status == ok ]]
