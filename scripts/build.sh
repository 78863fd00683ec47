#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Configures and builds ayaflow into build/ (or $AYAFLOW_BUILD_DIR).
# Extra arguments are passed to cmake's configure step.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${AYAFLOW_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${AYAFLOW_BUILD_TYPE:-RelWithDebInfo}" "$@"
cmake --build "$build_dir" -j"$(nproc)"
