"""A connection and a listener as tcp keeps them: the Tcb with its addresses,
ids and what the socket layer has been told, and a listening socket's queue.
Plain types, so tcp and its restart store (tcp_store.py) share them."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.proto.tcp.tcb import Tcb


@dataclass(eq=False)
class Conn:
    id: int
    tcb: Tcb
    laddr: int
    lport: int
    raddr: int
    rport: int
    listener: int | None = None       # the listening socket, until announced to the socket layer
    origin: int | None = None         # the listening socket it came from (kept)
    orphan: bool = False               # the application closed it; tcp finishes alone
    announced: bool = False
    eof_sent: bool = False
    snd_total: int = 0                 # stream bytes taken from the socket layer, ever
    consumed: int = 0                  # stream bytes the application has read (TCP_RCVD)
    resend_asked: int = -1             # the offset a gap in TCP_SEND made us ask for again
    fin_at: int | None = None          # a close waiting for the stream up to here (resent after a restart)
    timer: float | None = None         # when its one live entry in the timer heap is due

    @property
    def acked(self) -> int:
        """Stream offset the peer has acknowledged up to (the send queue starts there)."""
        return self.snd_total - len(self.tcb.sndq)

    @property
    def key(self) -> tuple[int, int, int, int]:
        return self.laddr, self.lport, self.raddr, self.rport


@dataclass(eq=False)
class Listener:
    sock: int
    laddr: int
    lport: int
    backlog: int
    rcvbuf: int
    pending: int = 0                  # handshakes done, not yet accepted
    embryonic: set = field(default_factory=set)
