#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Checks monitoring/ and docker-compose.monitoring.example.yml (ctest -L deploy):
#   1. promtool check config on prometheus.yml, and on its commented Kubernetes job
#      uncommented in place of the static job (Debian's promtool is built without Kubernetes
#      discovery: validate-monitoring.mjs checks kubernetes_sd_configs itself and hands
#      promtool the job with a static target in its place);
#   2. promtool check rules / test rules on the alert rules;
#   3. validate-monitoring.mjs: the dashboard (structure, every exported family queried,
#      the events-lost stat), Grafana provisioning, the compose file and its mounts, and the
#      Kubernetes job's relabelling of the DaemonSet's pods;
#   4. promtool check rules on every dashboard expression (as recording rules).
# Usage: check-monitoring.sh [ROOT]   (ROOT defaults to the repository)
# promtool comes from Debian's `prometheus` package (scripts/install-deps.sh); without it
# the check skips (exit 77), and fails under CI=true.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "${1:-$here/../..}" && pwd)
promtool=${PROMTOOL:-promtool}
if ! command -v "$promtool" >/dev/null; then
  if [[ "${CI:-}" == "true" || "${CI:-}" == "1" ]]; then
    echo "promtool missing; CI=true forbids skipping" >&2
    exit 1
  fi
  echo "promtool missing (Debian package prometheus): skipped"
  exit 77
fi
if [[ ! -d "$here/node_modules/js-yaml" ]]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi
tmp=$(mktemp -d /tmp/ayaflow-monitoring-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prom=$root/monitoring/prometheus
status=0
run() {
  local out
  if out=$("$@" 2>&1); then
    printf '%s\n' "$out"
  else
    printf 'FAILED: %s\n%s\n' "$*" "$out" >&2
    status=1
  fi
}

# 1. The config as shipped (static job), then with the Kubernetes job instead: everything up
#    to scrape_configs, then the commented block from its "- job_name" line, uncommented.
run "$promtool" check config "$prom/prometheus.yml"
awk '
  /^scrape_configs:/ { print; head = 0; next }
  NR == 1 { head = 1 }
  head { print; next }
  /^  # - job_name:/ { body = 1 }
  /# --- kubernetes: end/ { body = 0 }
  body { sub(/^  # ?/, "  "); print }
' "$prom/prometheus.yml" >"$tmp/prometheus-k8s.yml"
cp "$prom"/alerts.yml "$tmp/"
if ! grep -q 'kubernetes_sd_configs:' "$tmp/prometheus-k8s.yml"; then
  echo "FAILED: no commented kubernetes_sd job between the kubernetes markers of $prom/prometheus.yml" >&2
  status=1
fi

# 2. Alert rules: syntax, then their unit tests.
run "$promtool" check rules "$prom/alerts.yml"
run "$promtool" test rules "$prom/alerts.test.yml"

# 3. Dashboard, provisioning, compose, Kubernetes job; writes dashboard-rules.yml and
#    prometheus-k8s-promtool.yml into $tmp.
run node "$here/validate-monitoring.mjs" "$root" "$tmp"

# 4. Every dashboard expression parses as PromQL; the Kubernetes job's relabelling parses.
for out in dashboard-rules.yml prometheus-k8s-promtool.yml; do
  if [[ ! -f "$tmp/$out" ]]; then
    echo "FAILED: validate-monitoring.mjs wrote no $out" >&2
    status=1
  fi
done
[[ -f "$tmp/dashboard-rules.yml" ]] && run "$promtool" check rules "$tmp/dashboard-rules.yml"
[[ -f "$tmp/prometheus-k8s-promtool.yml" ]] && run "$promtool" check config "$tmp/prometheus-k8s-promtool.yml"

[[ $status -eq 0 ]] && echo "monitoring checks passed"
exit $status
