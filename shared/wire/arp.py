"""ARP for IPv4 over Ethernet (RFC 826).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     hardware type (1)         |     protocol type (0x0800)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  hlen (6)     |  plen (4)     |          operation            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  sender hardware address (6) | sender protocol address (4)    |
    |  target hardware address (6) | target protocol address (4)    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.wire import WireError

ARP_LEN = 28
ARPOP_REQUEST = 1
ARPOP_REPLY = 2
_HTYPE_ETHER = 1
_PTYPE_IP = 0x0800

_HDR = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(slots=True)
class ArpPacket:
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


def parse_arp(buf: memoryview | bytes) -> ArpPacket:
    if len(buf) < ARP_LEN:
        raise WireError(f"[ARP] packet of {len(buf)} bytes is shorter than {ARP_LEN}")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _HDR.unpack_from(buf, 0)
    if htype != _HTYPE_ETHER or ptype != _PTYPE_IP or hlen != 6 or plen != 4:
        raise WireError(f"[ARP] unsupported hardware/protocol {htype}/{ptype:#06x} ({hlen}/{plen})")
    if op not in (ARPOP_REQUEST, ARPOP_REPLY):
        raise WireError(f"[ARP] unknown operation {op}")
    if sha[0] & 1:
        raise WireError("[ARP] sender hardware address is multicast")
    return ArpPacket(op, sha, spa, tha, tpa)


def emit_arp(pkt: ArpPacket, buf: bytearray | memoryview, offset: int = 0) -> int:
    _HDR.pack_into(buf, offset, _HTYPE_ETHER, _PTYPE_IP, 6, 4, pkt.op,
                   pkt.sha, pkt.spa, pkt.tha, pkt.tpa)
    return ARP_LEN
