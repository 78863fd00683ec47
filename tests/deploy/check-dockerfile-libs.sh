#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Every shared library the ayaflow binary links must come from a package that
# the Dockerfile's runtime stage installs. Usage: check-dockerfile-libs.sh BINARY DOCKERFILE
set -euo pipefail
binary=$1
dockerfile=$2
# Packages named in the runtime stage (the last FROM): the apt-get install lines.
runtime=$(awk '/^FROM /{stage++} {print stage "\t" $0}' "$dockerfile" |
  awk -F'\t' -v last="$(grep -c '^FROM ' "$dockerfile")" '$1 == last {print $2}' |
  sed -n '/apt-get install/,/rm -rf/p' | tr ' \\' '\n\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' |
  grep -vE '^(apt-get|install|rm|y|no-install-recommends|var|lib|apt|lists)$' | sort -u)
status=0
while read -r lib path; do
  [[ -z "$path" ]] && continue
  real=$(readlink -f "$path")
  pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true)
  pkg=${pkg%%:*}
  if [[ -z "$pkg" ]]; then
    echo "no package owns $lib ($real)" >&2
    status=1
  elif ! grep -qx "$pkg" <<<"$runtime"; then
    echo "$lib comes from $pkg, which the runtime stage of $dockerfile does not install" >&2
    status=1
  fi
done < <(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}')
[[ $status -eq 0 ]] && echo "runtime stage covers every library of $binary"
exit $status
