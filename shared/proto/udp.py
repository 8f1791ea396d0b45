"""The UDP port table (RFC 768, RFC 1122 4.1): binding rules and demux.

Binding follows Linux: two sockets may share a port only if their local
addresses cannot overlap (both specific and different), or both set
SO_REUSEADDR, or both set SO_REUSEPORT (a group: each datagram, or for TCP
each connection, goes to one of them by a hash of its addresses and ports,
as reuseport_select_sock; mkstack has one user, so the group is not split
by uid). Port 0 takes a free port of the ephemeral range, searched from a
random point (RFC 6056 algorithm 1), so the next port is not guessable.
Delivery follows Linux's compute_score: a socket whose local address,
remote address and remote port match more specifically wins; among equals,
the most recently bound one. Broadcasts go to every matching socket.
Addresses are IPv4 as ints, IPv6 as 16 bytes; 0 is the wildcard. Which
families a wildcard takes is the socket's: an AF_INET socket IPv4 only (V4),
an AF_INET6 one both (DUAL: IPv4 arrives as v4-mapped addresses) or, with
IPV6_V6ONLY, IPv6 only (V6). Two bindings overlap where both their families
and their addresses do, so [::]:53 (dual) and 0.0.0.0:53 collide, as in Linux,
and a v6-only one does not.
"""

from __future__ import annotations

import errno
import random
from dataclasses import dataclass

BROADCAST = 0xFFFFFFFF
V4, V6, DUAL = 1, 2, 3         # the families a socket takes, as a mask


@dataclass(slots=True)
class UdpSock:
    sock: int
    laddr: int
    lport: int
    reuse: bool
    order: int
    raddr: int = 0
    rport: int = 0
    reuseport: bool = False
    fam: int = V4

    @property
    def takes(self) -> int:
        """The families it receives: a specific address fixes it."""
        return self.fam if not self.laddr else family_of(self.laddr)


def family_of(addr: int | bytes) -> int:
    return V6 if type(addr) is bytes else V4


def flow_hash(saddr: int | bytes, sport: int, daddr: int | bytes, dport: int) -> int:
    """The same for every packet of a flow (ints hash to themselves, stable across runs,
    where bytes would not: IPv6 addresses are hashed as ints)."""
    if type(saddr) is bytes:
        saddr, daddr = int.from_bytes(saddr, "big"), int.from_bytes(daddr, "big")
    return hash((saddr, sport, daddr, dport)) & 0xFFFFFFFF


class PortTable:
    def __init__(self, port_range: tuple[int, int] = (32768, 60999), local: set[int] | None = None,
                 broadcasts: set[int] | None = None, rng: random.Random | None = None) -> None:
        self.lo, self.hi = port_range
        self.local = local or set()
        self.broadcasts = (broadcasts or set()) | {BROADCAST}
        self.socks: dict[int, UdpSock] = {}
        self.by_port: dict[int, list[UdpSock]] = {}
        self._order = 0
        self._rng = rng or random.SystemRandom()

    def _conflicts(self, addr: int | bytes, port: int, reuse: bool, reuseport: bool = False, fam: int = V4) -> bool:
        takes = fam if not addr else family_of(addr)
        for s in self.by_port.get(port, ()):
            overlap = s.takes & takes and (s.laddr == 0 or addr == 0 or s.laddr == addr)
            if overlap and not (reuse and s.reuse) and not (reuseport and s.reuseport):
                return True
        return False

    def bind(self, sock: int, addr: int | bytes, port: int, reuse: bool = False,
             reuseport: bool = False, fam: int = V4) -> tuple[int, int | bytes, int]:
        """Returns (errno, addr, port); errno 0 on success."""
        if sock in self.socks:
            return errno.EINVAL, 0, 0
        if addr and addr not in self.local and addr not in self.broadcasts:
            return errno.EADDRNOTAVAIL, 0, 0
        if not 0 <= port <= 0xFFFF:
            return errno.EINVAL, 0, 0
        if port == 0:
            span = self.hi - self.lo + 1
            start = self._rng.randrange(span)
            for i in range(span):
                cand = self.lo + (start + i) % span
                if not self._conflicts(addr, cand, reuse, fam=fam):
                    port = cand
                    break
            else:
                return errno.EADDRINUSE, 0, 0
        elif self._conflicts(addr, port, reuse, reuseport, fam):
            return errno.EADDRINUSE, 0, 0
        self._order += 1
        s = UdpSock(sock, addr, port, reuse, self._order, reuseport=reuseport, fam=fam)
        self.socks[sock] = s
        self.by_port.setdefault(port, []).append(s)
        return 0, addr, port

    def restore(self, sock: int, addr: int | bytes, port: int, reuse: bool, raddr: int | bytes = 0, rport: int = 0,
                reuseport: bool = False, fam: int = V4) -> int:
        """Re-enter a binding the socket layer already holds (after a restart of udp)."""
        e, _, _ = self.bind(sock, addr, port, reuse, reuseport, fam)
        if e == 0:
            self.connect(sock, addr, raddr, rport)
        return e

    def connect(self, sock: int, laddr: int, raddr: int, rport: int) -> None:
        """Set the remote end (raddr 0: disconnect) and, if unset, the local address."""
        s = self.socks[sock]
        s.raddr, s.rport = raddr, rport
        if raddr and not s.laddr:
            s.laddr = laddr

    def unbind(self, sock: int) -> None:
        s = self.socks.pop(sock, None)
        if s is None:
            return
        peers = self.by_port[s.lport]
        peers.remove(s)
        if not peers:
            del self.by_port[s.lport]

    @staticmethod
    def _score(s: UdpSock, saddr: int, sport: int, daddr: int) -> int:
        score = 2
        if s.laddr:
            if s.laddr != daddr:
                return -1
            score += 4
        if s.raddr:
            if s.raddr != saddr:
                return -1
            score += 4
        if s.rport:
            if s.rport != sport:
                return -1
            score += 4
        return score

    def lookup(self, saddr: int | bytes, sport: int, daddr: int | bytes, dport: int) -> list[int]:
        """Sockets that receive a datagram: the best one, or all for a broadcast."""
        fam = family_of(daddr)
        cands = [s for s in self.by_port.get(dport, ()) if s.takes & fam]
        if daddr in self.broadcasts:
            return [s.sock for s in cands if (not s.laddr or s.laddr == daddr)
                    and (not s.raddr or s.raddr == saddr) and (not s.rport or s.rport == sport)]
        best, best_score = None, -1
        for s in cands:
            sc = self._score(s, saddr, sport, daddr)
            if sc > best_score or (sc == best_score and sc >= 0 and best is not None and s.order > best.order):
                best, best_score = s, sc
        if best is None or best_score < 0:
            return []
        if best.reuseport:
            group = self.group(best, [s for s in cands if self._score(s, saddr, sport, daddr) == best_score])
            best = group[flow_hash(saddr, sport, daddr, dport) % len(group)]
        return [best.sock]

    @staticmethod
    def group(s: UdpSock, among: "list[UdpSock] | tuple") -> list[UdpSock]:
        """``s``'s SO_REUSEPORT group among ``among``: same address, all with the option, in bind order."""
        return sorted((o for o in among if o.reuseport and o.laddr == s.laddr), key=lambda o: o.order)

    def find_sender(self, laddr: int, lport: int, raddr: int, rport: int) -> UdpSock | None:
        """The connected socket that sent a datagram quoted in an ICMP error."""
        for s in self.by_port.get(lport, ()):
            if (not s.laddr or s.laddr == laddr) and s.raddr == raddr and s.rport == rport:
                return s
        return None
