#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Installs dependencies, builds everything and runs the whole test suite:
# a bounded libFuzzer run over the packet parsers (AYAFLOW_FUZZ_SECONDS,
# default 60; 0 skips it), then the unit, api, deploy and root (kernel,
# network namespaces) tiers. As root the root tier runs for real; without
# root it skips with a message, and under CI=true a skip is a failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${AYAFLOW_BUILD_DIR:-$root/build}
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" -DAYAFLOW_BUILD_TESTS=ON -DAYAFLOW_BUILD_BENCH=ON
fuzz_seconds=${AYAFLOW_FUZZ_SECONDS:-60}
if ((fuzz_seconds > 0)); then
  AYAFLOW_FUZZ_BUILD_DIR=${AYAFLOW_FUZZ_BUILD_DIR:-$build_dir-fuzz} "$root/scripts/fuzz.sh" "$fuzz_seconds"
fi
cd "$build_dir"
ctest --output-on-failure --no-tests=error --timeout 600 "$@"
