#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# How the kernel side behaves when several CPUs send at once (issue 19, "many cores"):
# one flow from one CPU, the same flow from two CPUs at once (every packet updates the
# same flow-table entry with atomic adds, and its cache line moves between the CPUs), and
# distinct flows from two CPUs (no shared entry). Each in aggregated mode (flow tables)
# and in raw mode (an event per packet into the one shared ring buffer).
#
#   bench/cores.sh BUILD_DIR        (as root; BUILD_DIR holds a Release ayaflow and bench/udp_flood)
#
# The traffic comes from udp_flood (whole IPv4/UDP packets on a raw socket, so two
# processes can send the very same 5-tuple), one process pinned to each CPU with
# taskset, from the host end of its own veth pair to the peer (no listener). For each
# scenario it reports the packets sent per second, the classifier's ns per run from
# kernel.bpf_stats (the agent's own program, found through its file descriptors; the
# growth of run_time_ns / run_cnt during the scenario) and whether the agent's
# /api/stats total_packets grew by exactly the packets sent.
#
# Environment: N (3) repetitions, T (5) seconds per scenario, FLOWS (256) flows per
# process in the many-flows scenario, PAYLOAD (18). The scenarios of a repetition run back
# to back so that the machine's load hits them alike; it prints medians and min-max.
# On exit, also on failure, it removes its namespace and veth, restores
# kernel.bpf_stats_enabled and stops the processes it started.
set -euo pipefail

[[ $# -eq 1 ]] || {
  echo "usage: bench/cores.sh BUILD_DIR   (as root)" >&2
  exit 2
}
build_dir=$1
N=${N:-3}
T=${T:-5}
FLOWS=${FLOWS:-256}
PAYLOAD=${PAYLOAD:-18}
agent_bin=$build_dir/ayaflow
flood_bin=$build_dir/bench/udp_flood
for f in "$agent_bin" "$flood_bin"; do
  [[ -x $f ]] || {
    echo "cores: $f not found; build it: cmake --build $build_dir --target ayaflow udp_flood" >&2
    exit 2
  }
done
for tool in ip curl jq bpftool taskset; do
  command -v "$tool" >/dev/null || {
    echo "cores: $tool is needed" >&2
    exit 2
  }
done
cpus=$(nproc)
((cpus >= 2)) || {
  echo "cores: needs at least 2 CPUs" >&2
  exit 2
}

ns=ayfk$$
host_if=ayfkh$$
peer_if=ayfkp$$
tmp=$(mktemp -d /tmp/ayaflow-cores.XXXXXX)
started_pids=()
stats_prev=$(sysctl -n kernel.bpf_stats_enabled)
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  sysctl -qw kernel.bpf_stats_enabled="$stats_prev" || true
  teardown_test_run "$rc" "${started_pids[@]}"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
make_test_link 216 cores
sysctl -qw kernel.bpf_stats_enabled=1
port=$((20000 + $$ % 20000))
agent_pid=

start_agent() { # extra agent args...
  "$agent_bin" --interface "$host_if" --listen-address 127.0.0.1 --port "$port" \
    --db-path "$tmp/traffic.db" --connection-timeout 60 --quiet "$@" >"$tmp/agent.log" 2>&1 &
  agent_pid=$!
  started_pids+=("$agent_pid")
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && return
    sleep 0.1
  done
  echo "cores: agent did not start" >&2
  exit 1
}

stop_agent() {
  kill -TERM "$agent_pid" 2>/dev/null || true
  wait "$agent_pid" 2>/dev/null || true
  rm -f "$tmp"/traffic.db*
}

# run_time_ns and run_cnt of the agent's egress classifier, summed over its programs.
prog_stats() {
  local ids id
  ids=$(grep -h '^prog_id:' /proc/"$agent_pid"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u)
  for id in $ids; do bpftool prog show id "$id" -j; done |
    jq -s '[.[] | select(.name == "ayaflow_eg")] |
           "\(map(.run_time_ns // 0) | add // 0) \(map(.run_cnt // 0) | add // 0)"' -r
}

total_packets() {
  curl -sf "http://127.0.0.1:$port/api/stats" | jq -r '.total_packets'
}

# scenario NAME: floods for T seconds; prints "NAME sent rate ns_per_run exact".
scenario() {
  local name=$1 before_t before_r after_t after_r p0 p1 sent out0 out1 t0 nsr
  # Another benchmark ending meanwhile may have restored the sysctl: set it again.
  sysctl -qw kernel.bpf_stats_enabled=1
  read -r before_t before_r < <(prog_stats)
  p0=$(total_packets)
  case $name in
    one_cpu_one_flow)
      taskset -c 0 "$flood_bin" "$host_ip" "$peer_ip:9" 0 "$T" 1 "$PAYLOAD" >"$tmp/f0" ;;
    two_cpus_one_flow)
      taskset -c 0 "$flood_bin" "$host_ip" "$peer_ip:9" 0 "$T" 1 "$PAYLOAD" >"$tmp/f0" &
      taskset -c 1 "$flood_bin" "$host_ip" "$peer_ip:9" 0 "$T" 1 "$PAYLOAD" >"$tmp/f1"
      wait ;;
    two_cpus_many_flows)
      taskset -c 0 "$flood_bin" "$host_ip" "$peer_ip:9" 0 "$T" "$FLOWS" "$PAYLOAD" >"$tmp/f0" &
      taskset -c 1 "$flood_bin" "$host_ip" "$peer_ip:10" 0 "$T" "$FLOWS" "$PAYLOAD" >"$tmp/f1"
      wait ;;
  esac
  [[ $name == one_cpu_* ]] && echo "packets=0 seconds=$T" >"$tmp/f1"
  sleep 2 # the agent's totals: read once a second
  read -r after_t after_r < <(prog_stats)
  p1=$(total_packets)
  out0=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' "$tmp/f0")
  out1=$(sed -n 's/.*packets=\([0-9]*\).*/\1/p' "$tmp/f1")
  sent=$((out0 + out1))
  t0=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$tmp/f0")
  nsr=-
  if ((after_r > before_r && sent > 0)); then
    nsr=$(awk -v t=$((after_t - before_t)) -v r=$((after_r - before_r)) 'BEGIN {printf "%.1f", t / r}')
  fi
  echo "$name $sent $(awk -v n="$sent" -v t="$t0" 'BEGIN {printf "%d", n / t}') $nsr $([[ $((p1 - p0)) -eq $sent ]] && echo exact || echo "counted_$((p1 - p0))")"
}

