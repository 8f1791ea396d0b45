"""tcp's state in tmpfs, so a restarted tcp takes every connection up.

One file per connection: its record (Conn fields + the Tcb snapshot) is
rewritten at the end of every loop turn that touched it, before anything the
turn produced leaves the process (segments to ip, events to the socket
layer); so whatever the peer or the socket layer has seen, the record has too.
A turn's records go out as one (StateDir.write_turn). Its two rings hold the
byte queues by sequence number: the send queue (written as data arrives from
the socket layer, read back from SND.UNA) and the receive side (data
delivered but not yet read by the application, and out-of-order data), so a
restart can deliver again what the socket layer may have missed. A ``table``
file holds the bound ports and listeners.
"""

from __future__ import annotations

from typing import Protocol

from services.tcp_conn import Conn
from shared.ipc import endpoints
from shared.proto.tcp import persist
from shared.proto.tcp import seq as S
from shared.statestore import RecordTooBig, StateDir, ring_size


TX, RX = 0, 1
RECORD_SLOT = 4096
TABLE_SLOT = 1 << 20
TABLE = "table"
ID_BLOCK = 1 << 16          # passive conn ids reserved per table write
HEAD = 14                   # Conn fields before the Tcb snapshot in a record


class PortTables(Protocol):
    """What save_table writes of tcp (Tcp has these)."""
    bound: dict
    by_id: dict
    listener_of: dict
    next_passive: int
    ports: object


class TcpStore:
    def __init__(self, instance: str, sndbuf_max: int, rcvbuf_max: int) -> None:
        # the send queue never holds more than SO_SNDBUF; the receive side spans
        # unread data plus the window beyond it, at most twice SO_RCVBUF
        self.tx_size = ring_size(sndbuf_max)
        self.rx_size = ring_size(2 * rcvbuf_max)
        self.dir = StateDir(endpoints.state_dir(instance, "tcp"), RECORD_SLOT, (self.tx_size, self.rx_size))
        self.ooo_saved: dict[int, dict[int, int]] = {}     # conn -> {seq: length} of ooo data in its ring
        self.ids_reserved = 0
        self.table_dirty = False

    @staticmethod
    def key(cid: int) -> str:
        return f"c{cid}"

    # -- writing ----------------------------------------------------------------------------
    def tx_append(self, c: Conn, data: bytes) -> None:
        t = c.tcb
        end = S.add(t.sndq_seq, len(t.sndq))
        self.dir.file(self.key(c.id)).ring_write(TX, S.add(end, -len(data)), data)

    def rx_delivered(self, c: Conn, data: bytes | bytearray) -> None:
        t = c.tcb
        self.dir.file(self.key(c.id)).ring_write(RX, t.irs + 1 + t.rcv_total - len(data), data)

    def save(self, c: Conn, bound: list | None) -> None:
        """``bound``: [addr, port, reuse] of the port an active open holds."""
        key = self.key(c.id)
        f = self.dir.file(key)
        t = c.tcb
        saved = self.ooo_saved.setdefault(c.id, {})
        if t.ooo or saved:
            for seq, data in t.ooo.items():
                had = saved.get(seq)
                if had != len(data):
                    # the ring is by sequence number and a block only grows (what it held stays):
                    # a block that grew needs only its new bytes written
                    at = had if had is not None and had < len(data) else 0
                    f.ring_write(RX, (seq + at) & 0xFFFFFFFF, data[at:])
                    saved[seq] = len(data)
            for seq in saved.keys() - t.ooo.keys():
                del saved[seq]
        head = [c.id, c.laddr, c.lport, c.raddr, c.rport, c.listener, c.origin, c.orphan, c.announced,
                c.eof_sent, c.snd_total, c.consumed, c.fin_at, bound]
        try:
            self.dir.stage(key, head + [persist.snapshot(t)])
        except RecordTooBig:
            self.dir.stage(key, head + [persist.snapshot(t, max_ooo=0)])

    def drop(self, cid: int) -> None:
        self.ooo_saved.pop(cid, None)
        self.dir.stage_remove(self.key(cid))

    def write_turn(self) -> None:
        """The records this turn staged, together (a listener's table and its new child)."""
        self.dir.write_turn()

    def save_table(self, tcp: PortTables) -> None:
        next_id = tcp.next_passive
        if next_id >= self.ids_reserved:
            self.ids_reserved = next_id + ID_BLOCK
        bound = [[sock, a, p, tcp.ports.socks[sock].reuse, tcp.ports.socks[sock].reuseport, tcp.ports.socks[sock].fam]
                 for sock, (a, p) in tcp.bound.items() if sock not in tcp.by_id and sock in tcp.ports.socks]
        listeners = [[lst.sock, lst.laddr, lst.lport, lst.backlog, lst.rcvbuf, lst.pending]
                     for lst in tcp.listener_of.values()]
        self.dir.stage(TABLE, [self.ids_reserved, bound, listeners], slot=TABLE_SLOT, rings=())
        self.table_dirty = False

    # -- reading back -----------------------------------------------------------------------
    def load_table(self) -> tuple[int, list, list]:
        self.dir.replay()
        rec = self.dir.file(TABLE, slot=TABLE_SLOT, rings=()).get()
        if not (isinstance(rec, list) and len(rec) == 3):
            return 0, [], []
        self.ids_reserved = rec[0]
        return rec[0], rec[1], rec[2]

    def load_conns(self, cfg: persist.TcpConfig) -> tuple[list[tuple[list, persist.Tcb]], int]:
        """(head, Tcb) of every connection kept; and how many records were unusable."""
        out, bad = [], 0
        for key in self.dir.keys():
            if not key.startswith("c"):
                continue
            f = self.dir.file(key)
            rec = f.get()
            try:
                head, snap = rec[:HEAD], rec[HEAD]
                sndq_seq, sndq_len, ooo = persist.queues(snap)
                if sndq_len > self.tx_size:
                    raise ValueError("send queue larger than its ring")
                sndq = f.ring_read(TX, sndq_seq, sndq_len)
                ooo_data = {s: f.ring_read(RX, s, n) for s, n in ooo if n <= self.rx_size}
                t = persist.restore(cfg, snap, sndq, ooo_data)
            except (TypeError, ValueError, IndexError, KeyError):
                bad += 1
                self.dir.remove(key)
                continue
            self.ooo_saved[head[0]] = {seq: len(data) for seq, data in t.ooo.items()}
            out.append((head, t))
        return out, bad

    def undelivered(self, c: Conn) -> bytes:
        """Data delivered to the socket layer and not yet read there (to deliver again).
        Not this turn's ``t.delivered``: it is in no ring yet, and goes out after."""
        t = c.tcb
        n = t.rcv_total - len(t.delivered) - c.consumed
        if not 0 < n <= self.rx_size:
            return b""
        return self.dir.file(self.key(c.id)).ring_read(RX, t.irs + 1 + c.consumed, n)
