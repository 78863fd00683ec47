#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# check-monitoring.sh must fail on broken input: runs it on copies of the monitoring files,
# each with one defect, and expects exit 1 and the finding on stderr (ctest -L deploy).
# The unmodified copy must pass first, so every failure below is the defect's.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
promtool=${PROMTOOL:-promtool}
if ! command -v "$promtool" >/dev/null; then
  if [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; then
    echo "promtool missing; CI=true forbids skipping" >&2
    exit 1
  fi
  echo "promtool missing (Debian package prometheus): skipped"
  exit 77
fi
tmp=$(mktemp -d /tmp/ayaflow-monitoring-fails-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# A fresh copy of what check-monitoring.sh reads.
copy() {
  rm -rf "$tmp/root"
  mkdir -p "$tmp/root/k8s" "$tmp/root/docker"
  cp -r "$repo/monitoring" "$tmp/root/"
  cp "$repo/docker-compose.monitoring.example.yml" "$tmp/root/"
  cp -r "$repo/src" "$tmp/root/"
  cp "$repo/k8s/daemonset.yaml" "$tmp/root/k8s/"
  cp "$repo/docker/Dockerfile" "$tmp/root/docker/"
}
# Replaces `from` by `to` in FILE (relative to the copy); the text must be there.
mutate() {
  local file=$tmp/root/$1 from=$2 to=$3
  FROM=$from TO=$to python3 - "$file" <<'PY'
import os, sys
path = sys.argv[1]
text = open(path).read()
if os.environ["FROM"] not in text:
    sys.exit(f"mutation target not found in {path}: {os.environ['FROM']!r}")
open(path, "w").write(text.replace(os.environ["FROM"], os.environ["TO"]))
PY
}

copy
if ! "$here/check-monitoring.sh" "$tmp/root" >"$tmp/out" 2>&1; then
  echo "the unmodified copy fails:" >&2
  cat "$tmp/out" >&2
  exit 1
fi

failures=0
# expect_failure NAME PATTERN: check-monitoring.sh on the current copy must exit 1 and
# print PATTERN (an extended regex) on stderr.
expect_failure() {
  local name=$1 pattern=$2 rc=0
  "$here/check-monitoring.sh" "$tmp/root" >"$tmp/out" 2>"$tmp/err" || rc=$?
  if [[ $rc -ne 1 ]]; then
    echo "FAIL $name: check-monitoring.sh exited $rc, want 1" >&2
    failures=$((failures + 1))
  elif ! grep -Eq -- "$pattern" "$tmp/err"; then
    echo "FAIL $name: stderr lacks /$pattern/:" >&2
    cat "$tmp/err" >&2
    failures=$((failures + 1))
  else
    echo "ok   $name"
  fi
}

dash=monitoring/grafana/dashboards/ayaflow.json

copy
mutate "$dash" "ayaflow_stream_frames_sent_total" "ayaflow_stream_frames_published_total"
expect_failure "a family missing from the dashboard" \
  "no panel queries ayaflow_stream_frames_sent_total"

copy
printf '\n// families.counter("ayaflow_new_family_total", "x", 0);\n' >>"$tmp/root/src/api/metrics.cpp"
expect_failure "a family added to the agent only" "no panel queries ayaflow_new_family_total"

copy
mutate "$dash" "sum by (direction) (rate(ayaflow_interface_packets_total" \
  "sum by (direction (rate(ayaflow_interface_packets_total"
expect_failure "an expression that does not parse" "FAILED: .*check rules .*dashboard-rules.yml"

copy
mutate "$dash" 'ayaflow_storage_queue_rows{job=\"$job\", instance=~\"$instance\"}' \
  'ayaflow_storage_queue_rows{job=\"$job\", instance=~\"$instanse\"}'
expect_failure "an unknown dashboard variable" 'unknown variable \$instanse'

copy
mutate "$dash" '"uid": "${DS_PROMETHEUS}"' '"uid": "P1809F7CD0C75ACF3"'
expect_failure "a hard-wired datasource uid" 'datasource must be \$\{DS_PROMETHEUS\}'

copy
python3 - "$tmp/root/$dash" <<'PY'
import json, sys
path = sys.argv[1]
d = json.load(open(path))
for p in d["panels"]:
    if p.get("type") == "stat" and "ayaflow_events_lost_total" in json.dumps(p.get("targets")):
        p["fieldConfig"]["defaults"]["thresholds"]["steps"] = [{"color": "green", "value": None}]
json.dump(d, open(path, "w"), indent=2)
PY
expect_failure "the events-lost stat never turns red" "turns red when > 0"

copy
mutate monitoring/prometheus/alerts.yml 'expr: up{job="ayaflow"} == 0' 'expr: up{job="ayaflow" == 0'
expect_failure "an alert rule that does not parse" "FAILED: .*check (config|rules) .*alerts.yml"

copy
mutate monitoring/prometheus/alerts.yml "> 0.01" "> 0.05"
expect_failure "an alert threshold its unit test disagrees with" "FAILED: .*test rules"

copy
mutate monitoring/prometheus/prometheus.yml "scrape_interval: 15s" "scrape_interval: 15 seconds"
expect_failure "a scrape config that does not parse" "FAILED: .*check config .*prometheus.yml"

copy
mutate monitoring/prometheus/prometheus.yml "#       regex: ayaflow" "#       regex: ayaflow-agent"
expect_failure "a Kubernetes job that misses the DaemonSet's pods" "drops the DaemonSet's pod"

copy
mutate monitoring/prometheus/prometheus.yml "#     - role: pod" "#     - role: pods"
expect_failure "a Kubernetes job with a bad role" "role must be pod"

copy
mutate docker-compose.monitoring.example.yml "./monitoring/grafana/provisioning:" \
  "./monitoring/grafana/provisionning:"
expect_failure "a compose mount of a missing path" "mounts ./monitoring/grafana/provisionning, which does not exist"

copy
mutate docker-compose.monitoring.example.yml "cap_add: [BPF, NET_ADMIN, PERFMON]" "cap_add: [NET_ADMIN]"
expect_failure "a compose agent without CAP_BPF" "agent: capability BPF"

copy
mutate docker-compose.monitoring.example.yml "  grafana:" "  grafana-server:"
expect_failure "a compose file without the grafana service" "service grafana missing"

if [[ $failures -ne 0 ]]; then
  echo "$failures defect(s) went unnoticed" >&2
  exit 1
fi
echo "check-monitoring.sh caught every defect"