results=$tmp/results
: >"$results"
for r in $(seq 1 "$N"); do
  echo "cores: repetition $r/$N, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  for mode in aggregated raw; do
    if [[ $mode == aggregated ]]; then start_agent --aggregation-window 10; else start_agent; fi
    for s in one_cpu_one_flow two_cpus_one_flow two_cpus_many_flows; do
      echo "$mode $(scenario "$s")" | tee -a "$results" >&2
    done
    stop_agent
  done
done

median() { grep -v '^-$' | sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "-"; exit}; m=a[int((NR+1)/2)]; printf "%s (%s–%s)", m, a[1], a[NR]}'; }
echo
echo "Command: \`sudo N=$N T=$T bench/cores.sh BUILD_DIR\`, $cpus CPUs, $(date -u '+%Y-%m-%d %H:%M') UTC, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end. udp_flood pinned per CPU, $PAYLOAD-byte payloads; medians (min–max) of $N."
echo
echo "| mode | scenario | packets/s (all senders) | ns per run of ayaflow_eg | counted = sent |"
echo "|---|---|---|---|---|"
for mode in aggregated raw; do
  for s in one_cpu_one_flow two_cpus_one_flow two_cpus_many_flows; do
    rate=$(awk -v m=$mode -v s=$s '$1==m && $2==s {print $4}' "$results" | median)
    nsr=$(awk -v m=$mode -v s=$s '$1==m && $2==s {print $5}' "$results" | median)
    exact=$(awk -v m=$mode -v s=$s '$1==m && $2==s && $6=="exact" {n++} $1==m && $2==s {t++} END {print n+0 " of " t}' "$results")
    echo "| $mode | ${s//_/ } | $rate | $nsr | $exact |"
  done
done
