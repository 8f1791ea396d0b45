"""IP fragment reassembly (RFC 791, RFC 8200 4.5; hole bookkeeping after RFC 815).

Fragments are kept per key (IPv4: src, dst, proto, id; IPv6: src, dst, id) until the holes are filled.
An exact duplicate is ignored; a partial overlap discards the whole datagram
(as Linux has done since 2018: overlaps are how evasion attacks are built).
Queues expire after ``timeout`` and the bytes held are capped at
``high_thresh``: past it the oldest queues are evicted (ipfrag_high_thresh).
Items are opaque (the ip service passes skbs); evicted ones are returned so
the caller can free them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

MAX_DATAGRAM = 65535


@dataclass(slots=True)
class FragQueue:
    key: tuple
    created: float
    frags: list[tuple[int, int, Any]] = field(default_factory=list)   # (start, end, item), sorted
    total: int | None = None          # payload length, known once the last fragment arrived
    nbytes: int = 0

    def complete(self) -> bool:
        if self.total is None:
            return False
        pos = 0
        for start, end, _ in self.frags:
            if start > pos:
                return False
            pos = max(pos, end)
        return pos >= self.total


@dataclass(frozen=True, slots=True)
class Complete:
    """All fragments are here: ``frags`` is [(offset, item)] in order; ``total`` bytes of payload."""
    key: tuple
    frags: list[tuple[int, Any]]
    total: int


@dataclass(frozen=True, slots=True)
class Discard:
    """Fragments thrown away (overlap, bad length, timeout, memory); ``first`` is
    the offset-0 fragment if it was among them (for ICMP time exceeded)."""
    key: tuple
    items: list[Any]
    reason: str
    first: Any = None


class Reassembler:
    def __init__(self, timeout: float = 30.0, high_thresh: int = 4 << 20, max_queues: int = 1024,
                 max_payload: int = MAX_DATAGRAM - 20) -> None:
        self.timeout = timeout
        self.max_payload = max_payload      # IPv4: 65535 less the header; IPv6: the payload length field's 65535
        self.high_thresh = high_thresh
        self.max_queues = max_queues
        self.queues: collections.OrderedDict[tuple, FragQueue] = collections.OrderedDict()
        self.mem = 0

    def add(self, key: tuple, offset: int, length: int, more: bool, item: Any, now: float,
            cost: int | None = None) -> list[Complete | Discard]:
        """One fragment: ``length`` payload bytes at ``offset``; ``cost`` is what it
        holds in memory (defaults to ``length``)."""
        out: list[Complete | Discard] = []
        end = offset + length
        q = self.queues.get(key)
        if q is None:
            q = FragQueue(key, now)
            self.queues[key] = q
        bad = None
        if end > self.max_payload or (more and length % 8) or length == 0 and more:
            bad = "bad fragment length"
        elif not more and (q.total is not None and q.total != end or any(e > end for _, e, _ in q.frags)):
            bad = "conflicting last fragment"
        elif more and q.total is not None and end > q.total:
            bad = "fragment beyond the end"
        if bad is None:
            for s, e, _ in q.frags:
                if (s, e) == (offset, end):
                    return [Discard(key, [item], "duplicate")]  # the queue itself is fine
                if s < end and offset < e:
                    bad = "overlapping fragment"
                    break
        if bad is not None:
            out.append(self._drop(q, bad, extra=item))
            return out
        q.frags.append((offset, end, item))
        q.frags.sort(key=lambda f: f[0])
        if not more:
            q.total = end
        c = length if cost is None else cost
        q.nbytes += c
        self.mem += c
        if q.complete():
            del self.queues[key]
            self.mem -= q.nbytes
            out.append(Complete(key, [(s, it) for s, _, it in q.frags], q.total or 0))
        out.extend(self._evict(keep=key))
        return out

    def _drop(self, q: FragQueue, reason: str, extra: Any = None) -> Discard:
        self.queues.pop(q.key, None)
        self.mem -= q.nbytes
        first = next((it for s, _, it in q.frags if s == 0), None)
        items = [it for _, _, it in q.frags] + ([extra] if extra is not None else [])
        return Discard(q.key, items, reason, first)

    def _evict(self, keep: tuple) -> list[Discard]:
        out = []
        while (self.mem > self.high_thresh or len(self.queues) > self.max_queues) and self.queues:
            key = next(iter(self.queues))
            if key == keep and len(self.queues) == 1:
                out.append(self._drop(self.queues[key], "memory limit"))
                break
            if key == keep:
                self.queues.move_to_end(key)
                continue
            out.append(self._drop(self.queues[key], "memory limit"))
        return out

    def poll(self, now: float) -> list[Discard]:
        """Expire queues older than the timeout (oldest first)."""
        out = []
        while self.queues:
            q = next(iter(self.queues.values()))
            if now - q.created < self.timeout:
                break
            out.append(self._drop(q, "timeout"))
        return out

    def poll_at(self) -> float | None:
        if not self.queues:
            return None
        return next(iter(self.queues.values())).created + self.timeout
