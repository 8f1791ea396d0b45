"""The IPv4 neighbour table (ARP cache) as a sans-IO engine (RFC 826, RFC 1122 2.3.2).

States follow Linux's NUD machine, reduced to what ARP on one link needs:
INCOMPLETE (soliciting, packets queued), REACHABLE (confirmed recently),
STALE (usable, re-confirmed by a unicast probe when used), FAILED (gone).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class NudState(enum.Enum):
    INCOMPLETE = "incomplete"
    REACHABLE = "reachable"
    STALE = "stale"
    PROBE = "probe"


@dataclass(slots=True)
class NeighEntry:
    ifindex: int
    ip: bytes
    state: NudState
    mac: bytes | None = None
    confirmed: float = 0.0        # last time the peer proved it is there
    used: float = 0.0
    probes: int = 0
    next_probe: float = 0.0
    queue: list[Any] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Solicit:
    """Send an ARP request for ``ip`` on ``ifindex`` (unicast to ``mac`` if set)."""
    ifindex: int
    ip: bytes
    mac: bytes | None


@dataclass(frozen=True, slots=True)
class Unresolved:
    """Resolution of ``ip`` failed; ``items`` were waiting for it."""
    ifindex: int
    ip: bytes
    items: list[Any]


@dataclass(frozen=True, slots=True)
class Overflow:
    """``item`` was pushed out of a full pending queue (unres_qlen)."""
    item: Any


@dataclass(frozen=True, slots=True)
class Evicted:
    """The table was full (gc_thresh3): the least recently used entry went to make room,
    and ``items`` queued for it are dropped (Linux's forced GC takes unresolved ones too,
    so hosts that never answer cannot keep a real neighbour out)."""
    ip: bytes
    items: list[Any]


Action = Solicit | Unresolved | Overflow | Evicted


class NeighTable:
    def __init__(self, reachable_time: float = 30.0, retrans_time: float = 1.0,
                 mcast_solicit: int = 3, unres_qlen: int = 101,
                 gc_stale_time: float = 60.0, gc_thresh3: int = 1024, unres_total: int = 512) -> None:
        self.reachable_time = reachable_time
        self.retrans_time = retrans_time
        self.mcast_solicit = mcast_solicit
        self.unres_qlen = unres_qlen
        self.gc_stale_time = gc_stale_time
        self.gc_thresh3 = gc_thresh3      # entries at most (Linux's hard limit of the name)
        # packets queued for resolution over all entries: they hold slots of a fixed slab (the
        # kernel's come from memory at large), so hosts that never answer cannot pin it all
        self.unres_total = unres_total
        self.queued = 0
        self.evicted: list[Action] = []   # made room for a neighbour that announced itself (update)
        self.entries: dict[tuple[int, bytes], NeighEntry] = {}

    def resolve(self, ifindex: int, ip: bytes, item: Any, now: float) -> tuple[bytes | None, list[Action]]:
        """The MAC to send ``item`` to, or None with ``item`` queued until resolved."""
        e = self.entries.get((ifindex, ip))
        if e is None:
            room = self._forced_gc()
            e = NeighEntry(ifindex, ip, NudState.INCOMPLETE, probes=1, next_probe=now + self.retrans_time)
            self.entries[(ifindex, ip)] = e
            e.used = now
            return None, [*room, Solicit(ifindex, ip, None), *self._enqueue(e, item)]
        e.used = now
        if e.state is NudState.INCOMPLETE:
            return None, self._enqueue(e, item)
        actions: list[Action] = []
        if e.state is NudState.REACHABLE and now - e.confirmed > self.reachable_time:
            e.state = NudState.STALE
        if e.state is NudState.STALE:
            # in use again: confirm with a unicast probe, keep sending meanwhile
            e.state = NudState.PROBE
            e.probes = 1
            e.next_probe = now + self.retrans_time
            actions.append(Solicit(ifindex, ip, e.mac))
        return e.mac, actions

    def _enqueue(self, e: NeighEntry, item: Any) -> list[Action]:
        if self.queued >= self.unres_total:
            return [Overflow(item)]
        e.queue.append(item)
        if len(e.queue) > self.unres_qlen:
            return [Overflow(e.queue.pop(0))]
        self.queued += 1
        return []

    def _take_queue(self, e: NeighEntry) -> list[Any]:
        items, e.queue = e.queue, []
        self.queued -= len(items)
        return items

    def _forced_gc(self) -> list[Action]:
        """Room for one more entry when the table holds gc_thresh3: the least recently
        used one goes, whatever its state (neigh_forced_gc)."""
        if len(self.entries) < self.gc_thresh3:
            return []
        key = min(self.entries, key=lambda k: max(self.entries[k].used, self.entries[k].confirmed))
        e = self.entries.pop(key)
        return [Evicted(e.ip, self._take_queue(e))]

    def update(self, ifindex: int, ip: bytes, mac: bytes, now: float, create: bool) -> list[Any]:
        """An ARP packet from ``ip`` says it is at ``mac`` (RFC 826 merge step).

        Creates an entry only if ``create`` (we were the target). Returns the
        queued items that can now be sent to ``mac``.
        """
        e = self.entries.get((ifindex, ip))
        if e is None:
            if not create:
                return []
            self.evicted += self._forced_gc()
            e = NeighEntry(ifindex, ip, NudState.REACHABLE)
            self.entries[(ifindex, ip)] = e
        e.mac = mac
        e.state = NudState.REACHABLE
        e.confirmed = now
        e.probes = 0
        return self._take_queue(e)

    def poll(self, now: float) -> list[Action]:
        """Retransmit solicitations, fail unanswered ones, collect stale entries."""
        actions: list[Action] = []
        for key, e in list(self.entries.items()):
            if e.state in (NudState.INCOMPLETE, NudState.PROBE):
                if now < e.next_probe:
                    continue
                if e.probes >= self.mcast_solicit:
                    del self.entries[key]
                    if e.queue or e.state is NudState.INCOMPLETE:
                        actions.append(Unresolved(e.ifindex, e.ip, self._take_queue(e)))
                    continue
                e.probes += 1
                e.next_probe = now + self.retrans_time
                actions.append(Solicit(e.ifindex, e.ip, e.mac if e.state is NudState.PROBE else None))
            elif e.state is NudState.REACHABLE:
                if now - e.confirmed > self.reachable_time:
                    e.state = NudState.STALE
            elif e.state is NudState.STALE and now - max(e.used, e.confirmed) > self.gc_stale_time:
                del self.entries[key]
        return actions

    def poll_at(self) -> float | None:
        """The next time ``poll`` has work (None: nothing pending)."""
        times = [e.next_probe for e in self.entries.values()
                 if e.state in (NudState.INCOMPLETE, NudState.PROBE)]
        return min(times) if times else None

    def flush(self, ifindex: int | None = None) -> list[Any]:
        """Forget entries (all, or one device's); returns items that were queued."""
        items: list[Any] = []
        for key, e in list(self.entries.items()):
            if ifindex is None or e.ifindex == ifindex:
                items.extend(self._take_queue(e))
                del self.entries[key]
        return items
