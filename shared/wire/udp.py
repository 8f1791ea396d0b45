"""UDP header (RFC 768).

     0      7 8     15 16    23 24    31
    +--------+--------+--------+--------+
    |   source port   | destination port|
    +--------+--------+--------+--------+
    |     length      |    checksum     |
    +--------+--------+--------+--------+
    |          data octets ...
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.wire import WireError
from shared.wire.checksum import ones_sum, pseudo_header_sum, pseudo_header_sum6
from shared.wire.ipv4 import IPPROTO_UDP

UDP_HLEN = 8
UDP_CSUM_OFF = 6
_HDR = struct.Struct("!HHHH")


@dataclass(slots=True)
class UdpHeader:
    sport: int
    dport: int
    length: int
    csum: int = 0


def parse_udp(buf: memoryview | bytes, src: bytes, dst: bytes, verify: bool = True) -> tuple[UdpHeader, memoryview]:
    """Check length and checksum (RFC 1122 4.1.3.4: a zero checksum means none, over
    IPv4; over IPv6, 16-byte ``src`` and ``dst``, it is required, RFC 8200 8.1);
    ``verify=False`` for datagrams the kernel flagged as carrying a partial checksum."""
    n = len(buf)
    if n < UDP_HLEN:
        raise WireError(f"[UDP] datagram of {n} bytes is shorter than the header")
    sport, dport, length, csum = _HDR.unpack_from(buf, 0)
    if length < UDP_HLEN or length > n:
        raise WireError(f"[UDP] length field {length} in a {n}-byte datagram")
    mv = memoryview(buf)[:length]
    if len(src) == 16:
        if csum == 0:
            raise WireError("[UDP] zero checksum over IPv6")
        if verify and ones_sum(mv, pseudo_header_sum6(src, dst, IPPROTO_UDP, length)) != 0xFFFF:
            raise WireError("[UDP] bad checksum")
    elif verify and csum and ones_sum(mv, pseudo_header_sum(src, dst, IPPROTO_UDP, length)) != 0xFFFF:
        raise WireError("[UDP] bad checksum")
    if dport == 0:
        raise WireError("[UDP] destination port 0")
    return UdpHeader(sport, dport, length, csum), mv[UDP_HLEN:]


def emit_udp(hdr: UdpHeader, buf: bytearray | memoryview, offset: int = 0) -> int:
    """Write the header with a zero checksum (ip finishes it: CSUM_PARTIAL)."""
    _HDR.pack_into(buf, offset, hdr.sport, hdr.dport, hdr.length, 0)
    return UDP_HLEN
