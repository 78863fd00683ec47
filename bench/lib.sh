# SPDX-License-Identifier: MIT OR Apache-2.0
# Shared by the root benchmarks (sourced, not run).

# make_test_link OCTET NAME: picks a /24 in 10.OCTET.0.0/16 that no interface
# uses yet, creates namespace $ns and the veth pair $host_if (here) /
# $peer_if (in $ns) with .1 and .2 on them, and a permanent neighbour entry
# (no ARP queue that could drop the first packets of a flood). Sets
# subnet, host_ip and peer_ip. The caller's EXIT trap removes $host_if and $ns.
make_test_link() {
  local octet=$1 name=$2 i n peer_mac
  subnet=
  for i in $(seq 0 254); do
    n=$((($$ + i) % 254 + 1))
    if ! ip -4 -o addr show | grep -q " 10\.$octet\.$n\."; then
      subnet=10.$octet.$n
      break
    fi
  done
  [[ -n $subnet ]] || { echo "$name: no free /24 in 10.$octet.0.0/16" >&2; exit 1; }
  host_ip=$subnet.1
  peer_ip=$subnet.2

  ip netns add "$ns"
  ip link add "$host_if" type veth peer name "$peer_if" netns "$ns"
  ip addr add "$host_ip/24" dev "$host_if"
  ip link set "$host_if" up
  ip -n "$ns" addr add "$peer_ip/24" dev "$peer_if"
  ip -n "$ns" link set "$peer_if" up
  ip -n "$ns" link set lo up
  peer_mac=$(ip -n "$ns" -o link show "$peer_if" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
  ip neigh replace "$peer_ip" lladdr "$peer_mac" dev "$host_if" nud permanent
}

# teardown_test_run RC PID...: the end of a run, also after a failure or Ctrl-C.
# Stops the given processes (only those, by PID), removes $host_if (its peer goes
# with it) and $ns, shows the tail of $tmp/agent.log if RC is not 0, removes $tmp.
teardown_test_run() {
  local rc=$1 pid
  shift
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  ip link del "$host_if" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  if [[ $rc -ne 0 && -s $tmp/agent.log ]]; then
    echo "--- agent log ---" >&2
    tail -n 20 "$tmp/agent.log" >&2
  fi
  rm -rf "$tmp"
}
