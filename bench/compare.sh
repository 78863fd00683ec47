#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Side by side with tcpdump: the agent's coverage, CPU per packet, datapath overhead and
# memory, measured on the same traffic as tcpdump and as nothing at all (issue 7).
#
#   bench/compare.sh BUILD_DIR [--write-docs]      (as root)
#
# BUILD_DIR must hold a Release build of ayaflow and bench/sendmmsg_flood. The script
# creates its own network namespace and veth pair (names end in this shell's PID,
# addresses in 10.215.0.0/16) and floods small UDP datagrams from the host end to the
# peer. Repetition r (1..N) runs, in this order, each scenario once for T seconds:
#
#   ceiling   the flood with nothing attached
#   tcpdump   the flood with `tcpdump -i HOST_END -w /dev/null`
#   raw       the flood with the agent attached, one history row per packet
#   agg       the flood with the agent attached and --aggregation-window $WINDOW
#   bpf       agg again with kernel.bpf_stats_enabled=1: BPF ns per packet, program sizes
#   many      (MANY_FLOWS > 0) ceiling and agg with MANY_FLOWS flows, with the default flow
#             table and with --flow-table-size large enough for every flow
#   iperf     (IPERF=1 and iperf3 installed) TCP throughput without and with the agent
#   health    (HEALTH=1) agg again with every TCP health hook off (--tcp-state, --tcp-rtt,
#             --tcp-retransmits, --drop-reasons all false) and with only --drop-reasons off (the
#             flood's datagrams reach no socket, so the kernel drops each one: the drop probe runs
#             per packet, its worst case); with IPERF=1 also iperf with the hooks off
#   pods      (PODS=1) node mode: a node namespace routing between two pod namespaces on
#             veths; the flood goes from pod A to pod B, passing both pods' veths. Nothing
#             attached, tcpdump on pod A's veth, and the agent in the node namespace with
#             `--interface auto` and --aggregation-window $WINDOW (kernel.bpf_stats_enabled=1:
#             the ns per run of each hook), which must count each packet once
#
# Each agent run starts a fresh agent (fresh database) and reads /api/stats, /api/live and
# /metrics 2 s after the flood; during the flood a sampler reads /api/live and /api/stats
# once a second, as a dashboard would, and the agent's VmRSS. CPU times are the
# kernel's per-thread run time (/proc/PID/task/*/schedstat, ns), split by thread for the agent. It prints markdown tables with
# medians and min-max and the issue-7 goals (met or not); with --write-docs it also
# replaces the results block of "Side by side with tcpdump" in docs/benchmarks.md.
#
# Environment: N (3), T (10), FLOWS (32, at most 50 so /api/live lists them all),
# PAYLOAD (18: 46-byte IP packets, minimum-size Ethernet frames), WINDOW (10),
# MANY_FLOWS (100000; 0 skips), IPERF (1; 0 skips), HEALTH (1; 0 skips), PODS (1; 0 skips),
# AGENT_ARGS (extra agent flags),
# DOCS (docs/benchmarks.md next to this script), RAW_OUT (a file to keep the raw results in).
#
# On exit, also on failure or Ctrl-C, it removes the namespace and veth, restores
# kernel.bpf_stats_enabled, stops the processes it started (by PID) and deletes its
# temporary directory. It touches no other interface.
set -euo pipefail

usage() {
  echo "usage: bench/compare.sh BUILD_DIR [--write-docs]   (as root)" >&2
  exit 2
}
[[ $# -ge 1 ]] || usage
build_dir=$1
shift
write_docs=0
for a in "$@"; do
  case $a in
    --write-docs) write_docs=1 ;;
    *) usage ;;
  esac
done
N=${N:-3}
T=${T:-10}
FLOWS=${FLOWS:-32}
PAYLOAD=${PAYLOAD:-18}
WINDOW=${WINDOW:-10}
MANY_FLOWS=${MANY_FLOWS:-100000}
IPERF=${IPERF:-1}
PODS=${PODS:-1}
HEALTH=${HEALTH:-1}
HEALTH_OFF=(--tcp-state=false --tcp-rtt=false --tcp-retransmits=false --drop-reasons=false)
# The many-flows scenario also runs with a flow table that holds every flow (a power of two).
many_table=1024
while ((many_table < MANY_FLOWS && many_table < 1048576)); do many_table=$((many_table * 2)); done
AGENT_ARGS=${AGENT_ARGS:-} # extra agent flags for every agent run, e.g. --ring-buffer-size 4M
script_dir=$(cd "$(dirname "$0")" && pwd)
DOCS=${DOCS:-$script_dir/../docs/benchmarks.md}
FLOOD_PORT=9

agent_bin=$build_dir/ayaflow
gen_bin=$build_dir/bench/sendmmsg_flood
for f in "$agent_bin" "$gen_bin"; do
  if [[ ! -x $f ]]; then
    echo "compare: $f not found; build it first:" >&2
    echo "  cmake -S . -B $build_dir -G Ninja -DCMAKE_BUILD_TYPE=Release -DAYAFLOW_BUILD_TESTS=OFF" >&2
    echo "  cmake --build $build_dir --target ayaflow sendmmsg_flood" >&2
    exit 2
  fi
done
[[ $(id -u) -eq 0 ]] || { echo "compare: run as root (netns, BPF, bpf_stats)" >&2; exit 2; }
for tool in ip curl jq tcpdump bpftool sysctl awk; do
  command -v "$tool" >/dev/null || { echo "compare: needs $tool" >&2; exit 2; }
