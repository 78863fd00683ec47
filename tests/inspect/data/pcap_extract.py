#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Pulls payload bytes out of a tcpdump -w capture (Ethernet or Linux cooked, IPv4/IPv6).

  pcap_extract.py dns PCAP OUT_PREFIX
      writes OUT_PREFIX.query.bin and OUT_PREFIX.response.bin: the first UDP datagram to
      port 53 and the first UDP datagram from port 53 (their DNS payloads, unmodified).
  pcap_extract.py tls PCAP OUT_PREFIX
      writes OUT_PREFIX.bin: the client->server payload of the first TCP connection to
      port 443 sent before the server's first payload byte (the ClientHello flight), in
      sequence order, retransmissions dropped; and OUT_PREFIX.segN.bin for each distinct
      segment (N from 1), printing "segN seq_offset length" lines (offset from the first
      payload byte).

Standard library only; used by record.sh.
"""
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        end = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        end = ">"
    else:
        raise SystemExit("not a pcap file: " + path)
    linktype = struct.unpack(end + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet
            etype = struct.unpack("!H", frame[12:14])[0]
            l3 = frame[14:]
            while etype in (0x8100, 0x88A8):
                etype = struct.unpack("!H", l3[2:4])[0]
                l3 = l3[4:]
        elif linktype == 113:  # Linux cooked v1
            etype = struct.unpack("!H", frame[14:16])[0]
            l3 = frame[16:]
        else:
            raise SystemExit("unsupported link type %d" % linktype)
        if etype == 0x0800:
            ihl = (l3[0] & 0x0F) * 4
            total = struct.unpack("!H", l3[2:4])[0]
            proto = l3[9]
            src, dst = l3[12:16], l3[16:20]
            l4 = l3[ihl:total]
        elif etype == 0x86DD:
            plen = struct.unpack("!H", l3[4:6])[0]
            proto = l3[6]
            src, dst = l3[8:24], l3[24:40]
            l4 = l3[40:40 + plen]
        else:
            continue
        yield proto, src, dst, l4


def dns(path, prefix):
    query = response = None
    for proto, _, _, l4 in packets(path):
        if proto != 17:
            continue
        sport, dport = struct.unpack("!HH", l4[:4])
        payload = l4[8:]
        if dport == 53 and query is None:
            query = payload
        elif sport == 53 and response is None:
            response = payload
    if query is None or response is None:
        raise SystemExit("no DNS query/response pair in " + path)
    with open(prefix + ".query.bin", "wb") as f:
        f.write(query)
    with open(prefix + ".response.bin", "wb") as f:
        f.write(response)


def tls(path, prefix):
    client = None  # (src, sport, dst)
    segs = {}
    for proto, src, dst, l4 in packets(path):
        if proto != 6:
            continue
        sport, dport, seq = struct.unpack("!HHI", l4[:8])
        doff = (l4[12] >> 4) * 4
        payload = l4[doff:]
        if client is None and dport == 443:
            client = (src, sport, dst)
        if client is None:
            continue
        if (dst, dport) == (client[0], client[1]) and payload:
            break  # the server answered: the client's first flight is complete
        if (src, sport, dst) == client and dport == 443 and payload:
            segs.setdefault(seq, payload)
    if not segs:
        raise SystemExit("no client payload to port 443 in " + path)
    base = min(segs)
    stream = b""
    n = 0
    for seq in sorted(segs):
        rel = (seq - base) & 0xFFFFFFFF
        if rel < len(stream):
            continue  # retransmission of bytes already taken
        if rel > len(stream):
            raise SystemExit("hole in the client stream at offset %d" % len(stream))
        n += 1
        with open("%s.seg%d.bin" % (prefix, n), "wb") as f:
            f.write(segs[seq])
        print("seg%d %d %d" % (n, rel, len(segs[seq])))
        stream += segs[seq]
    with open(prefix + ".bin", "wb") as f:
        f.write(stream)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("dns", "tls"):
        raise SystemExit(__doc__)
    {"dns": dns, "tls": tls}[sys.argv[1]](sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
