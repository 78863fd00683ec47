#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Schema-checks the Kubernetes manifests (installs the checker from npm once).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ! -d "$here/node_modules/kubernetes-models" ]]; then
  npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
fi
node "$here/validate-k8s.mjs" "$here/../../k8s/daemonset.yaml" "$here/../../k8s/example.yaml"
