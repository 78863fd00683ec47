#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Writes the fuzz_reassembler seeds (input format: fuzz/fuzz_checks.h checkReassembler)
from the recorded ClientHello segments in tests/inspect/data."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(here, "..", "..", "tests", "inspect", "data")
out = os.path.join(here, "reassembler")


def seg(name, i):
    with open(os.path.join(data, "%s.seg%d.bin" % (name, i)), "rb") as f:
        return f.read()


def add(key, delta, payload):
    return bytes([0, key]) + struct.pack(">hH", delta, len(payload)) + payload


def op(code, key, delta=None):
    b = bytes([code, key])
    return b + struct.pack(">h", delta) if delta is not None else b


mss = [seg("tls_mss200", i) for i in range(1, 9)]
offs = [0]
for s in mss[:-1]:
    offs.append(offs[-1] + len(s))
split = [seg("tls_split", 1), seg("tls_split", 2)]

seeds = {
    # In order, a modelled key (start declared) and a key that finds its own start.
    "mss200_in_order": b"".join(add(0, o, s) for o, s in zip(offs, mss)),
    "mss200_self_start": b"".join(add(9, o, s) for o, s in zip(offs, mss)),
    # Out of order, retransmitted, then finished and erased.
    "mss200_shuffled": b"".join(add(1, offs[i], mss[i]) for i in (2, 0, 1, 1, 4, 3))
    + op(4, 1) + add(1, offs[5], mss[5]) + op(5, 1) + add(1, 0, mss[0]),
    # Without a declared start, the second segment first; startAt afterwards.
    "mss200_late_start": add(10, offs[1], mss[1]) + add(10, 0, mss[0]) + op(3, 10, -1)
    + add(11, offs[1], mss[1]) + op(3, 11, 0) + add(11, 0, mss[0]),
    # The two-segment capture across the sequence wrap (base 0xFFFFFF00).
    "split_two": add(2, 0, split[0][:1020]) + add(2, 1020, split[0][1020:]) + add(2, 1228, split[1]),
    # Overlaps and a segment before the start.
    "overlap": add(3, -10, b"x" * 20) + add(3, 5, b"y" * 30) + add(3, 0, b"z" * 8),
}
os.makedirs(out, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(blob)
print("wrote %d seeds to %s" % (len(seeds), out))
