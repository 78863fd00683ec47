#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Builds the container image from docker/Dockerfile with podman, without Docker and without
# a registry if need be, and can save it as an OCI archive (for `ctr images import`,
# `podman load` or `docker load`).
#
#   scripts/image.sh [--tag NAME] [--save FILE] [--cache DIR] [--no-pull]
#
# The Dockerfile starts FROM debian:12-slim. When that image is not in the store and cannot be
# pulled (or with --no-pull), the script makes an equivalent Debian 12 base from Debian's own
# packages with `mmdebstrap --variant=minbase bookworm` and tags it under that name; then it
# builds the Dockerfile unchanged (`podman build --network host`). Nothing else is special.
#
# Images live in a store of the script's own under the cache directory (default
# build/image, or $AYAFLOW_BUILD_DIR/image), with the vfs storage driver, which works
# everywhere, also inside a container. A second run is quick: the base is kept and podman
# reuses the build's layers while the sources are unchanged. See them with
#   podman --root build/image/storage --storage-driver vfs images
# Needs root (or a user with subordinate IDs) and Debian's podman, mmdebstrap and uidmap
# (scripts/install-deps.sh). Prints the image's size at the end.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=$(sed -n 's/^project(ayaflow VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
# The manifests' image (k8s/daemonset.yaml): a node that has it imported runs it as is.
tag=ghcr.io/ayaflow/ayaflow:$version
save=""
cache=${AYAFLOW_BUILD_DIR:-$root/build}/image
pull=1
while (($#)); do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --save) save=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --no-pull) pull=0; shift ;;
    -h | --help) sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
base=docker.io/library/debian:12-slim
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
podman=(podman --root "$cache/storage" --runroot "$cache/run"
  --storage-driver "${AYAFLOW_PODMAN_STORAGE_DRIVER:-vfs}")
start=$SECONDS

if ! "${podman[@]}" image exists "$base"; then
  if ((pull)) && timeout 120 "${podman[@]}" pull -q "$base"; then
    echo "image.sh: pulled $base"
  else
    # minbase: apt, dpkg and the Essential packages, like debian:12-slim (which also drops
    # documentation; only the build stage sees the difference). Kept for the next store.
    if [[ ! -s $cache/debian-12-minbase.tar ]]; then
      echo "image.sh: $base cannot be pulled; making it with mmdebstrap"
      mmdebstrap --quiet --variant=minbase --format=tar bookworm "$cache/debian-12-minbase.tar.part"
      mv "$cache/debian-12-minbase.tar.part" "$cache/debian-12-minbase.tar"
    fi
    "${podman[@]}" import -q "$cache/debian-12-minbase.tar" "$base" >/dev/null
    echo "image.sh: $base imported from an mmdebstrap bookworm minbase"
  fi
fi

# The build's output goes to build.log in the cache directory; its end is shown on failure.
if ! "${podman[@]}" build --network host --pull=never -f "$root/docker/Dockerfile" -t "$tag" \
  "$root" >"$cache/build.log" 2>&1; then
  tail -n 40 "$cache/build.log" >&2
  echo "image.sh: podman build failed (whole output: $cache/build.log)" >&2
  exit 1
fi
# The vfs driver copies every layer whole (about 1.4 GB per build-stage step): keep the build
# stage of this build (tagged, so that its layers stay a cache for the next one) and drop
# those of earlier builds, which are untagged once nothing refers to them.
build_stage=$(awk '/^\[[2-9]\/[0-9]+\] STEP 1\//{print id; exit} /^--> /{id=$2}' "$cache/build.log")
if [[ -n $build_stage ]]; then
  "${podman[@]}" tag "$build_stage" localhost/ayaflow-build-stage:latest
  "${podman[@]}" image prune -f >/dev/null
fi
if [[ -n $save ]]; then
  mkdir -p "$(dirname "$save")"
  rm -f "$save.part"
  "${podman[@]}" save -q --format oci-archive -o "$save.part" "$tag"
  mv "$save.part" "$save"
fi
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$tag")
echo "image.sh: $tag, $((size / 1000000)) MB ($size bytes) uncompressed, built in" \
  "$((SECONDS - start)) s${save:+, saved to $save}"
