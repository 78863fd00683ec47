#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# HTTP benchmark on loopback with wrk (Debian package `wrk`): requests/s and latency
# percentiles for /api/health, /api/live (100 000 connections in the map) and /metrics,
# served by the real HttpServer in bench_http_server, while its synthetic capture thread
# records events at a fixed rate. For each run it reports how many events capture
# processed against how many fell due, how many a 256 KiB ring buffer would have lost,
# and the longest capture stall: /api/live must not stall capture.
#
#   bench/bench_http.sh [build-dir]        (default: build; use a Release build)
#   DURATION=10 CONNECTIONS=50 WRK_THREADS=1 SERVER_THREADS=1 RATE=200000 MAP_SIZE=100000 \
#   LIVE_MAX_AGE_MS=250 bench/bench_http.sh      (LIVE_MAX_AGE_MS=0: scan the map per request)
#
# Prints a Markdown table (results go to docs/api.md, "Performance").
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
server_bin=$build/bench/bench_http_server
duration=${DURATION:-10}
connections=${CONNECTIONS:-50}
wrk_threads=${WRK_THREADS:-1}
server_threads=${SERVER_THREADS:-1}
rate=${RATE:-200000}
map_size=${MAP_SIZE:-100000}
live_max_age_ms=${LIVE_MAX_AGE_MS:-250}

command -v wrk >/dev/null || { echo "bench_http: wrk not found (apt-get install wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench_http: curl not found" >&2; exit 1; }
[[ -x $server_bin ]] || { echo "bench_http: build bench_http_server first ($server_bin)" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

"$server_bin" --connections "$map_size" --rate "$rate" --threads "$server_threads" \
  --live-max-age-ms "$live_max_age_ms" >"$work/server.log" 2>&1 &
server_pid=$!
port=
for _ in $(seq 1 300); do
  port=$(sed -n 's/^port \([0-9]*\) .*/\1/p' "$work/server.log")
  [[ -n $port ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $port ]] || { echo "bench_http: server did not start" >&2; exit 1; }
base=http://127.0.0.1:$port

json_field() {  # json_field FIELD < flat JSON
  sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

capture() { curl -sf "$base/bench/capture"; }

# One measured window: capture counters before/after, wrk (or sleep) in between.
# Prints: req/s p50 p99 max | processed expected lost max_stall_us
measure() {
  local target=$1 before after out
  before=$(capture)
  if [[ $target == idle ]]; then
    sleep "$duration"
    out="Requests/sec: 0"
  else
    out=$(wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" --latency "$base$target")
  fi
  after=$(capture)
  local rps p50 p99 max
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  max=$(awk '$1 == "Latency" {print $4}' <<<"$out")
  local processed expected lost stall errors
  processed=$(($(json_field processed <<<"$after") - $(json_field processed <<<"$before")))
  expected=$(($(json_field expected <<<"$after") - $(json_field expected <<<"$before")))
  lost=$(($(json_field lost <<<"$after") - $(json_field lost <<<"$before")))
  stall=$(json_field max_stall_us <<<"$after")
  errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  printf '| %s | %s | %s | %s | %s | %s / %s | %s | %s |%s\n' "$target" "${rps:-0}" \
    "${p50:--}" "${p99:--}" "${max:--}" "$processed" "$expected" "$lost" "$stall" \
    "${errors:+ $errors}"
}

# Warm up: fault the map in, let the first /api/live and /metrics responses allocate.
wrk -t1 -c4 -d2s "$base/api/live" >/dev/null
wrk -t1 -c4 -d1s "$base/metrics" >/dev/null
capture >/dev/null  # resets the stall maximum

live_bytes=$(curl -sf "$base/api/live" | wc -c)
metrics_bytes=$(curl -sf "$base/metrics" | wc -c)
echo "# $(nproc) CPUs; map $map_size connections; capture $rate events/s, ring 4096 events;"
echo "# wrk -t$wrk_threads -c$connections -d${duration}s; server threads $server_threads;"
echo "# /api/live list reused for $live_max_age_ms ms"
echo "# /api/live answer $live_bytes bytes, /metrics $metrics_bytes bytes"
echo
echo "| target | requests/s | p50 | p99 | max | capture processed / due | lost | longest capture stall (µs) |"
echo "|---|---|---|---|---|---|---|---|"
measure idle
for target in /api/health /api/live /metrics; do
  measure "$target"
done
