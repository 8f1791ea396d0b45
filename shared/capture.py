"""Packet capture output: the pcap file format and one-line summaries.

netdev publishes each tapped frame as ``[ifindex, direction, time, frame]``
(msgpack) on its capture endpoint; ``launcher.py capture`` turns them into a
pcap file (the classic libpcap format, which tshark, tcpdump and Wireshark
read) or into one line per packet in the manner of ``tcpdump -n``. Summaries
read headers leniently (no checksum checks): a capture shows what was on the
wire, broken frames included.
"""

from __future__ import annotations

import socket
import struct
from typing import BinaryIO

PCAP_MAGIC = 0xA1B2C3D4          # microsecond timestamps
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144
RX, TX = 0, 1                    # direction field of a published frame
_TCP_FLAGS = "FSRPAUEC"


class PcapWriter:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        f.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))

    def write(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        usec = min(999999, int(round((ts - sec) * 1e6)))
        data = frame[:SNAPLEN]
        self.f.write(struct.pack("<IIII", sec, usec, len(data), len(frame)) + data)


def summary(frame: bytes) -> str:
    """``tcpdump -n``-like description of an Ethernet frame."""
    if len(frame) < 14:
        return f"truncated frame, length {len(frame)}"
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0806:
        return _arp(frame[14:])
    if ethertype == 0x86DD:
        return _ipv6(frame[14:])
    if ethertype != 0x0800:
        return f"ethertype {ethertype:#06x}, length {len(frame)}"
    return _ipv4(frame[14:])


def _arp(p: bytes) -> str:
    if len(p) < 28:
        return "ARP, truncated"
    op = struct.unpack_from("!H", p, 6)[0]
    spa, tpa = socket.inet_ntoa(p[14:18]), socket.inet_ntoa(p[24:28])
    if op == 1:
        return f"ARP, Request who-has {tpa} tell {spa}"
    if op == 2:
        return f"ARP, Reply {spa} is-at {p[8:14].hex(':')}"
    return f"ARP, op {op}"


def _ipv4(p: bytes) -> str:
    if len(p) < 20 or p[0] >> 4 != 4:
        return f"IP, bad header, length {len(p)}"
    hlen, total, proto, ttl = (p[0] & 0xF) * 4, struct.unpack_from("!H", p, 2)[0], p[9], p[8]
    src, dst = socket.inet_ntoa(p[12:16]), socket.inet_ntoa(p[16:20])
    frag = struct.unpack_from("!H", p, 6)[0]
    body = p[hlen:total]
    if frag & 0x1FFF:
        return f"IP {src} > {dst}: fragment offset {(frag & 0x1FFF) * 8}, proto {proto}, length {len(body)}"
    if proto == 6 and len(body) >= 20:
        sport, dport, seq, ack, off, flags, wnd = struct.unpack_from("!HHIIBBH", body)
        names = "".join(c for i, c in enumerate(_TCP_FLAGS) if flags >> i & 1) or "none"
        data = len(body) - (off >> 4) * 4
        return (f"IP {src}.{sport} > {dst}.{dport}: Flags [{names}], seq {seq}, ack {ack}, win {wnd}, "
                f"length {data}")
    if proto == 17 and len(body) >= 8:
        sport, dport, length = struct.unpack_from("!HHH", body)
        return f"IP {src}.{sport} > {dst}.{dport}: UDP, length {length - 8}"
    if proto == 1 and len(body) >= 8:
        kind = {0: "echo reply", 3: "destination unreachable", 8: "echo request", 11: "time exceeded"}
        what = kind.get(body[0], f"type {body[0]}")
        return f"IP {src} > {dst}: ICMP {what}, code {body[1]}, ttl {ttl}, length {len(body)}"
    return f"IP {src} > {dst}: proto {proto}, length {len(body)}"


_ICMP6 = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem",
          128: "echo request", 129: "echo reply", 133: "router solicitation", 134: "router advertisement",
          135: "neighbor solicitation", 136: "neighbor advertisement", 143: "multicast listener report v2"}


def _ipv6(p: bytes) -> str:
    if len(p) < 40 or p[0] >> 4 != 6:
        return f"IP6, bad header, length {len(p)}"
    src, dst = socket.inet_ntop(socket.AF_INET6, p[8:24]), socket.inet_ntop(socket.AF_INET6, p[24:40])
    nxt, body = p[6], p[40:40 + struct.unpack_from("!H", p, 4)[0]]
    ext = []
    while nxt in (0, 43, 44, 60) and len(body) >= 8:     # hop-by-hop, routing, fragment, destination options
        if nxt == 44:
            off = struct.unpack_from("!H", body, 2)[0] & 0xFFF8
            ext.append(f"frag offset {off}{'+' if body[3] & 1 else ''}")
            nxt, body = body[0], body[8:]
            if off:
                return f"IP6 {src} > {dst}: {', '.join(ext)}, length {len(body)}"
            continue
        ext.append({0: "HBH", 43: "routing", 60: "dstopts"}[nxt])
        nxt, body = body[0], body[(body[1] + 1) * 8:]
    head = f"IP6 {src} > {dst}: " + "".join(f"{e}, " for e in ext)
    if nxt == 58 and len(body) >= 4:
        what = _ICMP6.get(body[0], f"type {body[0]}")
        if body[0] in (135, 136) and len(body) >= 24:
            what += f", target {socket.inet_ntop(socket.AF_INET6, body[8:24])}"
        return head + f"ICMP6 {what}, hop limit {p[7]}, length {len(body)}"
    if nxt in (6, 17) and len(body) >= 8:
        sport, dport = struct.unpack_from("!HH", body)
        return head + f"{'TCP' if nxt == 6 else 'UDP'} {sport} > {dport}, length {len(body)}"
    return head + f"next header {nxt}, length {len(body)}"
