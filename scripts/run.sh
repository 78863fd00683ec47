#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Installs dependencies, builds, and runs the agent in the current directory
# (its database, traffic.db by default, lands here). Arguments go to ayaflow,
# e.g. scripts/run.sh --interface eth0
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" -DAYAFLOW_BUILD_TESTS=OFF -DAYAFLOW_BUILD_BENCH=OFF >&2
exec "${AYAFLOW_BUILD_DIR:-$root/build}/ayaflow" "$@"
