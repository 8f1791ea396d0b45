"""The socket server's state in tmpfs, so a restarted socket server takes up every client and socket.

Write-ahead, as tcp's store: every record a loop turn touched is rewritten at
the end of the turn, before the turn's replies, readiness events and messages
to tcp/udp leave the process; so whatever a client or tcp has seen, the
records have too. Files in one StateDir:

  table     blocks of socket ids and request ids reserved, requests to tcp not
            yet answered, how many conn ids the ``gone`` ring has seen
  gone      the conn ids of the stream sockets closed most recently (u64 each):
            a tcp that re-announces one of them gets it closed, not accepted again
  k<n>      a client: pid, process start time, event channel
  t<n>      one calling thread (DEALER) of a client: its last call and that
            call's reply (to answer a repeat); one file each, so a call saves
            one small record however many threads the client has had
  s<id>     a socket's fields; a TCP socket's file has two rings by stream
            offset: TX the bytes tcp has not had acknowledged (sndkeep), RX the
            received bytes from the oldest one a client may still ask for

Not kept: queued datagrams (UDP, raw, AF_UNIX: their skbs die with the process
and are reclaimed; datagrams in flight may be lost, and sockets passed with an
AF_UNIX datagram go with it).
"""

from __future__ import annotations

import logging
import operator
import socket as ksock
from typing import NamedTuple, Protocol

from services.socket.types import Client, Pending, Sock
from shared.ipc import endpoints
from shared.statestore import RecordTooBig, StateDir, StateFile, ring_size

log = logging.getLogger("socket_records")


TX, RX = 0, 1
SOCK_SLOT = 1 << 16             # sparse: a socket held by many clients, or passing many, still fits
CLIENT_SLOT = 1 << 10
CALL_SLOT = 1 << 14              # a kept reply (REPLY_KEPT) and its header
POST_SLOT = 256                  # a thread's last post applied: [identity (IDENT_MAX), request id]
TABLE_SLOT = 1 << 20
TABLE, GONE = "table", "gone"
GONE_KEPT = 4096                 # conn ids in the gone ring
ID_BLOCK = 1 << 16               # socket ids / request ids reserved per table write
REPLY_KEPT = 8192                # a reply frame up to this size is kept as it is
CALLS_KEPT = 256                 # calling threads remembered per client
# plain Sock fields, in record order
SOCK_FIELDS = ("id", "fd", "family", "type", "proto", "rcvbuf", "sndbuf", "laddr", "lport", "raddr", "rport",
               "bound", "binding", "reuseaddr", "broadcast", "err", "shut_rd", "shut_wr", "ready_ver", "st",
               "conn", "eof", "snd_sent", "nodelay", "keepalive", "linger", "backlog", "rcv_total", "oobinline",
               "urg", "urg_off", "oob", "hdrincl", "refs", "watched", "tcpopts", "rcvlowat",
               "reuseport")
PENDING, REPLIED, REPLIED_RX, REPLIED_LOST = 0, 1, 2, 3      # a kept call's state
_sock_values = operator.attrgetter(*SOCK_FIELDS)
_FIELD_TYPES = tuple(str if f == "st" else dict if f == "tcpopts" else (int, bytes) if f in ("laddr", "raddr")
                     else int for f in SOCK_FIELDS)   # bool is an int; IPv6 addresses are bytes


class TableRecord(NamedTuple):
    ids: int                 # socket ids reserved up to here
    reqs: int                # request ids reserved up to here
    tcp_reqs: list           # [req, socket id, what, message] of each request tcp has not answered
    gone_count: int          # conn ids the gone ring has seen


class CallRecord(NamedTuple):
    ident: bytes             # the calling thread's DEALER identity
    req: int
    code: int
    fd: int
    how: int                 # PENDING, REPLIED (payload: the reply), REPLIED_RX (payload: Pending.rx), REPLIED_LOST
    payload: object


class ClientRecord(NamedTuple):
    cid: bytes
    pid: int
    start: object            # the process's start time, as procfs reads it
    events: bytes | None     # its event channel's identity
    calls: list[CallRecord]
    posts: list              # [identity, request id] of each thread's last post applied


class SockRecord(NamedTuple):
    cid: bytes               # the primary holder
    fields: dict             # the plain Sock fields (SOCK_FIELDS) by name
    holders: list            # [cid, fd] of the other holders
    keep_len: int            # bytes of sndkeep in the TX ring
    rd_off: int              # stream offset of the oldest received byte a call may still need
    origin: int              # an accepted connection not yet given a descriptor: its listener
    lingering: int           # closed, its unacknowledged data kept for tcp
    uname: object = None     # AF_UNIX: its name
    ukey: object = None      # AF_UNIX: its key in the name table
    peer: int = 0            # AF_UNIX: the other end's socket id
    scm: list = []           # AF_UNIX stream: [offset, [socket ids]] passed with the bytes there

    @property
    def sock_id(self) -> int:
        return self.fields["id"]


