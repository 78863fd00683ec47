#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Installs every Debian 12 package ayaflow needs to build, run and test.
# Idempotent and quick when everything is present (no apt-get update then).
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config ccache clang llvm bpftool clang-format
  libbpf-dev libelf-dev zlib1g-dev linux-libc-dev libboost-dev libsqlite3-dev
  nlohmann-json3-dev prometheus-cpp-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  # pod names from the container runtime (CRI over gRPC)
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev iproute2
  # deep inspection: end-to-end tests and tests/inspect/data/record.sh
  dnsmasq-base dnsutils tcpdump openssl curl
  # bench/compare.sh reads the agent's JSON with jq
  jq
  # bench/compare.sh: TCP throughput with and without the agent
  iperf3
  # tests/e2e/wire_truth_e2e_test: HTTP downloads from a real web server
  nginx
  # a test whose agent does not stop in time prints its threads (gdb)
  gdb
  # tests/k8s: a real container runtime running pod sandboxes (tests/support/containerd_*)
  containerd runc containernetworking-plugins busybox-static
  # scripts/image.sh and the image tests: build docker/Dockerfile without Docker (podman, with
  # a Debian 12 base made by mmdebstrap when none can be pulled)
  podman mmdebstrap uidmap
  # libFuzzer runtime for scripts/fuzz.sh (clang -fsanitize=fuzzer)
  libclang-rt-14-dev
  # /metrics tests (promtool, a real Prometheus server) and bench/bench_http.sh
  prometheus wrk
  # the dashboard browser test (tests/browser): headless Chromium
  chromium
  # issue 17, flow export: the IPFIX library (libfixbuf, LGPL-3.0, linked dynamically) and the
  # real collectors and servers the export tests run (tests/export): nfdump's nfcapd, pmacct's
  # nfacctd, tshark, ipfixDump (libfixbuf-tools) behind socat, and ClickHouse
  libfixbuf-dev libssl-dev libfixbuf-tools nfdump pmacct tshark socat clickhouse-server
  clickhouse-client
)
# Node.js and npm run the manifest schema checks (tests/deploy); some
# machines ship their own Node.js, which is fine.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