done
((FLOWS >= 1 && FLOWS <= 50)) || { echo "compare: FLOWS must be 1-50" >&2; exit 2; }
if [[ $IPERF == 1 ]] && ! command -v iperf3 >/dev/null; then
  echo "compare: iperf3 not installed; skipping the TCP throughput scenario" >&2
  IPERF=0
fi

ns=ayfc$$
node_ns=ayfn$$ # PODS: the node and its two pods
pod_a=ayfa$$
pod_b=ayfb$$
host_if=ayfch$$ # interface names: at most 15 characters
peer_if=ayfcp$$
tmp=$(mktemp -d /tmp/ayaflow-compare.XXXXXX)
res=$tmp/results.tsv
: >"$res"
started_pids=()
stats_prev=$(sysctl -n kernel.bpf_stats_enabled)

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  sysctl -qw kernel.bpf_stats_enabled="$stats_prev" || true
  ip netns del "$node_ns" 2>/dev/null || true
  ip netns del "$pod_a" 2>/dev/null || true
  ip netns del "$pod_b" 2>/dev/null || true
  teardown_test_run "$rc" "${started_pids[@]}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_test_link 215 compare

free_port() {
  local i c
  for i in $(seq 1 50); do
    c=$((20000 + (RANDOM % 20000)))
    if ! ss -Htln "sport = :$c" | grep -q .; then
      echo "$c"
      return
    fi
  done
  echo "compare: no free port" >&2
  exit 1
}
port=$(free_port)
api=http://127.0.0.1:$port

# record SCENARIO REP METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$res"; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
# CPU time in ns of every thread of PID (/proc/PID/task/*/schedstat: exact, not 10 ms ticks).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
# Agent CPU ns by thread kind: "ingest history http" (history: the pipeline and SQLite
# writer threads; http: every other thread).
thread_ns() {
  local pid=$1 t comm v ing=0 sto=0 oth=0
  for t in /proc/"$pid"/task/*; do
    [[ -r $t/schedstat ]] || continue
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    v=$(awk '{print $1}' "$t/schedstat" 2>/dev/null) || continue
    if [[ ${t##*/} == "$pid" ]]; then
      ing=$((ing + v))
    elif [[ $comm == ayaflow-store || $comm == ayaflow-pipe ]]; then
      sto=$((sto + v))
    else
      oth=$((oth + v))
    fi
  done
  echo "$ing $sto $oth"
}
metric_sum() { awk -v m="$1" 'index($0, m"{") == 1 || index($0, m" ") == 1 {s += $NF} END {printf "%.0f", s}' "$2"; }
sec_per_mpkt() { awk -v t="$1" -v n="$2" 'BEGIN {printf "%.4f", n ? t / 1e9 / (n / 1e6) : 0}'; }
ns_to_s() { awk -v t="$1" 'BEGIN {printf "%.3f", t / 1e9}'; }

# gen FLOWS OUT [NETNS SRC DST]: the flood, in the foreground (from the host end to the
# peer, or from SRC to DST inside NETNS); sets sent and rate.
gen() {
  if [[ -n ${3:-} ]]; then
    ip netns exec "$3" "$gen_bin" "$4" "$5:$FLOOD_PORT" "$T" "$1" "$PAYLOAD" >"$2"
  else
    "$gen_bin" "$host_ip" "$peer_ip:$FLOOD_PORT" "$T" "$1" "$PAYLOAD" >"$2"
  fi
  sent=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' "$2")
  rate=$(sed -n 's/.*rate=\([0-9]*\).*/\1/p' "$2")
}

run_ceiling() { # SCENARIO REP FLOWS
  local l0
  l0=$(loadavg)
  gen "$3" "$tmp/gen.out"
  record "$1" "$2" rate "$rate"
  record "$1" "$2" sent "$sent"
  record "$1" "$2" load "$l0"
}

# start_tcpdump IFACE [NETNS]: tcpdump -w /dev/null on IFACE, listening; sets tcpdump_pid.
start_tcpdump() {
  if [[ -n ${2:-} ]]; then
    ip netns exec "$2" tcpdump -i "$1" -n -w /dev/null 2>"$tmp/tcpdump.err" &
  else
    tcpdump -i "$1" -n -w /dev/null 2>"$tmp/tcpdump.err" &
  fi
  tcpdump_pid=$!
  started_pids+=("$tcpdump_pid")
  for _ in $(seq 1 100); do
    grep -q 'listening on' "$tmp/tcpdump.err" && break
    sleep 0.1
  done
  sleep 0.5
}

run_tcpdump() { # REP
  local pid t0 t1 captured dropped
  start_tcpdump "$host_if"
  pid=$tcpdump_pid
  t0=$(cpu_ns "$pid")
  record tcpdump "$1" load "$(loadavg)"
  gen "$FLOWS" "$tmp/gen.out"
  sleep 1
  t1=$(cpu_ns "$pid")
  record tcpdump "$1" rss_kb "$(kb "$pid" VmHWM)"
  kill -INT "$pid"
  wait "$pid" || true
  captured=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$tmp/tcpdump.err")
  dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$tmp/tcpdump.err")
  record tcpdump "$1" rate "$rate"
  record tcpdump "$1" sent "$sent"
  record tcpdump "$1" counted "$captured"
  record tcpdump "$1" lost "$dropped"
  record tcpdump "$1" cpu_s "$(ns_to_s $((t1 - t0)))"
  record tcpdump "$1" cpu_mpkt "$(sec_per_mpkt $((t1 - t0)) "$sent")"
}

