"""ICMP for IPv4 (RFC 792): echo, and the errors that quote an IP header.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   rest of header: identifier + sequence (echo), unused,       |
    |   or next-hop MTU (fragmentation needed)                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   data: echo payload, or the offending IP header + 8 bytes    |
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.wire import WireError
from shared.wire.checksum import checksum, verify

ICMP_HLEN = 8
ICMP_ECHOREPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO = 8
ICMP_TIME_EXCEEDED = 11
ICMP_PARAMETERPROB = 12
# destination unreachable codes
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_ERRORS = (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED, ICMP_PARAMETERPROB)

_HDR = struct.Struct("!BBHI")


@dataclass(slots=True)
class IcmpHeader:
    type: int
    code: int
    rest: int = 0              # the 32-bit word after the checksum

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF


def parse_icmp(buf: memoryview | bytes) -> tuple[IcmpHeader, memoryview]:
    if len(buf) < ICMP_HLEN:
        raise WireError(f"[ICMP] message of {len(buf)} bytes is shorter than the header")
    if not verify(buf):
        raise WireError("[ICMP] bad checksum")
    type_, code, _csum, rest = _HDR.unpack_from(buf, 0)
    return IcmpHeader(type_, code, rest), memoryview(buf)[ICMP_HLEN:]


def emit_icmp(hdr: IcmpHeader, buf: bytearray | memoryview, offset: int, payload_len: int) -> int:
    """Write the header in front of ``payload_len`` bytes already at ``offset+8``."""
    _HDR.pack_into(buf, offset, hdr.type, hdr.code, 0, hdr.rest)
    csum = checksum(memoryview(buf)[offset:offset + ICMP_HLEN + payload_len])
    struct.pack_into("!H", buf, offset + 2, csum)
    return ICMP_HLEN
