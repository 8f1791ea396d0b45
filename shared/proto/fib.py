"""Forwarding information base: longest-prefix-match routes plus a route cache
invalidated on every change, as the Linux 2.6 design did (RFC 1812 5.2.4.3).
One class for both families: ``Fib(bits=128)`` holds IPv6 routes."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.Enum):
    LINK = "link"           # on-link: the destination is the next hop
    UNIVERSE = "global"     # via a gateway


@dataclass(frozen=True, slots=True)
class FibRoute:
    dst: int                # network address as an int
    plen: int
    ifindex: int
    gateway: bytes | None   # None: on-link
    src: bytes              # preferred source address
    metric: int = 0

    @property
    def scope(self) -> Scope:
        return Scope.LINK if self.gateway is None else Scope.UNIVERSE

    def next_hop(self, daddr: bytes) -> bytes:
        return daddr if self.gateway is None else self.gateway


def _mask(plen: int, bits: int = 32) -> int:
    full = (1 << bits) - 1
    return (full << (bits - plen)) & full if plen else 0


class Fib:
    def __init__(self, bits: int = 32) -> None:
        self.bits = bits
        self._by_plen: dict[int, dict[int, list[FibRoute]]] = {}
        self._cache: dict[bytes, FibRoute | None] = {}
        self.generation = 0

    def add(self, route: FibRoute) -> None:
        if not 0 <= route.plen <= self.bits or route.dst & ~_mask(route.plen, self.bits) & ((1 << self.bits) - 1):
            raise ValueError("route destination has host bits set")
        bucket = self._by_plen.setdefault(route.plen, {}).setdefault(route.dst, [])
        if any(r.ifindex == route.ifindex and r.gateway == route.gateway for r in bucket):
            raise FileExistsError("route exists")
        bucket.append(route)
        bucket.sort(key=lambda r: r.metric)
        self._invalidate()

    def delete(self, dst: int, plen: int, ifindex: int | None = None) -> FibRoute:
        bucket = self._by_plen.get(plen, {}).get(dst, [])
        for r in bucket:
            if ifindex is None or r.ifindex == ifindex:
                bucket.remove(r)
                if not bucket:
                    del self._by_plen[plen][dst]
                self._invalidate()
                return r
        raise LookupError("no such route")

    def _invalidate(self) -> None:
        self._cache.clear()
        self.generation += 1

    def lookup(self, daddr: bytes) -> FibRoute | None:
        """Longest prefix match, then lowest metric; cached per destination."""
        try:
            return self._cache[daddr]
        except KeyError:
            pass
        ip = int.from_bytes(daddr, "big")
        found = None
        for plen in sorted(self._by_plen, reverse=True):
            bucket = self._by_plen[plen].get(ip & _mask(plen, self.bits))
            if bucket:
                found = bucket[0]
                break
        if len(self._cache) > 4096:
            self._cache.clear()  # bounded: a scan of many addresses must not grow memory
        self._cache[daddr] = found
        return found

    def routes(self) -> list[FibRoute]:
        out = [r for plen in self._by_plen.values() for b in plen.values() for r in b]
        return sorted(out, key=lambda r: (-r.plen, r.dst, r.metric))
