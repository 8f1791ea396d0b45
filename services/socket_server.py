"""The socket server process: the socket layer's RPC edge, its loop and its restart.

Applications' client libraries talk to one ROUTER endpoint (every local user's:
it lives in the instance's public directory); a process gets its client id from
the hello socket, where the kernel says who it is. The calls themselves are
the core's (services/socket/core.py); here they arrive and their replies,
readiness events and messages to udp and tcp leave, at the end of each turn,
after the state is saved (write-ahead). A restarted socket server takes up
what the previous one saved (services/socket/records.py) and tells each client
to ask again what it is still waiting for.
"""

from __future__ import annotations

import os
import socket as ksock
import struct
import time

import zmq

from services.base import Service, main
from services.socket import credentials
from services.socket.core import SocketCore
from services.socket.records import PENDING, REPLIED, REPLIED_RX, SocketState, SockRecord
from services.socket.types import INET_FAMILIES, Client, Pending, Sock
from shared import procfs
from shared.bytequeue import ByteQueue
from shared.ipc import endpoints
from shared.ipc.codec import encode, ready_event, restart_event
from shared.ipc.messages import RMEM_MAX, TCP_RESYNC, UDP_SEND, UDP_UNBIND
from shared.ipc.zflags import EVENTS, NOBLOCK, SNDMORE

SYSCALL_FRAME_MAX = 4 << 20       # bytes of one frame a client may send (ZMQ_MAXMSGSIZE)
POLLIN = 0x1
OUTBOX_RETRY = 0.02               # seconds between attempts to reach a restarting udp
RESTART_NOTICE_FOR = 2.0          # seconds of quick tries to tell a client we restarted, ...
RESTART_NOTICE_RETRY = 0.004      # ... this many seconds apart (its event channel reconnects every 5 ms)
RESTART_NOTICE_SLOW = 0.5         # seconds between tries after that, until it hears or is gone
TCP_RESYNC_AGAIN = 0.25           # seconds: TCP_RESYNC again while tcp has not answered it (it may have died)