class Tables(Protocol):
    """What a commit saves of the socket layer (SocketCore has these)."""
    sock_ids_next: int
    reqs_next: int
    socks: dict[int, Sock]
    lingering: dict[int, Sock]
    clients: dict[bytes, Client]
    tcp_reqs: dict
    counters: dict


def sock_record_ok(rec: object) -> bool:
    """A socket record as save_sock writes it, with every field of the type it had:
    a record of another format (or damaged) is skipped, never half taken up."""
    if not (isinstance(rec, list) and len(rec) in (7, 11)):
        return False
    cid, values, holders, keep_len, rd_off, origin, lingering = rec[:7]
    if not (isinstance(cid, bytes) and isinstance(values, list) and len(values) == len(SOCK_FIELDS)
            and all(isinstance(v, t) for v, t in zip(values, _FIELD_TYPES))
            and isinstance(holders, list) and all(isinstance(h, list) and len(h) == 2 and isinstance(h[0], bytes)
                                                  and isinstance(h[1], int) for h in holders)
            and all(isinstance(v, int) for v in (keep_len, rd_off, origin, lingering))):
        return False
    if len(rec) == 11:
        uname, ukey, peer, scm = rec[7:]
        return (isinstance(uname, (str, bytes, type(None))) and isinstance(ukey, (list, type(None)))
                and isinstance(peer, int) and isinstance(scm, list)
                and all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], int) and isinstance(e[1], list)
                        and all(isinstance(i, int) for i in e[1]) for e in scm))
    return True


