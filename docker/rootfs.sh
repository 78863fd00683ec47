#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Gathers the runtime root file system of the container image (docker/Dockerfile) in DIR:
# the stripped agent, every shared library `ldd` lists for it (the file the loader would load,
# under the path ldd shows), the dynamic loader, the project's licences and the copyright
# files of the Debian packages the libraries come from. Nothing else: no shell, no package
# manager. Usage: rootfs.sh BINARY DIR (run from the source tree). tests/deploy runs it on
# the built agent and runs the agent chrooted into the result.
set -eu
binary=$1
dir=$2
mkdir -p "$dir/usr/local/bin" "$dir/usr/share/doc/ayaflow" "$dir/var/lib/ayaflow"
cp "$binary" "$dir/usr/local/bin/ayaflow"
strip "$dir/usr/local/bin/ayaflow"
cp LICENSE-APACHE LICENSE-MIT LICENSE-GPL "$dir/usr/share/doc/ayaflow/"
libs=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
[ -n "$libs" ] || { echo "rootfs.sh: ldd lists no libraries for $binary" >&2; exit 1; }
# Debian 12 ships its libraries under /lib, merged into /usr by a symlink: dpkg knows them
# by the path before the merge, hence both paths. One dpkg call: each costs half a second.
paths=""
for lib in $libs; do
  cp --parents -L "$lib" "$dir"
  real=$(readlink -f "$lib")
  paths="$paths $real ${real#/usr}"
done
# shellcheck disable=SC2086 # one argument per path
owners=$(dpkg -S $paths 2>/dev/null || true)
for lib in $libs; do
  real=$(readlink -f "$lib")
  # "libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6" (or "pkg1, pkg2: path")
  pkg=$(printf '%s\n' "$owners" | awk -v a="$real" -v b="${real#/usr}" \
    '{ i = index($0, ": /"); p = substr($0, i + 2) } p == a || p == b { print substr($0, 1, i - 1); exit }')
  pkg=${pkg%%,*}
  pkg=${pkg%%:*}
  [ -n "$pkg" ] || { echo "rootfs.sh: no Debian package owns $lib ($real)" >&2; exit 1; }
  mkdir -p "$dir/usr/share/doc/$pkg"
  cp "/usr/share/doc/$pkg/copyright" "$dir/usr/share/doc/$pkg/"
done
