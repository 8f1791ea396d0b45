"""IPv4 header (RFC 791), with the receive checks of RFC 1122 3.2.1.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version|  IHL  |Type of Service|          Total Length         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Identification        |Flags|      Fragment Offset    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Time to Live |    Protocol   |         Header Checksum       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       Source Address                          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Destination Address                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.wire import WireError
from shared.wire.checksum import checksum, verify

IPV4_HLEN = 20
DEFAULT_TTL = 64          # net.ipv4.ip_default_ttl
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IP_DF = 0x4000
IP_MF = 0x2000
_OFFMASK = 0x1FFF

_HDR = struct.Struct("!BBHHHBBH4s4s")


@dataclass(slots=True)
class Ipv4Header:
    src: bytes
    dst: bytes
    proto: int
    total_len: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    df: bool = False
    mf: bool = False
    frag_off: int = 0          # in bytes (a multiple of 8)
    options: bytes = b""

    @property
    def hlen(self) -> int:
        return IPV4_HLEN + len(self.options)

    @property
    def is_fragment(self) -> bool:
        return self.mf or self.frag_off != 0


def parse_ipv4(buf: memoryview | bytes) -> tuple[Ipv4Header, memoryview]:
    """Check and parse; the payload is trimmed to the header's total length."""
    n = len(buf)
    if n < IPV4_HLEN:
        raise WireError(f"[IPv4] packet of {n} bytes is shorter than the header")
    vihl, tos, total_len, ident, frag, ttl, proto, _csum, src, dst = _HDR.unpack_from(buf, 0)
    if vihl >> 4 != 4:
        raise WireError(f"[IPv4] version {vihl >> 4}")
    hlen = (vihl & 0xF) * 4
    if hlen < IPV4_HLEN or hlen > n:
        raise WireError(f"[IPv4] header length {hlen} in a {n}-byte packet")
    if total_len < hlen or total_len > n:
        raise WireError(f"[IPv4] total length {total_len} (header {hlen}, packet {n})")
    mv = memoryview(buf)
    if not verify(mv[:hlen]):
        raise WireError("[IPv4] bad header checksum")
    if frag & 0x8000:
        raise WireError("[IPv4] reserved flag set")
    hdr = Ipv4Header(src=src, dst=dst, proto=proto, total_len=total_len, ttl=ttl, tos=tos,
                     ident=ident, df=bool(frag & IP_DF), mf=bool(frag & IP_MF),
                     frag_off=(frag & _OFFMASK) * 8, options=bytes(mv[IPV4_HLEN:hlen]))
    return hdr, mv[hlen:total_len]


def emit_ipv4(hdr: Ipv4Header, buf: bytearray | memoryview, offset: int = 0) -> int:
    """Write the header (checksum included) at ``offset``; returns its length."""
    if len(hdr.options) % 4:
        raise ValueError("IPv4 options must be padded to a multiple of 4 bytes")
    if hdr.frag_off % 8:
        raise ValueError("IPv4 fragment offset must be a multiple of 8")
    hlen = hdr.hlen
    frag = (IP_DF if hdr.df else 0) | (IP_MF if hdr.mf else 0) | (hdr.frag_off // 8)
    _HDR.pack_into(buf, offset, 0x40 | (hlen // 4), hdr.tos, hdr.total_len, hdr.ident, frag,
                   hdr.ttl, hdr.proto, 0, hdr.src, hdr.dst)
    if hdr.options:
        buf[offset + IPV4_HLEN:offset + hlen] = hdr.options
    struct.pack_into("!H", buf, offset + 10, checksum(memoryview(buf)[offset:offset + hlen]))
    return hlen


def ip_aton(text: str) -> bytes:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return bytes(int(p) for p in parts)


def ip_ntoa(addr: bytes) -> str:
    return ".".join(str(b) for b in addr)