# Once a second, like a dashboard: /api/live, /api/stats, then the agent's VmRSS into $2.
sampler() {
  while kill -0 "$1" 2>/dev/null; do
    curl -sf "$api/api/live" >/dev/null || true
    curl -sf "$api/api/stats" >/dev/null || true
    awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status" >>"$2" 2>/dev/null || true
    sleep 1
  done
}

start_agent() { # WINDOW [EXTRA AGENT FLAGS...]
  local window=$1
  shift
  rm -f "$tmp"/traffic.db*
  "$agent_bin" --interface "$host_if" --listen-address 127.0.0.1 --port "$port" \
    --db-path "$tmp/traffic.db" --connection-timeout 600 --aggregation-window "$window" --quiet \
    "$@" $AGENT_ARGS >"$tmp/agent.log" 2>&1 &
  agent_pid=$!
  started_pids+=("$agent_pid")
  for _ in $(seq 1 100); do
    kill -0 "$agent_pid" 2>/dev/null || { echo "compare: the agent died" >&2; exit 1; }
    curl -sf "$api/api/health" >/dev/null && break
    sleep 0.1
  done
  curl -sf "$api/api/health" >/dev/null || { echo "compare: /api/health never answered" >&2; exit 1; }
  sleep 1
}

stop_agent() { # SCENARIO REP
  local rc=0
  kill -TERM "$agent_pid"
  wait "$agent_pid" || rc=$?
  record "$1" "$2" exit_status "$rc"
  ((rc == 0)) || { echo "compare: the agent exited with status $rc" >&2; exit 1; }
}

