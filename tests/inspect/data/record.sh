#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# Re-records the deep-inspection test data from real clients and servers (see README.md).
# Needs root (network namespaces) and: iproute2, dnsmasq (dnsmasq-base), dig (dnsutils),
# tcpdump, openssl, curl, python3. Touches nothing outside two private network namespaces
# joined by one veth pair, all deleted on exit.
#
# usage: sudo tests/inspect/data/record.sh [OUT_DIR]   (default: this script's directory)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
mkdir -p "$out"
[[ $(id -u) -eq 0 ]] || { echo "record.sh: needs root (network namespaces)" >&2; exit 1; }
for t in ip dnsmasq dig tcpdump openssl curl python3; do
  command -v "$t" >/dev/null || { echo "record.sh: $t is missing" >&2; exit 1; }
done

tag=$$
ns_srv="ayains-s-$tag"
ns_cli="ayains-c-$tag"
if_srv="ayis$tag"
if_cli="ayic$tag"
work=$(mktemp -d)
pids=()  # background processes: `ip netns exec` execs them, so these are their own pids

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns_cli" 2>/dev/null || true
  ip netns del "$ns_srv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

srv() { ip netns exec "$ns_srv" "$@"; }
cli() { ip netns exec "$ns_cli" "$@"; }

# Waits (at most 5 s) until `ss $1` in the server namespace lists port $2.
wait_listen() {
  for _ in $(seq 50); do
    if srv ss -H "$1" "sport = :$2" | grep -q .; then return 0; fi
    sleep 0.1
  done
  echo "record.sh: nothing listening on $2" >&2
  exit 1
}

# --- network: server 10.215.0.1 / fd00:215::1, client 10.215.0.2 / fd00:215::2 -------------
ip netns add "$ns_srv"
ip netns add "$ns_cli"
ip link add "$if_cli" type veth peer name "$if_srv"
ip link set "$if_srv" netns "$ns_srv"
ip link set "$if_cli" netns "$ns_cli"
srv ip addr add 10.215.0.1/24 dev "$if_srv"
srv ip addr add fd00:215::1/64 dev "$if_srv" nodad
cli ip addr add 10.215.0.2/24 dev "$if_cli"
cli ip addr add fd00:215::2/64 dev "$if_cli" nodad
srv ip link set lo up
cli ip link set lo up
srv ip link set "$if_srv" up
cli ip link set "$if_cli" up

# --- servers -----------------------------------------------------------------------------------
# dnsmasq: authoritative-style local answers only (no upstream, nothing read from /etc).
ip netns exec "$ns_srv" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
  --bind-interfaces --listen-address=10.215.0.1 --pid-file="$work/dnsmasq.pid" \
  --local=/test/ --local-ttl=300 \
  --host-record=www.example.test,10.215.0.7,fd00:215::7 \
  --host-record=example.test,10.215.0.8 \
  --cname=alias.example.test,www.example.test \
  --cname=chain.example.test,alias.example.test \
  2>"$work/dnsmasq.log" &
pids+=($!)
wait_listen -lun 53

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=www.example.test -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
ip netns exec "$ns_srv" openssl s_server -accept 10.215.0.1:443 -cert "$work/cert.pem" -key "$work/key.pem" \
  -www -quiet >"$work/s_server.log" 2>&1 &
pids+=($!)
wait_listen -ltn 443

# Runs "$@" in the client namespace while tcpdump records the server side into $work/$name.pcap.
capture() {
  local name=$1
  shift
  ip netns exec "$ns_srv" tcpdump -Z root -i "$if_srv" --immediate-mode -U -s 0 -w "$work/$name.pcap" 'udp port 53 or tcp port 443' \
    2>"$work/$name.tcpdump" &
  local tp=$!
  for _ in $(seq 50); do grep -q "listening on" "$work/$name.tcpdump" && break; sleep 0.1; done
  cli "$@" >"$work/$name.out" 2>&1 </dev/null || true
  sleep 0.3  # let the last packets reach the capture
  kill -INT "$tp"
  wait "$tp" || true
}

dns_case() {
  local name=$1
  shift
  capture "$name" dig @10.215.0.1 +tries=1 +time=2 "$@"
  python3 "$here/pcap_extract.py" dns "$work/$name.pcap" "$out/$name" ||
    { cat "$work/$name.out" "$work/$name.tcpdump" "$work/dnsmasq.log" >&2; exit 1; }
}

tls_case() {
  local name=$1
  shift
  capture "$name" "$@"
  python3 "$here/pcap_extract.py" tls "$work/$name.pcap" "$out/$name" >"$work/$name.segs" ||
    { cat "$work/$name.out" "$work/$name.tcpdump" >&2; exit 1; }
  # Keep per-segment files only when the ClientHello really took several segments.
  if [[ $(wc -l <"$work/$name.segs") -le 1 ]]; then
    rm -f "$out/$name".seg*.bin
  else
    cp "$work/$name.segs" "$out/$name.segments.txt"
  fi
}

s_client=(timeout 10 openssl s_client -connect 10.215.0.1:443 -servername www.example.test)

# --- DNS ---------------------------------------------------------------------------------------
dns_case dns_a www.example.test A
dns_case dns_aaaa www.example.test AAAA
dns_case dns_cname chain.example.test A
dns_case dns_nxdomain missing.example.test A
dns_case dns_mixed_case WwW.ExAmPlE.TeSt A

# --- TLS ---------------------------------------------------------------------------------------
tls_case tls_openssl "${s_client[@]}"
tls_case tls_openssl_groups "${s_client[@]}" -groups P-521:X25519:P-256
tls_case tls_openssl_allciphers "${s_client[@]}" -cipher 'ALL:@SECLEVEL=0'
tls_case tls_curl timeout 10 curl -sk --resolve www.example.test:443:10.215.0.1 \
  -o /dev/null https://www.example.test/
# A ClientHello larger than one segment: every cipher (the SNI moves past byte 256) and a
# 1 KiB ffdhe8192 key share (the size of a post-quantum one) make 1.4 KB, sent over a
# 1280-byte MTU (as on a tunnel or VPN). GSO is off on the client veth so the kernel
# hands MSS-sized segments to the wire, as a NIC would: two segments, the SNI in the
# first and the key share spanning both.
cli ip link set "$if_cli" gso_max_segs 1
cli ip link set "$if_cli" mtu 1280
srv ip link set "$if_srv" mtu 1280
tls_case tls_split "${s_client[@]}" -cipher 'ALL:@SECLEVEL=0' -groups ffdhe8192:X25519
# Same with a server MSS of 200 bytes: eight segments, the SNI itself in the second.
srv ip route change 10.215.0.0/24 dev "$if_srv" proto kernel scope link src 10.215.0.1 advmss 200
tls_case tls_mss200 "${s_client[@]}" -cipher 'ALL:@SECLEVEL=0' -groups ffdhe8192:X25519

echo "record.sh: wrote $(ls "$out"/*.bin | wc -l) files to $out"