class SocketState:
    def __init__(self, instance: str, sndbuf_max: int, rcvbuf_max: int) -> None:
        # sndkeep never exceeds SO_SNDBUF; the receive side holds unread data (at
        # most about SO_RCVBUF) and the replies a client may ask for again
        self.tx_size = ring_size(sndbuf_max)
        self.rx_size = ring_size(4 * rcvbuf_max)
        self.dir = StateDir(endpoints.state_dir(instance, "socket_server"), SOCK_SLOT)
        self.gone = self.dir.file(GONE, slot=64, rings=(8 * GONE_KEPT,))
        self.gone_count = 0
        self.skipped = 0             # records restore could not take up
        self.ids_reserved = 0
        self.reqs_reserved = 0
        self.table_dirty = False
        self.socks: set[Sock] = set()
        self.clients: set[Client] = set()
        self.calls: dict[bytes, tuple[Client, Pending | None]] = {}   # ident -> its call (None: forgotten)
        self.posts: dict[bytes, Client] = {}          # idents whose last post changed (or was forgotten)

    def _sock_rings(self, sock: Sock) -> tuple[int, ...]:
        return (self.tx_size, self.rx_size) if sock.stream else ()

    def _sock_file(self, sock: Sock) -> StateFile:
        return self.dir.file(f"s{sock.id}", rings=self._sock_rings(sock))

    @staticmethod
    def _client_key(cid: bytes) -> str:
        return "k" + cid.hex()         # a client id is the caller's bytes: never a path

    @staticmethod
    def _call_key(ident: bytes) -> str:
        return "t" + ident.hex()       # the DEALER identity: the client id, a dot, the thread's own part

    @staticmethod
    def _post_key(ident: bytes) -> str:
        return "p" + ident.hex()

    # -- marking --------------------------------------------------------------------
    def touch(self, sock: Sock) -> None:
        self.socks.add(sock)

    def touch_client(self, client: Client) -> None:
        self.clients.add(client)

    def touch_call(self, client: Client, call: Pending) -> None:
        self.calls[call.ident] = (client, call)

    def forget_call(self, client: Client, ident: bytes) -> None:
        """A thread no longer remembered (the oldest of too many)."""
        self.calls[ident] = (client, None)

    def touch_post(self, client: Client, ident: bytes) -> None:
        """A thread's last post applied changed, or is no longer kept (then saved as gone)."""
        self.posts[ident] = client

    def gone_conn(self, conn: int) -> None:
        self.gone.ring_write(0, 8 * self.gone_count, conn.to_bytes(8, "little"))
        self.gone_count += 1
        self.table_dirty = True

    def tx_write(self, sock: Sock, off: int, data: bytes) -> None:
        self._sock_file(sock).ring_write(TX, off, data)

    def rx_write(self, sock: Sock, off: int, data: bytes) -> None:
        self._sock_file(sock).ring_write(RX, off, data)

    def rx_holds(self, sock: Sock, off: int) -> bool:
        """The RX ring still has the received byte at stream offset ``off``."""
        return off >= sock.rcv_total - self.rx_size

    def rx_read(self, sock: Sock, off: int, n: int) -> bytes | None:
        if not self.rx_holds(sock, off) or n > self.rx_size:
            return None
        return self._sock_file(sock).ring_read(RX, off, n)

    # -- the write-ahead ------------------------------------------------------------
    def commit(self, ss: Tables) -> None:
        """Save what this turn touched (before anything of it leaves the process), as one
        turn: a socket's read offset and the call that moved it are never saved apart."""
        if ss.sock_ids_next >= self.ids_reserved or ss.reqs_next >= self.reqs_reserved:
            self.table_dirty = True
        if self.table_dirty:
            self.save_table(ss)
        for sock in self.socks:
            kept = ss.socks.get(sock.id) is sock or ss.lingering.get(sock.conn) is sock
            if kept:
                self.save_sock(ss, sock)
            else:
                self.dir.stage_remove(f"s{sock.id}")
        self.socks.clear()
        for ident, (client, call) in self.calls.items():
            if call is not None and ss.clients.get(client.cid) is client and client.calls.get(ident) is call:
                self.save_call(ss, call)
            else:
                self.dir.stage_remove(self._call_key(ident))
        for ident, client in self.posts.items():
            applied = client.posts.get(ident) if ss.clients.get(client.cid) is client else None
            if applied is not None:
                self.dir.stage(self._post_key(ident), [ident, applied], slot=POST_SLOT, rings=())
            else:
                self.dir.stage_remove(self._post_key(ident))
        for client in self.clients:
            if ss.clients.get(client.cid) is client:
                self.dir.stage(self._client_key(client.cid), [client.cid, client.pid, client.start, client.events],
                               slot=CLIENT_SLOT, rings=())
            else:
                for ident in client.calls:
                    if ident not in self.calls:      # the loop above had those
                        self.dir.stage_remove(self._call_key(ident))
                for ident in client.posts:
                    if ident not in self.posts:
                        self.dir.stage_remove(self._post_key(ident))
                self.dir.stage_remove(self._client_key(client.cid))
        self.calls.clear()
        self.posts.clear()
        self.clients.clear()
        self.dir.write_turn()

    def save_table(self, ss: Tables) -> None:
        if ss.sock_ids_next >= self.ids_reserved:
            self.ids_reserved = ss.sock_ids_next + ID_BLOCK
        if ss.reqs_next >= self.reqs_reserved:
            self.reqs_reserved = ss.reqs_next + ID_BLOCK
        reqs = [[req, sock.id, what, msg] for req, (sock, _, what, msg) in ss.tcp_reqs.items()]
        self.dir.stage(TABLE, [self.ids_reserved, self.reqs_reserved, reqs, self.gone_count],
                       slot=TABLE_SLOT, rings=())
        self.table_dirty = False

    def save_sock(self, ss: Tables, sock: Sock) -> None:
        # the oldest received byte a call may still need: a MSG_WAITALL read in progress holds
        # what it took so far, and is asked again from there
        rd_off = sock.consumed - sum(len(c.got) for c in sock.readers if c.got is not None and not c.done)
        rec = [sock.client.cid, _sock_values(sock), [[c.cid, fd] for c, fd in sock.holders],
               len(sock.sndkeep), rd_off, sock.origin if sock.fd < 0 else 0, ss.lingering.get(sock.conn) is sock]
        if sock.family == ksock.AF_UNIX:     # its name, the other end, sockets passed with its bytes
            rec += [sock.uname, list(sock.ukey) if sock.ukey else None, sock.peer.id if sock.peer else 0,
                    [[off, [p.id for p in passed]] for off, passed in sock.scm]]
        if rec != sock.saved:            # most calls (getsockname, a read of a datagram) change nothing here
            try:
                self.dir.stage(f"s{sock.id}", rec, rings=self._sock_rings(sock))
            except RecordTooBig:         # the previous record stays: a restart takes that up
                ss.counters["socket_records_too_big"] += 1
                return
            sock.saved = rec

    def save_call(self, ss: Tables, call: Pending) -> None:
        self.dir.stage(self._call_key(call.ident), self._call_entry(ss, call), slot=CALL_SLOT, rings=())

    def _call_entry(self, ss: Tables, call: Pending) -> list:
        fd = call.fields[1] if len(call.fields) > 1 and type(call.fields[1]) is int else -1
        head = [call.ident, call.req, call.code, fd]
        if not call.done:
            return head + [PENDING, None]
        if call.rx is not None:
            sock = ss.socks.get(call.rx[0])
            if sock is not None and self.rx_holds(sock, call.rx[1]):
                return head + [REPLIED_RX, call.rx]
        if call.reply is not None and len(call.reply) <= REPLY_KEPT:
            return head + [REPLIED, call.reply]
        return head + [REPLIED_LOST, None]

    # -- reading back ---------------------------------------------------------------
    def load(self) -> tuple[TableRecord, list[ClientRecord], list[SockRecord], list[int]]:
        """(table, client records, socket records, gone conn ids) as saved."""
        self.dir.replay()
        table = self.dir.file(TABLE, slot=TABLE_SLOT, rings=()).get()
        if not (isinstance(table, list) and len(table) == 4):
            table = [0, 0, [], 0]
        self.ids_reserved, self.reqs_reserved, _, self.gone_count = table
        n = min(self.gone_count, GONE_KEPT)
        gone = [int.from_bytes(self.gone.ring_read(0, 8 * i, 8), "little")
                for i in range(self.gone_count - n, self.gone_count)]
        clients, socks, calls = {}, [], []
        for key in self.dir.keys():
            if key in (TABLE, GONE):
                continue                    # read above ("table" is no thread's "t" record)
            if key.startswith("k"):
                rec = self.dir.file(key, slot=CLIENT_SLOT, rings=()).get()
                if isinstance(rec, list) and len(rec) == 4 and isinstance(rec[0], bytes) \
                        and isinstance(rec[1], int) and isinstance(rec[2], (str, int, type(None))) \
                        and isinstance(rec[3], (bytes, type(None))):
                    clients[rec[0]] = rec + [[], []]
                else:
                    self.skip(key)
            elif key.startswith("t"):
                rec = self.dir.file(key, slot=CALL_SLOT, rings=()).get()
                if isinstance(rec, list) and len(rec) == 6 and isinstance(rec[0], bytes) \
                        and all(isinstance(v, int) for v in rec[1:5]):
                    calls.append((key, rec))
                else:
                    self.skip(key)
            elif key.startswith("p"):
                rec = self.dir.file(key, slot=POST_SLOT, rings=()).get()
                if isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], bytes) and isinstance(rec[1], int):
                    calls.append((key, rec))
                else:
                    self.skip(key)
            elif key.startswith("s"):
                rec = self.dir.file(key).get()    # rings unknown yet: the record says the kind
                self.dir.release(key)
                if sock_record_ok(rec):
                    socks.append(SockRecord(rec[0], dict(zip(SOCK_FIELDS, rec[1])), *rec[2:]))
                else:
                    self.skip(key)
        for key, rec in calls:              # threads' last calls ("t") and posts ("p")
            owner = clients.get(rec[0].split(b".", 1)[0])
            if owner is None:
                self.dir.remove(key)
            elif key.startswith("p"):
                owner[5].append(rec)
            else:
                owner[4].append(CallRecord(*rec))
        return TableRecord(*table), [ClientRecord(*c) for c in clients.values()], socks, gone

    def skip(self, key: str) -> None:
        """A record that cannot be taken up: removed, counted and logged, and restore goes on."""
        self.skipped += 1
        log.warning("state record %s is not in this version's format: skipped", key)
        self.dir.remove(key)

    def sock_queues(self, sock: Sock, keep_len: int, rd_off: int) -> tuple[bytes, bytes]:
        """(sndkeep, rbuf) of a restored TCP socket from its rings."""
        f = self._sock_file(sock)
        keep = f.ring_read(TX, sock.snd_sent - keep_len, keep_len) if 0 < keep_len <= self.tx_size else b""
        n = sock.rcv_total - rd_off
        rbuf = f.ring_read(RX, rd_off, n) if 0 < n <= self.rx_size else b""
        return keep, rbuf

    def remove_sock(self, sock_id: int) -> None:
        self.dir.remove(f"s{sock_id}")

    def remove_client(self, cid: bytes, idents: object = (), posters: object = ()) -> None:
        """A client's record and those of its threads (``idents``, ``posters``: the last call, the last post)."""
        for ident in idents:
            self.dir.remove(self._call_key(ident))
        for ident in posters:
            self.dir.remove(self._post_key(ident))
        self.dir.remove(self._client_key(cid))
