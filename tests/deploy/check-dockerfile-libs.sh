#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# The container image's runtime stage is what docker/rootfs.sh gathers for the agent, on an
# empty base: this runs rootfs.sh on the built agent and proves the result self-sufficient
# (the agent starts chrooted into it, so no library is missing), that it holds every library
# ldd lists, and that it stays within the size budget of a node agent's image (40 MB).
# Usage: check-dockerfile-libs.sh BINARY DOCKERFILE
set -euo pipefail
binary=$(readlink -f "$1")
dockerfile=$(readlink -f "$2")
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
budget=$((40 * 1000 * 1000))
status=0
fail() {
  echo "$*" >&2
  status=1
}
# The runtime stage (the last FROM): an empty base plus rootfs.sh's directory.
runtime=$(awk '/^FROM /{stage++} stage == n' n="$(grep -c '^FROM ' "$dockerfile")" "$dockerfile")
grep -qx 'FROM scratch' <<<"$runtime" || fail "the runtime stage of $dockerfile is not FROM scratch"
grep -q '^COPY --from=build /rootfs/ /$' <<<"$runtime" ||
  fail "the runtime stage of $dockerfile does not copy /rootfs from the build stage"
grep -q 'docker/rootfs.sh /build/ayaflow /rootfs' "$dockerfile" ||
  fail "$dockerfile does not gather /rootfs with docker/rootfs.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && docker/rootfs.sh "$binary" "$tmp/rootfs")
while read -r lib; do
  [[ -e $tmp/rootfs$lib ]] || fail "$lib (ldd) is not in the runtime root file system"
done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
# chroot needs CAP_SYS_CHROOT: as root, or as root of a new user namespace.
if [[ $(id -u) -eq 0 ]]; then
  chroot=(chroot)
else
  chroot=(unshare --user --map-root-user chroot)
fi
if ! out=$("${chroot[@]}" "$tmp/rootfs" /usr/local/bin/ayaflow --version 2>&1); then
  fail "the agent does not start from the runtime root file system alone: $out"
fi
size=$(du -sb "$tmp/rootfs" | cut -f1)
((size <= budget)) || fail "the runtime root file system is $size bytes, over the budget of $budget"
if ((status == 0)); then
  echo "runtime root file system: $(find "$tmp/rootfs" -type f | wc -l) files, $size bytes; $out"
fi
exit $status
