"""IPv4 identification values (RFC 6864, RFC 7739), as Linux's ``ip_idents``.

One global counter lets any host that receives two of our datagrams count what
we sent in between, and lets an off-path attacker predict the ID of the next
fragment to another host. Here the ID comes from one of ``BUCKETS`` counters,
chosen by a keyed hash of (source, destination, protocol) and each started at a
random value, so IDs towards one destination still advance one by one (what
reassembly needs: no reuse within a maximum datagram lifetime) while they say
nothing about traffic to anyone else.
"""

from __future__ import annotations

import os

BUCKETS = 2048


class IpIdents:
    def __init__(self, buckets: int = BUCKETS, seed: bytes | None = None) -> None:
        seed = os.urandom(8 + 2 * buckets) if seed is None else seed
        self.mask = buckets - 1
        assert buckets & self.mask == 0, "buckets must be a power of two"
        self.key = seed[:8]
        start = seed[8:8 + 2 * buckets].ljust(2 * buckets, b"\0")
        self.idents = [int.from_bytes(start[2 * i:2 * i + 2], "big") for i in range(buckets)]

    def reserve(self, src: bytes, dst: bytes, proto: int, segs: int = 1) -> int:
        """The ID of the next datagram from src to dst; ``segs`` IDs are taken
        (a TSO segment is cut into that many datagrams, numbered from it on)."""
        i = self.bucket(src, dst, proto)
        ident = self.idents[i]
        self.idents[i] = (ident + segs) & 0xFFFF
        return ident

    def bucket(self, src: bytes, dst: bytes, proto: int) -> int:
        return hash((self.key, src, dst, proto)) & self.mask
