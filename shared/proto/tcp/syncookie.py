"""SYN cookies (RFC 4987 3.6, as Linux's net.ipv4.tcp_syncookies = 1).

When a listener's queue of half-open connections is full, its SYN-ACK keeps
nothing: the connection's state rides in the initial sequence number,

    ISN = t (5 bits) | MSS index (3 bits) | keyed hash (24 bits)

with t the 64-second period (two periods are accepted), the hash over the
secret, the 4-tuple, the peer's ISN, t and the MSS index. With timestamps the SYN-ACK's
TSval also carries the peer's window scale (4 bits), SACK permission (1 bit)
and a marker bit in its low 6 bits, as Linux does; without timestamps the
SYN-ACK offers neither window scaling nor SACK. The ACK completing the
handshake is checked against the hash and rebuilds the SYN the peer sent.
Pure: time and the secret are passed in.
"""

from __future__ import annotations

import hashlib
import struct

from shared.proto.tcp import seq as S
from shared.wire.tcp import SYN, TcpOptions

MSS_TABLE = (536, 1200, 1300, 1400, 1440, 1452, 1460, 8960)    # the peer's MSS, rounded down
PERIOD = 64.0                      # seconds a cookie's time counter stands for
TS_BITS = 6                        # low bits of our TSval: wscale (4), sack (1), marker (1)
_NO_WSCALE = 0xF
_TUPLE = struct.Struct("!IHIHII")
_TUPLE6 = struct.Struct("!HHII")


def _tuple(laddr: int | bytes, lport: int, raddr: int | bytes, rport: int, irs: int, t: int) -> bytes:
    """The hashed input: IPv4 addresses as ints, IPv6 ones as their 16 bytes."""
    if type(laddr) is bytes:
        return laddr + raddr + _TUPLE6.pack(lport, rport, irs, t)   # type: ignore[operator]
    return _TUPLE.pack(laddr, lport, raddr, rport, irs, t)


def _hash(secret: bytes, laddr: int | bytes, lport: int, raddr: int | bytes, rport: int, irs: int, t: int) -> int:
    h = hashlib.blake2s(_tuple(laddr, lport, raddr, rport, irs, t), key=secret, digest_size=3)
    return int.from_bytes(h.digest(), "big")


def ts_offset(secret: bytes, laddr: int, lport: int, raddr: int, rport: int) -> int:
    """A cookie connection's timestamp offset: unpredictable, and the same again
    when its ACK arrives (there is nowhere else to keep it)."""
    h = hashlib.blake2s(_tuple(laddr, lport, raddr, rport, 0, 0), key=secret, digest_size=4, person=b"tsoff")
    return int.from_bytes(h.digest(), "big")


def counter(now: float) -> int:
    return int(now // PERIOD) & 0x1F


def make(secret: bytes, laddr: int, lport: int, raddr: int, rport: int, syn_seq: int, mss: int | None,
         now: float) -> int:
    """The ISN of a cookie SYN-ACK answering a SYN with sequence number ``syn_seq``."""
    m = max((i for i, v in enumerate(MSS_TABLE) if v <= (mss or 536)), default=0)
    t = counter(now)
    return (t << 27) | (m << 24) | _hash(secret, laddr, lport, raddr, rport, syn_seq, (t << 3) | m)


def check(secret: bytes, laddr: int, lport: int, raddr: int, rport: int, seq: int, ack: int,
          now: float) -> int | None:
    """The peer's MSS if ``ack`` - 1 is a cookie we made for this 4-tuple and the SYN
    one before ``seq``, in this period or the one before; else None."""
    cookie = S.add(ack, -1)
    t, m = cookie >> 27, (cookie >> 24) & 7
    if t not in (counter(now), (counter(now) - 1) & 0x1F):
        return None
    if cookie & 0xFFFFFF != _hash(secret, laddr, lport, raddr, rport, S.add(seq, -1), (t << 3) | m):
        return None
    return MSS_TABLE[m]


def ts_bits(syn_opts: TcpOptions) -> int:
    """What of the SYN's options the SYN-ACK's TSval keeps."""
    w = _NO_WSCALE if syn_opts.wscale is None else min(syn_opts.wscale, 14)
    return (w << 2) | (2 if syn_opts.sack_ok else 0) | 1


def mark_tsval(tsval: int, syn_opts: TcpOptions) -> int:
    """Our SYN-ACK's TSval with ``ts_bits`` in its low bits, never ahead of our clock."""
    marked = (tsval & ~((1 << TS_BITS) - 1)) | ts_bits(syn_opts)
    return S.add(marked, -(1 << TS_BITS)) if S.gt(marked, tsval) else marked


def synack_options(syn_opts: TcpOptions) -> TcpOptions:
    """The SYN as a cookie SYN-ACK may answer it: without timestamps there is
    nowhere to keep window scale and SACK, so they are not offered."""
    if syn_opts.ts is not None:
        return syn_opts
    return TcpOptions(mss=syn_opts.mss)


def rebuild_syn(seq: int, mss: int, ack_opts: TcpOptions) -> tuple[int, int, TcpOptions]:
    """(seq, flags, options) of the SYN a valid cookie ACK answers, from the MSS
    the cookie kept and the option bits our TSval echoed back (TSecr)."""
    if ack_opts.ts is None:
        return S.add(seq, -1), SYN, TcpOptions(mss=mss)
    bits = ack_opts.ts[1] & ((1 << TS_BITS) - 1)
    if not bits & 1:                 # our SYN-ACK had no option bits: take no options
        return S.add(seq, -1), SYN, TcpOptions(mss=mss)
    w = bits >> 2
    return S.add(seq, -1), SYN, TcpOptions(mss=mss, wscale=None if w == _NO_WSCALE else w,
                                           sack_ok=bool(bits & 2), ts=(ack_opts.ts[0], 0))