class SocketServer(SocketCore, Service):
    kind = "socket_server"

    def __init__(self) -> None:
        super().__init__()
        self.sys = self.ctx.socket(zmq.ROUTER)
        self.sys.setsockopt(zmq.LINGER, 0)
        self.sys.setsockopt(zmq.ROUTER_MANDATORY, 1)   # a vanished client is an error, not a silent drop
        # a frame past this is never buffered whole: ZeroMQ drops the sender's connection while reading
        # it (its DEALER reconnects); one past MAX_MESSAGE but within this is answered with EMSGSIZE
        self.sys.setsockopt(zmq.MAXMSGSIZE, SYSCALL_FRAME_MAX)
        public = endpoints.public_dir(self.rundir)
        os.makedirs(public, exist_ok=True)
        os.chmod(public, 0o755)             # `up` made it; here too, so the endpoints always have a home
        self.sys.bind(endpoints.syscalls(self.rundir))
        os.chmod(endpoints.syscalls(self.rundir).removeprefix("ipc://"), 0o666)   # every local user's
        self.watch_socket(self.sys, self.serve_sys, shared=True)   # replies go from everywhere
        self.open_hello()
        self.outbox_retry: float | None = None
        self.restart_notices: dict[bytes, float] = {}   # client id -> tell it less often from
        self.peer("udp")
        self.peer("tcp")
        self.setup_core()
        self.state = SocketState(self.instance, *self.cfg.stream_bufs_max(2 * RMEM_MAX))
        self.restore()

    def serve_sys(self) -> None:
        # a ROUTER message is the caller's identity, then what it sent: one part from the client
        # library, or two for a fenced call. Each part's "more" flag comes with its Frame; asking
        # the socket (RCVMORE) costs ~3 us a time here, for pyzmq builds an option enum per get
        sys_ = self.sys
        recv = sys_.recv
        for i in range(256):
            if i and not sys_.get(EVENTS) & POLLIN:
                break
            try:
                ident = recv(NOBLOCK)
                body = recv(NOBLOCK, copy=False)
                fence = None
                if body.more:                    # a fenced call: [last post, call] (core.syscall)
                    fence = body.bytes
                    body = recv(NOBLOCK, copy=False)
                    if body.more:
                        while body.more:         # more parts than that: not a call
                            body = recv(NOBLOCK, copy=False)
                        self.counters["bad_calls"] += 1
                        continue
            except zmq.Again:
                break
            self.syscall(ident, body.bytes, fence)

    def send_frames(self) -> None:
        send = self.sys.send
        for ident, body in self.frames:
            try:
                send(ident, NOBLOCK | SNDMORE)
                send(body, NOBLOCK)
            except zmq.ZMQError:
                self.counters["frames_undeliverable"] += 1     # the client is gone
        self.frames = []

    def open_hello(self) -> None:
        """The kernel AF_UNIX socket where a process gets its client id. Who it is comes
        from the kernel (SO_PEERCRED's pid, then that pid's start time), never from what
        it says; the id, unguessable, is what its later calls are known by."""
        path = endpoints.hello(self.rundir)
        try:
            os.unlink(path)                 # the previous incarnation's
        except FileNotFoundError:
            pass
        s = ksock.socket(ksock.AF_UNIX, ksock.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o666)               # every local user may ask
        s.listen(128)
        s.setblocking(False)
        self.hello_sock = s
        self.hello_replies: list[tuple[ksock.socket, bytes]] = []
        self.watch_fd(s.fileno(), self.serve_hello)

    def serve_hello(self) -> None:
        for _ in range(64):
            try:
                conn, _ = self.hello_sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counters["hello_errors"] += 1
                return
            conn.setblocking(False)
            try:
                pid, uid, _ = struct.unpack("3i", conn.getsockopt(ksock.SOL_SOCKET, ksock.SO_PEERCRED, 12))
                c = self.new_client(os.urandom(12).hex().encode(), pid, uid)
                reply = b"0 " + c.cid
            except OSError as exc:
                reply = f"{exc.errno} {exc.strerror}".encode()
            self.hello_replies.append((conn, reply + b"\n"))     # sent once the state holds the client

    def send_hello_replies(self) -> None:
        for conn, reply in self.hello_replies:
            try:
                conn.send(reply)
            except OSError:
                pass                        # it went away: its id is dropped with the process
            conn.close()
        self.hello_replies = []

    def _flush_outbox(self) -> None:
        self.outbox_retry = None
        for service, box in self.outbox.items():
            while box:
                try:
                    self.peer(service).send(box[0], zmq.NOBLOCK)
                except zmq.Again:
                    self.outbox_retry = time.monotonic() + OUTBOX_RETRY
                    break
                box.popleft()

    def end_of_turn(self) -> None:
        # write-ahead: what leaves below, the saved state already holds
        self.state.commit(self)
        self.send_frames()
        if self.hello_replies:
            self.send_hello_replies()
        if self.outbox_retry is None and (self.outbox["udp"] or self.outbox["tcp"]):
            self._flush_outbox()
        self._flush_udp()
        self.flush_raw()

    def _flush_udp(self) -> None:
        if self.udp_sends:
            self.send_items("udp", UDP_SEND, [i for i, _ in self.udp_sends], [s for _, s in self.udp_sends])
            self.udp_sends = []

    # -- time -----------------------------------------------------------------------
    def timer_at(self) -> float | None:
        times = [super().timer_at()]
        if self.tcp_wait is not None:
            times.append(self.tcp_resync_at)
        if self.outbox_retry is not None:
            times.append(self.outbox_retry)
        if self.restart_notices:
            times.append(self.notice_at)
        return min(times)

    def on_timer(self, now: float) -> None:
        if self.tcp_wait is not None and now >= self.tcp_resync_at:
            self.ask_tcp_resync()
        if self.outbox_retry is not None and now >= self.outbox_retry:
            self._flush_outbox()
        if self.restart_notices and now >= self.notice_at:
            self.tell_restart(now)
        super().on_timer(now)

    def client_gone(self, c: Client) -> None:
        super().client_gone(c)
        self.restart_notices.pop(c.cid, None)

    # -- restart ------------------------------------------------------------------
    def restore(self) -> None:
        """Take up what the previous incarnation saved: clients with their threads'
        last calls, sockets with their fds, queues and accept queues, requests to tcp.
        Then ask tcp and udp to reconcile, and tell each client to ask again what
        it is still waiting for."""
        table, clients, socks, gone = self.state.load()
        self.sock_ids_next = max(self.sock_ids_next, table.ids)
        self.reqs_next = max(self.reqs_next, table.reqs)
        for conn in gone:
            self.gone_conns[conn] = None
        for rec in clients:
            if procfs.start_time(rec.pid) != rec.start:
                self.state.remove_client(rec.cid, [call.ident for call in rec.calls], [p[0] for p in rec.posts])
                continue
            c = self.clients[rec.cid] = Client(rec.cid, rec.pid, rec.start, events=rec.events)
            try:
                c.uid = credentials.creds_of(rec.pid, rec.start).uid
            except OSError:
                pass
            self.watch_client(c)
            for k in rec.calls:
                call = Pending(k.ident, k.req, k.code, [k.req, k.fd], None, restored=True, done=k.how != PENDING)
                call.reply = k.payload if k.how == REPLIED else None
                call.rx = k.payload if k.how == REPLIED_RX else None
                c.calls[k.ident] = call
            c.posts.update(rec.posts)
            if rec.events is not None:
                self.restart_notices[rec.cid] = time.monotonic() + RESTART_NOTICE_FOR
        self.notice_at = time.monotonic()
        kept = [self.restore_sock(rec) for rec in sorted(socks, key=lambda r: r.sock_id)]
        self.counters["restore_skipped"] += self.state.skipped
        for sock in kept:
            if sock is not None and sock.origin and sock.fd < 0:
                lst = self.socks.get(sock.origin)
                if lst is not None and lst.st == "listening":
                    lst.acceptq.append(sock)
        self.unix_relink()
        for req, sid, what, msg in table.tcp_reqs:
            if sid in self.socks:
                self.tcp_reqs[req] = (self.socks[sid], None, what, msg)
        connecting = {sock.id for sock, _, what, _ in self.tcp_reqs.values() if what == "connect"}
        for sock in self.socks.values():
            tcp = sock.stream and sock.family in INET_FAMILIES
            if tcp and (sock.st == "connected" or sock.st == "connecting" and sock.id not in connecting):
                self.conns[sock.conn] = sock
            elif sock.type == ksock.SOCK_DGRAM and sock.binding:   # its bind may or may not have happened:
                sock.binding = False                                # undone; the call, asked again, redoes it
                self.udp_msg(encode(UDP_UNBIND, sock.id))
        if not (self.clients or self.socks or self.lingering):
            return
        self.resync_udp()
        self.raw_update()
        self.ask_tcp_resync()
        self.counters["restored_sockets"] += len(self.socks)
        self.log.info("took up %d clients, %d sockets (%d lingering)", len(self.clients), len(self.socks),
                      len(self.lingering))

    def restore_sock(self, rec: SockRecord) -> Sock | None:
        """A saved socket taken up; None if it belongs to no one now, is lingering, or
        cannot be taken up (a value no socket can have: skipped and counted)."""
        try:
            return self._restore_sock(rec)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            self.log.warning("socket record %s not taken up: %r", rec.sock_id, exc)
            self.state.skip(f"s{rec.sock_id}")
            return None

    def _restore_sock(self, rec: SockRecord) -> Sock | None:
        client = self.clients.get(rec.cid)
        if client is None:
            self.state.remove_sock(rec.sock_id)
            return None
        sock = Sock(0, client, 0, 0, 0, 0, 0, 0)
        for name, value in rec.fields.items():
            setattr(sock, name, value)
        sock.holders = [(self.clients[c], fd) for c, fd in rec.holders if c in self.clients]
        sock.origin, sock.ready_mask = rec.origin, -1
        if sock.stream:
            keep, rbuf = self.state.sock_queues(sock, rec.keep_len, rec.rd_off)
            sock.sndkeep, sock.rbuf = ByteQueue(keep), ByteQueue(rbuf)
            sock.snd_pending = len(sock.sndkeep)
            if sock.consumed != rec.rd_off:
                self.counters["restored_reads_truncated"] += 1
        if rec.lingering:
            self.lingering[sock.conn] = sock
            return None
        if sock.family == ksock.AF_UNIX:
            sock.uname, sock.peer, sock.scm = rec.uname, rec.peer, rec.scm   # ids: resolved after
            sock.ukey = tuple(rec.ukey) if rec.ukey else None
            if sock.ukey is not None and sock.uname is not None:
                self.unix_names[sock.ukey] = sock
        self.socks[sock.id] = sock
        self.owned(sock, client.uid)
        if sock.stream and sock.family in INET_FAMILIES:
            self.charge_sent(sock, len(sock.sndkeep))
        for c, fd in [(sock.client, sock.fd), *sock.holders]:
            if fd >= 0:
                c.fds[fd] = sock
        return sock

    def ask_tcp_resync(self) -> None:
        """Ask tcp to tell us every connection again, with a token its answer carries;
        until that answer its events are dropped (SocketCore.tcp_wait)."""
        if self.tcp_wait is None:
            self.tcp_wait = time.monotonic_ns()      # above any predecessor's, whose may reach tcp late
        self.tcp_msg(encode(TCP_RESYNC, self.tcp_wait))
        self.tcp_resync_at = time.monotonic() + TCP_RESYNC_AGAIN

    def tell_restart(self, now: float) -> None:
        """Tell each client we restarted, once its event channel is connected again,
        and push every socket's readiness to it. A client that does not hear for long
        (a stopped process: ^Z) is told every RESTART_NOTICE_SLOW s until it does or is gone: until
        then, a call of its that our predecessor lost is asked again by nobody."""
        for cid in list(self.restart_notices):
            c = self.clients.get(cid)
            if c is None or c.events is None:
                self.restart_notices.pop(cid, None)
                continue
            try:
                self.sys.send_multipart([c.events, restart_event(os.getpid())], zmq.NOBLOCK)
            except zmq.ZMQError:
                continue                 # not reconnected yet (ROUTER_MANDATORY)
            del self.restart_notices[cid]
            for fd, sock in c.fds.items():
                self.frames.append([c.events, ready_event(fd, *sock.readiness(), sock.id)])
        quick = any(now < fast_until for fast_until in self.restart_notices.values())
        self.notice_at = now + (RESTART_NOTICE_RETRY if quick else RESTART_NOTICE_SLOW)

    def stats(self) -> dict:
        out = super().stats()
        out["clients_now"] = len(self.clients)
        out["outbox"] = {name: len(box) for name, box in self.outbox.items()}
        out["sockets_now"] = len(self.socks)
        out["users"] = {kind: {str(uid): n for uid, n in held.items()} for kind, held in self.users.summary().items()}
        return out


if __name__ == "__main__":
    main(SocketServer)
