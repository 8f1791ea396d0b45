"""TCP header and options (RFC 9293 3.1; MSS, window scale and timestamps RFC 7323;
SACK RFC 2018).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          Source Port          |       Destination Port        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Acknowledgment Number                      |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Data |       |C|E|U|A|P|R|S|F|                               |
    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           Checksum            |         Urgent Pointer        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Options                    |    Padding    |
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from shared.wire import WireError
from shared.wire.checksum import ones_sum, pseudo_header_sum, pseudo_header_sum6
from shared.wire.ipv4 import IPPROTO_TCP

TCP_HLEN = 20
TCP_CSUM_OFF = 16
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
OPT_EOL, OPT_NOP, OPT_MSS, OPT_WS, OPT_SACK_OK, OPT_SACK, OPT_TS = 0, 1, 2, 3, 4, 5, 8
MAX_WSCALE = 14
_HDR = struct.Struct("!HHIIBBHHH")


@dataclass(slots=True)
class TcpOptions:
    mss: int | None = None
    wscale: int | None = None
    sack_ok: bool = False
    sack: tuple[tuple[int, int], ...] = ()
    ts: tuple[int, int] | None = None       # (TSval, TSecr)


@dataclass(slots=True)
class TcpHeader:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    wnd: int
    urg: int = 0
    opts: TcpOptions = field(default_factory=TcpOptions)


def _parse_options(b: memoryview) -> TcpOptions:
    mss = wscale = ts = None
    sack_ok = False
    sack: list[tuple[int, int]] = []
    i, n = 0, len(b)
    while i < n:
        kind = b[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n or b[i + 1] < 2 or i + b[i + 1] > n:
            raise WireError(f"[TCP] option {kind} has an impossible length")
        ln = b[i + 1]
        body = b[i + 2:i + ln]
        if kind == OPT_MSS and ln == 4:
            mss = int.from_bytes(body, "big")
        elif kind == OPT_WS and ln == 3:
            wscale = min(body[0], MAX_WSCALE)   # RFC 7323 2.3: larger values are taken as 14
        elif kind == OPT_SACK_OK and ln == 2:
            sack_ok = True
        elif kind == OPT_SACK and ln in (10, 18, 26, 34):
            sack = [struct.unpack_from("!II", body, j) for j in range(0, ln - 2, 8)]
        elif kind == OPT_TS and ln == 10:
            ts = struct.unpack_from("!II", body, 0)
        elif kind in (OPT_MSS, OPT_WS, OPT_SACK_OK, OPT_SACK, OPT_TS):
            raise WireError(f"[TCP] option {kind} of length {ln}")
        i += ln
    return TcpOptions(mss, wscale, sack_ok, tuple(sack), ts)


def parse_tcp(buf: memoryview | bytes, src: bytes, dst: bytes, verify: bool = True) -> tuple[TcpHeader, memoryview]:
    """Check length and checksum (over IPv6's pseudo-header for 16-byte ``src`` and
    ``dst``), then parse; ``verify=False`` for frames the kernel flagged as carrying
    a partial checksum."""
    n = len(buf)
    if n < TCP_HLEN:
        raise WireError(f"[TCP] segment of {n} bytes is shorter than the header")
    sport, dport, seq, ack, off, flags, wnd, _csum, urg = _HDR.unpack_from(buf, 0)
    hlen = (off >> 4) * 4
    if hlen < TCP_HLEN or hlen > n:
        raise WireError(f"[TCP] data offset {hlen} in a {n}-byte segment")
    mv = memoryview(buf)
    pseudo = pseudo_header_sum6 if len(src) == 16 else pseudo_header_sum
    if verify and ones_sum(mv, pseudo(src, dst, IPPROTO_TCP, n)) != 0xFFFF:
        raise WireError("[TCP] bad checksum")
    if sport == 0 or dport == 0:
        raise WireError("[TCP] port 0")
    opts = _parse_options(mv[TCP_HLEN:hlen]) if hlen > TCP_HLEN else TcpOptions()
    return TcpHeader(sport, dport, seq, ack, flags, wnd, urg, opts), mv[hlen:]


def options_bytes(o: TcpOptions) -> bytes:
    """Options laid out as Linux does (MSS, SACK-permitted+TS, NOP+WS), padded to 4."""
    out = bytearray()
    if o.mss is not None:
        out += struct.pack("!BBH", OPT_MSS, 4, o.mss)
    if o.sack_ok and o.ts is not None:
        out += struct.pack("!BBBBII", OPT_SACK_OK, 2, OPT_TS, 10, *o.ts)
    else:
        if o.ts is not None:
            out += struct.pack("!BBBBII", OPT_NOP, OPT_NOP, OPT_TS, 10, *o.ts)
        if o.sack_ok:
            out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK_OK, 2)
    if o.wscale is not None:
        out += struct.pack("!BBBB", OPT_NOP, OPT_WS, 3, o.wscale)
    if o.sack:
        blocks = o.sack[:3 if o.ts is not None else 4]
        out += struct.pack("!BBBB", OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks))
        for left, right in blocks:
            out += struct.pack("!II", left, right)
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)
    return bytes(out)


def tcp_hlen(o: TcpOptions) -> int:
    return TCP_HLEN + len(options_bytes(o))


def emit_tcp(hdr: TcpHeader, buf: bytearray | memoryview, offset: int = 0) -> int:
    """Write the header and options with a zero checksum (ip finishes it)."""
    opts = options_bytes(hdr.opts)
    hlen = TCP_HLEN + len(opts)
    _HDR.pack_into(buf, offset, hdr.sport, hdr.dport, hdr.seq & 0xFFFFFFFF, hdr.ack & 0xFFFFFFFF,
                   (hlen // 4) << 4, hdr.flags, hdr.wnd, 0, hdr.urg)
    buf[offset + TCP_HLEN:offset + hlen] = opts
    return hlen
