#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Builds the container image from docker/Dockerfile (scripts/image.sh) into the build tree and
# saves it as an OCI archive for tests/e2e/image_e2e_test: the ctest fixture `ayaflow_image`,
# run once per ctest run. Quick when nothing changed (the Debian base and podman's layers are
# kept under CACHE_DIR). Usage: image-build.sh CACHE_DIR ARCHIVE
# Without root, podman or mmdebstrap it skips (77), and fails under CI=true.
set -euo pipefail
cache=$1
archive=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
missing=()
[[ $(id -u) -eq 0 ]] || missing+=(root)
for tool in podman mmdebstrap newuidmap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "image-build: missing ${missing[*]} (Debian: podman mmdebstrap uidmap; scripts/install-deps.sh)" >&2
  [[ ${CI:-} == true ]] && exit 1
  exit 77
fi
exec "$root/scripts/image.sh" --cache "$cache" --save "$archive"