# run_agent SCENARIO REP WINDOW FLOWS [EXTRA AGENT FLAGS...]: one fresh agent, one flood.
run_agent() {
  local s=$1 r=$2 p0 p1 tt0 tt1 spid ing sto oth live
  start_agent "$3" "${@:5}"
  p0=$(curl -sf "$api/api/stats" | jq .total_packets)
  read -r -a tt0 <<<"$(thread_ns "$agent_pid")"
  : >"$tmp/rss"
  sampler "$agent_pid" "$tmp/rss" &
  spid=$!
  started_pids+=("$spid")
  record "$s" "$r" load "$(loadavg)"
  gen "$4" "$tmp/gen.out"
  kill "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  sleep 2 # the ingest thread drains the ring buffer; /api/live's cache expires
  read -r -a tt1 <<<"$(thread_ns "$agent_pid")"
  kill -0 "$agent_pid" 2>/dev/null || { echo "compare: the agent died" >&2; exit 1; }
  curl -sf "$api/api/stats" >"$tmp/stats.json"
  curl -sf "$api/api/live" >"$tmp/live.json"
  curl -sf "$api/metrics" >"$tmp/metrics.txt"
  p1=$(jq .total_packets "$tmp/stats.json")
  live=$(jq '[.connections[].stats.packets_count] | add // 0' "$tmp/live.json")
  ing=$((tt1[0] - tt0[0]))
  sto=$((tt1[1] - tt0[1]))
  oth=$((tt1[2] - tt0[2]))
  record "$s" "$r" rate "$rate"
  record "$s" "$r" sent "$sent"
  record "$s" "$r" counted $((p1 - p0))
  record "$s" "$r" per_conn "$live"
  record "$s" "$r" connections "$(jq .active_connections "$tmp/stats.json")"
  record "$s" "$r" lost "$(metric_sum ayaflow_events_lost_total "$tmp/metrics.txt")"
  record "$s" "$r" events_read "$(metric_sum ayaflow_events_read_total "$tmp/metrics.txt")"
  record "$s" "$r" overflow "$(metric_sum ayaflow_flow_table_overflow_total "$tmp/metrics.txt")"
  record "$s" "$r" rows_stored "$(metric_sum ayaflow_storage_rows_stored_total "$tmp/metrics.txt")"
  # The history's size on disk: the database file and its write-ahead log.
  record "$s" "$r" disk_bytes "$(cat "$tmp"/traffic.db "$tmp"/traffic.db-wal 2>/dev/null | wc -c)"
  record "$s" "$r" rows_dropped "$(($(metric_sum ayaflow_storage_rows_dropped_total "$tmp/metrics.txt") + $(metric_sum ayaflow_pipeline_packets_dropped_total "$tmp/metrics.txt")))"
  record "$s" "$r" cpu_s "$(ns_to_s $((ing + sto + oth)))"
  record "$s" "$r" cpu_mpkt "$(sec_per_mpkt $((ing + sto + oth)) "$sent")"
  record "$s" "$r" cpu_ingest_mpkt "$(sec_per_mpkt "$ing" "$sent")"
  record "$s" "$r" cpu_store_mpkt "$(sec_per_mpkt "$sto" "$sent")"
  record "$s" "$r" cpu_http_mpkt "$(sec_per_mpkt "$oth" "$sent")"
  record "$s" "$r" rss_kb "$(sort -n "$tmp/rss" | tail -n 1)"
  record "$s" "$r" hwm_kb "$(kb "$agent_pid" VmHWM)"
  record "$s" "$r" threads "$(kb "$agent_pid" Threads)"
  if [[ $s == bpf ]]; then
    # This agent's programs: the BPF program ids in its file descriptors' fdinfo (other
    # agents may be running on the machine), named ayaflow_*.
    : >"$tmp/progs.sel"
    local id
    for id in $(cat /proc/"$agent_pid"/fdinfo/* 2>/dev/null | awk '$1 == "prog_id:" {print $2}' | sort -un); do
      bpftool prog show id "$id" -j | jq -c 'select(.name | startswith("ayaflow_"))
        | {name, xl: .bytes_xlated, jit: .bytes_jited, ns: (.run_time_ns // 0), cnt: (.run_cnt // 0)}' \
        >>"$tmp/progs.sel"
    done
    while read -r line; do
      local name xl jit pns pcnt
      name=$(jq -r .name <<<"$line")
      xl=$(jq .xl <<<"$line")
      jit=$(jq .jit <<<"$line")
      pns=$(jq .ns <<<"$line")
      pcnt=$(jq .cnt <<<"$line")
      record bpf "$r" "xlated_$name" "$xl"
      record bpf "$r" "jited_$name" "$jit"
      record bpf "$r" "runs_$name" "$pcnt"
      record bpf "$r" "ns_$name" "$(awk -v a="$pns" -v b="$pcnt" 'BEGIN {printf "%.1f", b ? a / b : 0}')"
    done <"$tmp/progs.sel"
  fi
  stop_agent "$s" "$r"
}

# TCP throughput for T seconds with iperf3, server in the namespace; AGENT=1 attaches.
run_iperf() { # SCENARIO REP WITH_AGENT [EXTRA AGENT FLAGS...]
  local s=$1 r=$2 spid t0=0 t1=0 p0=0 p1=0 bps iport
  iport=$(free_port)
  ip netns exec "$ns" iperf3 -s -1 -B "$peer_ip" -p "$iport" >/dev/null 2>&1 &
  spid=$!
  started_pids+=("$spid")
  for _ in $(seq 1 50); do
    ip netns exec "$ns" ss -Htln "sport = :$iport" | grep -q . && break
    sleep 0.1
  done
  if [[ $3 == 1 ]]; then
    start_agent "$WINDOW" "${@:4}"
    p0=$(curl -sf "$api/api/stats" | jq .total_packets)
    t0=$(cpu_ns "$agent_pid")
  fi
  record "$s" "$r" load "$(loadavg)"
  iperf3 -c "$peer_ip" -B "$host_ip" -p "$iport" -t "$T" -J >"$tmp/iperf.json"
  wait "$spid" 2>/dev/null || true
  bps=$(jq '.end.sum_received.bits_per_second' "$tmp/iperf.json")
  record "$s" "$r" gbps "$(awk -v b="$bps" 'BEGIN {printf "%.2f", b / 1e9}')"
  if [[ $3 == 1 ]]; then
    sleep 2
    t1=$(cpu_ns "$agent_pid")
    p1=$(curl -sf "$api/api/stats" | jq .total_packets)
    curl -sf "$api/metrics" >"$tmp/metrics.txt"
    record "$s" "$r" counted $((p1 - p0))
    record "$s" "$r" lost "$(metric_sum ayaflow_events_lost_total "$tmp/metrics.txt")"
    record "$s" "$r" cpu_s "$(ns_to_s $((t1 - t0)))"
    record "$s" "$r" cpu_mpkt "$(sec_per_mpkt $((t1 - t0)) $((p1 - p0)))"
    stop_agent "$s" "$r"
  fi
}

# --- node mode: two pods routed by a node namespace -----------------------------------
# Pod A 10.216.1.2 on the node's vetha (10.216.1.1), pod B 10.216.2.2 on vethb (10.216.2.1),
# as a routed CNI (Calico) lays them out; permanent neighbour entries, no ARP.
setup_pods() {
  local ns_ dev mac_a mac_b mac_na mac_nb
  for ns_ in "$node_ns" "$pod_a" "$pod_b"; do
    ip netns add "$ns_"
    ip -n "$ns_" link set lo up
  done
  ip link add vetha netns "$node_ns" type veth peer name eth0 netns "$pod_a"
  ip link add vethb netns "$node_ns" type veth peer name eth0 netns "$pod_b"
  ip -n "$node_ns" addr add 10.216.1.1/24 dev vetha
  ip -n "$node_ns" addr add 10.216.2.1/24 dev vethb
  ip -n "$pod_a" addr add 10.216.1.2/24 dev eth0
  ip -n "$pod_b" addr add 10.216.2.2/24 dev eth0
  for dev in vetha vethb; do ip -n "$node_ns" link set "$dev" up; done
  ip -n "$pod_a" link set eth0 up
  ip -n "$pod_b" link set eth0 up
  ip -n "$pod_a" route add default via 10.216.1.1
  ip -n "$pod_b" route add default via 10.216.2.1
  ip netns exec "$node_ns" sysctl -qw net.ipv4.ip_forward=1
  mac() { ip -n "$1" -o link show "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
  mac_a=$(mac "$pod_a" eth0)
  mac_b=$(mac "$pod_b" eth0)
  mac_na=$(mac "$node_ns" vetha)
  mac_nb=$(mac "$node_ns" vethb)
  ip -n "$pod_a" neigh replace 10.216.1.1 lladdr "$mac_na" dev eth0 nud permanent
  ip -n "$pod_b" neigh replace 10.216.2.1 lladdr "$mac_nb" dev eth0 nud permanent
  ip -n "$node_ns" neigh replace 10.216.1.2 lladdr "$mac_a" dev vetha nud permanent
  ip -n "$node_ns" neigh replace 10.216.2.2 lladdr "$mac_b" dev vethb nud permanent
}

# pod_gen FLOWS OUT: the flood from pod A to pod B; sets sent and rate.
pod_gen() { gen "$1" "$2" "$pod_a" 10.216.1.2 10.216.2.2; }

run_pods_ceiling() { # REP
  record pods_ceiling "$1" load "$(loadavg)"
  pod_gen "$FLOWS" "$tmp/gen.out"
  record pods_ceiling "$1" rate "$rate"
  record pods_ceiling "$1" sent "$sent"
}

run_pods_tcpdump() { # REP: tcpdump on pod A's veth sees each packet once
  local pid t0 t1
  start_tcpdump vetha "$node_ns"
  pid=$tcpdump_pid
  t0=$(cpu_ns "$pid")
  pod_gen "$FLOWS" "$tmp/gen.out"
  sleep 1
  t1=$(cpu_ns "$pid")
  kill -INT "$pid"
  wait "$pid" || true
  record pods_tcpdump "$1" rate "$rate"
  record pods_tcpdump "$1" sent "$sent"
  record pods_tcpdump "$1" counted "$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$tmp/tcpdump.err")"
  record pods_tcpdump "$1" cpu_mpkt "$(sec_per_mpkt $((t1 - t0)) "$sent")"
}

run_pods_agent() { # REP: the agent in the node namespace, as the DaemonSet runs it
  local r=$1 papi="ip netns exec $node_ns curl -sf http://127.0.0.1:$port" pid p0 p1 t0 t1 id
  rm -f "$tmp"/traffic.db*
  ip netns exec "$node_ns" "$agent_bin" --interface auto --listen-address 127.0.0.1 \
    --port "$port" --db-path "$tmp/traffic.db" --connection-timeout 600 \
    --aggregation-window "$WINDOW" --quiet $AGENT_ARGS >"$tmp/agent.log" 2>&1 &
  pid=$!
  started_pids+=("$pid")
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { echo "compare: the agent died" >&2; exit 1; }
    $papi/api/health >/dev/null && break
    sleep 0.1
  done
  sleep 1
  p0=$($papi/api/stats | jq .total_packets)
  t0=$(cpu_ns "$pid")
  pod_gen "$FLOWS" "$tmp/gen.out"
  sleep 2
  t1=$(cpu_ns "$pid")
  p1=$($papi/api/stats | jq .total_packets)
  $papi/metrics >"$tmp/metrics.txt"
  record pods_agent "$r" rate "$rate"
  record pods_agent "$r" sent "$sent"
  record pods_agent "$r" counted $((p1 - p0))
  record pods_agent "$r" elsewhere "$(metric_sum ayaflow_interface_elsewhere_packets_total "$tmp/metrics.txt")"
  record pods_agent "$r" lost "$(metric_sum ayaflow_events_lost_total "$tmp/metrics.txt")"
  record pods_agent "$r" cpu_mpkt "$(sec_per_mpkt $((t1 - t0)) "$sent")"
  record pods_agent "$r" rss_kb "$(kb "$pid" VmHWM)"
  for id in $(cat /proc/"$pid"/fdinfo/* 2>/dev/null | awk '$1 == "prog_id:" {print $2}' | sort -un); do
    bpftool prog show id "$id" -j | jq -r 'select(.name == "ayaflow_in" or .name == "ayaflow_eg")
      | "\(.name) \(.run_time_ns // 0) \(.run_cnt // 0)"'
  done | while read -r name pns pcnt; do
    record pods_agent "$r" "runs_$name" "$pcnt"
    record pods_agent "$r" "ns_$name" "$(awk -v a="$pns" -v b="$pcnt" 'BEGIN {printf "%.1f", b ? a / b : 0}')"
  done
  kill -TERM "$pid"
  wait "$pid" || { echo "compare: the agent in the node namespace failed" >&2; exit 1; }
}

if [[ $PODS == 1 ]]; then setup_pods; fi

started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "compare: N=$N T=${T}s FLOWS=$FLOWS PAYLOAD=$PAYLOAD WINDOW=$WINDOW MANY_FLOWS=$MANY_FLOWS IPERF=$IPERF; load average $load_start" >&2
for r in $(seq 1 "$N"); do
  echo "compare: repetition $r/$N" >&2
  run_ceiling ceiling "$r" "$FLOWS"
  run_tcpdump "$r"
  run_agent raw "$r" 0 "$FLOWS"
  run_agent agg "$r" "$WINDOW" "$FLOWS"
  sysctl -qw kernel.bpf_stats_enabled=1
  run_agent bpf "$r" "$WINDOW" "$FLOWS"
  sysctl -qw kernel.bpf_stats_enabled="$stats_prev"
  if ((MANY_FLOWS > 0)); then
    run_ceiling many_ceiling "$r" "$MANY_FLOWS"
    run_agent many "$r" "$WINDOW" "$MANY_FLOWS"
    run_agent many_sized "$r" "$WINDOW" "$MANY_FLOWS" --flow-table-size "$many_table"
  fi
  if [[ $IPERF == 1 ]]; then
    run_iperf iperf_none "$r" 0
    run_iperf iperf_agent "$r" 1
    if [[ $HEALTH == 1 ]]; then run_iperf iperf_agent_off "$r" 1 "${HEALTH_OFF[@]}"; fi
  fi
  if [[ $HEALTH == 1 ]]; then
    run_agent agg_off "$r" "$WINDOW" "$FLOWS" "${HEALTH_OFF[@]}"
    run_agent agg_nodrops "$r" "$WINDOW" "$FLOWS" --drop-reasons=false
  fi
  if [[ $PODS == 1 ]]; then
    run_pods_ceiling "$r"
    run_pods_tcpdump "$r"
    sysctl -qw kernel.bpf_stats_enabled=1
    run_pods_agent "$r"
    sysctl -qw kernel.bpf_stats_enabled="$stats_prev"
  fi
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summaries ---------------------------------------------------------------------------
# values SCENARIO METRIC: one per line, in repetition order.
values() { awk -F'\t' -v s="$1" -v m="$2" '$1 == s && $3 == m {print $4}' "$res"; }
# summ FMT: "median (min–max)" of stdin, printf format FMT; "—" when empty.
summ() {
  sort -g | awk -v f="$1" '{v[NR] = $1} END {
      if (NR == 0) {print "—"; exit}
      med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      if (v[1] == v[NR]) printf f, med
      else printf f " (" f "–" f ")", med, v[1], v[NR]
    }'
}
cell() { values "$1" "$2" | summ "$3"; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR) print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# ratio A_SCEN A_METRIC B_SCEN B_METRIC: per-repetition A/B, one per line.
ratio() {
  paste <(values "$1" "$2") <(values "$3" "$4") |
    awk -F'\t' '$2 != "" && $2 + 0 != 0 {printf "%.4f\n", $1 / $2}'
}
mb_cell() { values "$1" "$2" | awk '{printf "%.4f\n", $1 / 1024}' | summ "%.1f MB"; }
all_equal() { # SCEN: 1 when counted == sent in every repetition
  paste <(values "$1" counted) <(values "$1" sent) | awk -F'\t' '$1 != $2 {bad = 1} END {print bad ? 0 : 1}'
}
allsum() { values "$1" "$2" | awk '{s += $1} END {printf "%.0f", s}'; }
maxof() { values "$1" "$2" | sort -g | tail -n 1; }

out=$tmp/report.md
{
  echo "Command: \`sudo N=$N T=$T${AGENT_ARGS:+ AGENT_ARGS='$AGENT_ARGS'} bench/compare.sh BUILD_DIR\` ($([[ $N == 1 ]] && echo 1 repetition || echo "$N repetitions"), each scenario ${T} s; $FLOWS flows, ${PAYLOAD}-byte UDP payloads ($((PAYLOAD + 28))-byte IP packets); agent with \`--aggregation-window $WINDOW\` unless marked raw). Run $started_at, kernel $(uname -r), $(nproc) CPUs, load average $load_start at the start and $load_end at the end. Medians, min–max in parentheses."
  echo
  echo "| | nothing attached | tcpdump -w /dev/null | ayaflow raw | ayaflow --aggregation-window $WINDOW |"
  echo "|---|---|---|---|---|"
  echo "| generator rate, packets/s | $(cell ceiling rate %.0f) | $(cell tcpdump rate %.0f) | $(cell raw rate %.0f) | $(cell agg rate %.0f) |"
  echo "| rate ÷ rate with nothing attached | 1 | $(ratio tcpdump rate ceiling rate | summ %.3f) | $(ratio raw rate ceiling rate | summ %.3f) | $(ratio agg rate ceiling rate | summ %.3f) |"
  echo "| packets sent | $(cell ceiling sent %.0f) | $(cell tcpdump sent %.0f) | $(cell raw sent %.0f) | $(cell agg sent %.0f) |"
  echo "| captured (tcpdump) / counted by the kernel program (/api/stats) ÷ sent | — | $(ratio tcpdump counted tcpdump sent | summ %.4f) | $(ratio raw counted raw sent | summ %.6f) | $(ratio agg counted agg sent | summ %.6f) |"
  echo "| counted per connection (sum of /api/live) ÷ sent | — | — | $(ratio raw per_conn raw sent | summ %.6f) | $(ratio agg per_conn agg sent | summ %.6f) |"
  echo "| dropped by kernel (tcpdump) / events lost (ayaflow_events_lost_total) | — | $(cell tcpdump lost %.0f) | $(cell raw lost %.0f) | $(cell agg lost %.0f) |"
  echo "| history rows stored / dropped (ayaflow_storage_rows_*, ayaflow_pipeline_packets_dropped_total) | — | — | $(cell raw rows_stored %.0f) / $(cell raw rows_dropped %.0f) | $(cell agg rows_stored %.0f) / $(cell agg rows_dropped %.0f) |"
  echo "| history on disk (database + WAL), MB per million rows stored | — | — | $(paste <(values raw disk_bytes) <(values raw rows_stored) | awk -F'\t' '$2 > 0 {printf "%.2f\n", $1 / $2}' | summ "%.1f") | — |"
  echo "| CPU time during the flood, s | — | $(cell tcpdump cpu_s %.3f) | $(cell raw cpu_s %.3f) | $(cell agg cpu_s %.3f) |"
  echo "| **CPU s per million packets** | — | $(cell tcpdump cpu_mpkt %.3f) | $(cell raw cpu_mpkt %.3f) | $(cell agg cpu_mpkt %.3f) |"
  echo "| of which ingest thread | — | — | $(cell raw cpu_ingest_mpkt %.3f) | $(cell agg cpu_ingest_mpkt %.3f) |"
  echo "| of which history threads (pipeline, SQLite writer) | — | — | $(cell raw cpu_store_mpkt %.3f) | $(cell agg cpu_store_mpkt %.3f) |"
  echo "| of which HTTP and other threads | — | — | $(cell raw cpu_http_mpkt %.3f) | $(cell agg cpu_http_mpkt %.3f) |"
  echo "| RSS, max during the flood (tcpdump: VmHWM) | — | $(mb_cell tcpdump rss_kb) | $(mb_cell raw rss_kb) | $(mb_cell agg rss_kb) |"
  echo "| load average (1 min) at the start | $(cell ceiling load %.2f) | $(cell tcpdump load %.2f) | $(cell raw load %.2f) | $(cell agg load %.2f) |"
  echo
  echo "Ratios (per repetition, then median and min–max):"
  echo
  echo "| ratio | raw | --aggregation-window $WINDOW |"
  echo "|---|---|---|"
  echo "| agent CPU per Mpkt ÷ tcpdump's | $(ratio raw cpu_mpkt tcpdump cpu_mpkt | summ %.2f) | $(ratio agg cpu_mpkt tcpdump cpu_mpkt | summ %.2f) |"
  echo "| generator rate with the agent ÷ without | $(ratio raw rate ceiling rate | summ %.3f) | $(ratio agg rate ceiling rate | summ %.3f) |"
  echo "| counted ÷ sent | $(ratio raw counted raw sent | summ %.6f) | $(ratio agg counted agg sent | summ %.6f) |"
  echo
  echo "BPF programs (a separate agent run per repetition, \`--aggregation-window $WINDOW\`, with \`kernel.bpf_stats_enabled=1\`, restored afterwards; generator rate $(cell bpf rate %.0f) packets/s with the accounting on):"
  echo
  echo "| program | runs | ns per run (run_time_ns ÷ run_cnt) | translated bytes | JIT bytes |"
  echo "|---|---|---|---|---|"
  for name in $(awk -F'\t' '$1 == "bpf" && $3 ~ /^xlated_/ {sub(/^xlated_/, "", $3); print $3}' "$res" | sort -u); do
    echo "| $name | $(cell bpf "runs_$name" %.0f) | $(cell bpf "ns_$name" %.1f) | $(cell bpf "xlated_$name" %.0f) | $(cell bpf "jited_$name" %.0f) |"
  done
  echo "| original (Rust/Aya), per program | | | 784 | 576 |"
  if ((MANY_FLOWS > 0)); then
    echo
    echo "Many flows: $MANY_FLOWS distinct 5-tuples, same flood, agent with \`--aggregation-window $WINDOW\`:"
    echo
    echo "| | nothing attached | ayaflow (default \`--flow-table-size 16384\`) | ayaflow \`--flow-table-size $many_table\` |"
    echo "|---|---|---|---|"
    echo "| generator rate, packets/s | $(cell many_ceiling rate %.0f) | $(cell many rate %.0f) | $(cell many_sized rate %.0f) |"
    echo "| rate ÷ rate with nothing attached | 1 | $(ratio many rate many_ceiling rate | summ %.3f) | $(ratio many_sized rate many_ceiling rate | summ %.3f) |"
    echo "| counted by the kernel program ÷ sent | — | $(ratio many counted many sent | summ %.6f) | $(ratio many_sized counted many_sized sent | summ %.6f) |"
    echo "| live connections after the flood | — | $(cell many connections %.0f) | $(cell many_sized connections %.0f) |"
    echo "| packets sent as events because the flow table was full | — | $(cell many overflow %.0f) | $(cell many_sized overflow %.0f) |"
    echo "| events lost | — | $(cell many lost %.0f) | $(cell many_sized lost %.0f) |"
    echo "| history rows stored / dropped | — | $(cell many rows_stored %.0f) / $(cell many rows_dropped %.0f) | $(cell many_sized rows_stored %.0f) / $(cell many_sized rows_dropped %.0f) |"
    echo "| agent CPU s per million packets (ingest / history / HTTP) | — | $(cell many cpu_mpkt %.3f) ($(cell many cpu_ingest_mpkt %.3f) / $(cell many cpu_store_mpkt %.3f) / $(cell many cpu_http_mpkt %.3f)) | $(cell many_sized cpu_mpkt %.3f) ($(cell many_sized cpu_ingest_mpkt %.3f) / $(cell many_sized cpu_store_mpkt %.3f) / $(cell many_sized cpu_http_mpkt %.3f)) |"
    echo "| agent RSS, max during the flood | — | $(mb_cell many rss_kb) | $(mb_cell many_sized rss_kb) |"
  fi
  if [[ $IPERF == 1 ]]; then
    echo
    echo "TCP bulk throughput, one iperf3 stream for ${T} s across the veth:"
    echo
    echo "| | without the agent | with the agent (--aggregation-window $WINDOW) |"
    echo "|---|---|---|"
    echo "| throughput, Gbit/s | $(cell iperf_none gbps %.2f) | $(cell iperf_agent gbps %.2f) |"
    echo "| with ÷ without | 1 | $(ratio iperf_agent gbps iperf_none gbps | summ %.3f) |"
    echo "| packets counted (both directions) | — | $(cell iperf_agent counted %.0f) |"
    echo "| events lost | — | $(cell iperf_agent lost %.0f) |"
    echo "| agent CPU s per million packets | — | $(cell iperf_agent cpu_mpkt %.3f) |"
  fi
  if [[ $HEALTH == 1 ]]; then
    echo
    echo "TCP health hooks (\`--aggregation-window $WINDOW\`): every hook on (the default, column agg above), only \`--drop-reasons=false\`, and every hook off. The flood's datagrams reach no socket, so the kernel drops each one with NO_SOCKET and the drop probe runs once per packet: its worst case. BPF figures from the bpf run above (every hook on):"
    echo
    echo "| | every hook on | --drop-reasons=false | every hook off |"
    echo "|---|---|---|---|"
    echo "| generator rate ÷ nothing attached | $(ratio agg rate ceiling rate | summ %.3f) | $(ratio agg_nodrops rate ceiling rate | summ %.3f) | $(ratio agg_off rate ceiling rate | summ %.3f) |"
    echo "| agent CPU s per million packets | $(cell agg cpu_mpkt %.3f) | $(cell agg_nodrops cpu_mpkt %.3f) | $(cell agg_off cpu_mpkt %.3f) |"
    echo "| agent CPU per Mpkt ÷ tcpdump's | $(ratio agg cpu_mpkt tcpdump cpu_mpkt | summ %.2f) | $(ratio agg_nodrops cpu_mpkt tcpdump cpu_mpkt | summ %.2f) | $(ratio agg_off cpu_mpkt tcpdump cpu_mpkt | summ %.2f) |"
    echo "| counted ÷ sent | $(ratio agg counted agg sent | summ %.6f) | $(ratio agg_nodrops counted agg_nodrops sent | summ %.6f) | $(ratio agg_off counted agg_off sent | summ %.6f) |"
    echo "| drop probe: BPF ns per run / runs per packet | $(cell bpf ns_ayaflow_drop %.1f) / $(ratio bpf runs_ayaflow_drop bpf sent | summ %.3f) | — | — |"
    if [[ $IPERF == 1 ]]; then
      echo "| iperf3 throughput, Gbit/s (TCP: the RTT probe runs per received segment) | $(cell iperf_agent gbps %.2f) | — | $(cell iperf_agent_off gbps %.2f) |"
      echo "| iperf3 agent CPU s per million packets | $(cell iperf_agent cpu_mpkt %.3f) | — | $(cell iperf_agent_off cpu_mpkt %.3f) |"
    fi
  fi
  if [[ $PODS == 1 ]]; then
    echo
    echo "Node mode: pod A to pod B through a node namespace that routes between their veths; the agent in the node namespace with \`--interface auto --aggregation-window $WINDOW\` (both veths attached; each packet passes both), with \`kernel.bpf_stats_enabled=1\`; tcpdump on pod A's veth:"
    echo
    echo "| | nothing attached | tcpdump -i vetha | ayaflow \`--interface auto\` |"
    echo "|---|---|---|---|"
    echo "| generator rate, packets/s | $(cell pods_ceiling rate %.0f) | $(cell pods_tcpdump rate %.0f) | $(cell pods_agent rate %.0f) |"
    echo "| captured / counted ÷ sent (once per node: 1) | — | $(ratio pods_tcpdump counted pods_tcpdump sent | summ %.4f) | $(ratio pods_agent counted pods_agent sent | summ %.6f) |"
    echo "| passed over at the second veth (ayaflow_interface_elsewhere_packets_total) ÷ sent | — | — | $(ratio pods_agent elsewhere pods_agent sent | summ %.6f) |"
    echo "| events lost | — | — | $(cell pods_agent lost %.0f) |"
    echo "| **CPU s per million packets** | — | $(cell pods_tcpdump cpu_mpkt %.3f) | $(cell pods_agent cpu_mpkt %.3f) |"
    echo "| agent CPU per Mpkt ÷ tcpdump's | — | — | $(ratio pods_agent cpu_mpkt pods_tcpdump cpu_mpkt | summ %.2f) |"
    echo "| BPF ns per run: ayaflow_in (counts) / ayaflow_eg (passes over) | — | — | $(cell pods_agent ns_ayaflow_in %.1f) / $(cell pods_agent ns_ayaflow_eg %.1f) |"
    echo "| agent VmHWM | — | — | $(mb_cell pods_agent rss_kb) |"
  fi
  echo
  echo "Issue 7 goals (\`--aggregation-window $WINDOW\`):"
  echo
  agg_exact=$(all_equal agg)
  agg_lost=$(allsum agg lost)
  cpu_ratio=$(ratio agg cpu_mpkt tcpdump cpu_mpkt | median)
  rate_ratio=$(ratio agg rate ceiling rate | median)
  rss_max=$(maxof agg rss_kb)
  verdict() { [[ $1 == 1 ]] && echo "**met**" || echo "**not met**"; }
  echo "| goal | measured | |"
  echo "|---|---|---|"
  echo "| every packet counted, totals exact; events lost 0 | counted = sent in $(paste <(values agg counted) <(values agg sent) | awk -F'\t' '$1 == $2' | wc -l) of $N runs; $agg_lost events lost in all | $(verdict $((agg_exact == 1 && agg_lost == 0 ? 1 : 0))) |"
  echo "| agent CPU per Mpkt ≤ ½ tcpdump's | ratio $(printf %.2f "$cpu_ratio") (median) | $(verdict "$(awk -v x="$cpu_ratio" 'BEGIN {print (x <= 0.5 ? 1 : 0)}')") |"
  echo "| generator rate with the agent ≥ 90 % of without | $(awk -v x="$rate_ratio" 'BEGIN {printf "%.1f %%", x * 100}') (median) | $(verdict "$(awk -v x="$rate_ratio" 'BEGIN {print (x >= 0.9 ? 1 : 0)}')") |"
  echo "| RSS under load ≤ 8 MB | $(awk -v k="$rss_max" 'BEGIN {printf "%.1f MB", k / 1024}') (max) | $(verdict "$(awk -v k="$rss_max" 'BEGIN {print (k <= 8192 ? 1 : 0)}')") |"
} >"$out"
cat "$out"
if [[ -n ${RAW_OUT:-} ]]; then cp "$res" "$RAW_OUT"; fi

if ((write_docs)); then
  begin='<!-- compare.sh results begin -->'
  end='<!-- compare.sh results end -->'
  if ! grep -qF "$begin" "$DOCS" || ! grep -qF "$end" "$DOCS"; then
    echo "compare: $DOCS has no results block ($begin ... $end)" >&2
    exit 1
  fi
  awk -v b="$begin" -v e="$end" -v f="$out" '
    $0 == b {print; print ""; while ((getline l < f) > 0) print l; print ""; skip = 1; next}
    $0 == e {skip = 0}
    !skip {print}' "$DOCS" >"$tmp/docs.new"
  cat "$tmp/docs.new" >"$DOCS"
  echo "compare: wrote the results into $DOCS" >&2
fi
