"""The socket layer's core (sys_socketcall): calls in, replies and messages out.

A client's call names a descriptor in its own table, so a client can never
reach another's sockets. A call that cannot complete is suspended here (the
client does not poll) and answered when data arrives, the socket closes, or its
timeout expires. Readiness changes are pushed to the client's event channel so
that select/poll work on the client's notifier fds.

The core does no I/O of its own: replies and readiness events collect in
``frames`` and messages to udp and tcp in ``outbox``; the process around it
(services/socket_server.py) sends them at the end of the turn, after the state
is saved. Each family (inet stream and datagram, raw, unix) takes the calls of
its sockets through one table keyed by (family, type); the calls every family
shares are answered here. The errno is chosen where the kernel chooses it (each
check raises OSError in Linux's order); ``syscall`` catches it for the whole call
and ``_reply`` is the one place it becomes the client's errno (a suspended call
failing later passes through ``fail`` to the same place).
"""

from __future__ import annotations

import collections
import errno
import heapq
import itertools
import os
import socket as ksock
import time

import msgpack

from services.routes import LOOPBACK_IFINDEX, fib6_from_config, fib_from_config, local_addrs6, local_ips
from services.socket import credentials
from services.socket.clients import ClientTable
from services.socket.dgram import DGRAM_CALLS, DgramSockets
from services.socket.ledger import UserLedger
from services.socket.options import ASKED, SocketOptions
from services.socket.raw import RAW_CALLS, RawSockets
from services.socket.records import CALLS_KEPT
from services.socket.stream import STREAM_CALLS, StreamSockets
from services.socket.tcp_events import TcpEvents
from services.socket.types import INET_FAMILIES, POLLERR, Client, Pending, Sock, sock_aton, sock_ntoa
from services.socket.unix import UNIX_CALLS, UnixSockets
from shared import procfs
from shared.ipc.codec import BadMessage, decode, encode, ready_event, sys_reply
from shared.ipc.messages import (RAW_DELIVER, SYS_ACCEPT, SYS_BIND, SYS_CLOSE, SYS_DUP, SYS_GETPEERNAME,
                                 SYS_GETSOCKNAME, SYS_GETSOCKOPT, SYS_HELLO, SYS_IOCTL, SYS_LAST, SYS_LISTEN,
                                 SYS_NETSTAT, SYS_RECVFROM, SYS_RECVFROM_MANY, SYS_RECVMSG, SYS_SENDMSG,
                                 SYS_POSTS_PENDING, SYS_REPLAY, SYS_SEND_POST, SYS_SENDTO, SYS_SENDTO_NOWAIT,
                                 SYS_SETSOCKOPT, SYS_SOCKET,
                                 SYS_SOCKETPAIR, SYS_WATCH, TCP_EVENTS, UDP_BOUND, UDP_DELIVER, UDP_RESYNC,
                                 UDP_SOCK_ERR, UDP_UNBIND, lookup)
from shared.skb import Skb

CLIENT_CHECK = 1.0                # seconds between checks that client processes live
OUTBOX_MAX = 65536                # messages waiting for udp or tcp (while one restarts)
IDENT_MAX = 120                   # bytes of a DEALER identity: the client id, a dot, the thread's part
MAX_TIMEOUT = 9.2e9               # seconds: CPython's own bound (int64 nanoseconds); NaN fails the test too
# calls that change nothing: a repeat after a restart may simply do them again (not SO_ERROR: it clears)
REPEATABLE = frozenset((SYS_GETSOCKNAME, SYS_GETPEERNAME, SYS_IOCTL, SYS_NETSTAT, SYS_WATCH))
SOCK_TYPE_MASK = 0xF              # SOCK_NONBLOCK / SOCK_CLOEXEC live above
SENDTO_FIELDS = lookup(SYS_SENDTO).named   # a SYS_SENDMSG goes on as the sendto it carries
NO_FAMILY = (frozenset(), None)   # a socket no family takes (a damaged restored record): the common calls only


class SocketCore(ClientTable, SocketOptions, DgramSockets, StreamSockets, TcpEvents, RawSockets, UnixSockets):
    """The socket layer without its process: what hosts it (SocketServer, or a test)
    provides cfg, counters, pool, owner_ids, log, rundir, announce, watch_fd/unwatch_fd,
    skb_items, send_items and fault, as services.base.Service does."""

    def setup_core(self) -> None:
        self.clients: dict[bytes, Client] = {}
        self.socks: dict[int, Sock] = {}
        self.sock_ids_next = 1
        self.reqs_next = 1              # requests to udp and tcp
        self.pending_binds: dict[int, Sock] = {}
        self.timers: list[tuple[float, int, Pending]] = []
        self.timer_seq = itertools.count()
        self.next_client_check = time.monotonic() + CLIENT_CHECK
        self.fib = fib_from_config(self.cfg, self.rundir)
        self.local = local_ips(self.cfg, self.rundir)
        self.local6 = local_addrs6(self.cfg)
        self.fib6 = fib6_from_config(self.cfg)
        # the device a link-local address is on, as AF_INET6 names show its scope (one device runs IPv6)
        self.scope6 = next((i for i in self.local6.values() if i != LOOPBACK_IFINDEX), 0)
        self.bcast = {int.from_bytes(d.addr.network.broadcast_address.packed, "big")
                      for d in self.cfg.devices} | {0xFFFFFFFF}
        self.udp_sends: list[tuple[list, Skb]] = []
        # control messages to udp and tcp, in order, retried while a peer restarts
        self.outbox: dict[str, collections.deque[bytes]] = {"udp": collections.deque(), "tcp": collections.deque()}
        self.tcp_reqs: dict[int, tuple[Sock, Pending | None, str, bytes]] = {}
        self.gone_conns: collections.OrderedDict[int, None] = collections.OrderedDict()   # closed here lately
        self.tcp_unsynced: set[int] = set()
        self.tcp_wait: int | None = None   # our TCP_RESYNC's token until tcp's answer: its events before are dropped
        self.lingering: dict[int, Sock] = {}     # conn -> closed socket with data not yet acknowledged
        self.conns: dict[int, Sock] = {}        # tcp conn id -> stream socket
        self.credits_owed: dict[int, Sock] = {}  # sockets whose small reads tcp has not been told of yet
        self.credit_due: float | None = None
        self.raw_init()
        self.unix_names: dict[object, Sock] = {}
        self.gc_running = False            # unix_gc at work (releases inside it must not start another)
        self.dgram_mem = 0                 # slot bytes of every datagram queue (as udp_mem counts)
        self.users = UserLedger(self.cfg.socket_limits, self.counters)
        self.mem_waiters: dict[int, set[Sock]] = {}   # uid -> stream sockets whose sends wait for its memory
        self.frames: list[list[bytes]] = []     # replies and events of this turn, sent after the save
        # each family's calls: (the call codes it takes, its handler); the rest are answered here
        unix = (UNIX_CALLS, self.unix_call)
        self.families = {(ksock.AF_INET, ksock.SOCK_STREAM): (STREAM_CALLS, self.stream_call),
                         (ksock.AF_INET, ksock.SOCK_DGRAM): (DGRAM_CALLS, self.dgram_call),
                         (ksock.AF_INET6, ksock.SOCK_DGRAM): (DGRAM_CALLS, self.dgram_call),
                         (ksock.AF_INET6, ksock.SOCK_STREAM): (STREAM_CALLS, self.stream_call),
                         (ksock.AF_INET6, ksock.SOCK_RAW): (RAW_CALLS, self.raw_call),
                         (ksock.AF_INET, ksock.SOCK_RAW): (RAW_CALLS, self.raw_call),
                         (ksock.AF_UNIX, ksock.SOCK_STREAM): unix, (ksock.AF_UNIX, ksock.SOCK_DGRAM): unix}

    def new_sock_id(self, uid: int) -> int:
        """The id of a socket about to be made for user ``uid``; ENFILE at [socket]
        max_sockets (each socket is a state file mapped in this process), EMFILE at the
        user's sockets_per_user (as inotify's per-user bound answers)."""
        if len(self.socks) >= self.cfg.socket_limits.max_sockets:
            self.counters["sockets_refused"] += 1
            raise OSError(errno.ENFILE, "Too many open files in system")
        if not self.users.room("sockets", uid):
            raise OSError(errno.EMFILE, f"user {uid} holds {self.cfg.socket_limits.sockets_per_user} sockets"
                                        " ([socket] sockets_per_user)")
        self.sock_ids_next += 1
        return self.sock_ids_next - 1

    def new_req(self) -> int:
        self.reqs_next += 1
        return self.reqs_next - 1

    def syscall(self, ident: bytes, frame: bytes, fence: bytes | None = None) -> None:
        """One call as the client library framed it; ``fence`` (a fenced call) names the
        caller's last post, which must have been applied before the call is."""
        try:
            code, fields = decode(frame)
        except BadMessage as exc:
            self.counters["bad_calls"] += 1
            req = _peek_req(frame)
            if req is not None:
                err = errno.EMSGSIZE if len(frame) > (1 << 20) else errno.EINVAL
                self._reply(ident, req, err, str(exc))
            return
        if len(ident) > IDENT_MAX:
            # a calling thread's identity names its state file ("t" + hex): it must fit a file name
            self.counters["bad_calls"] += 1
            self._reply(ident, fields.req, errno.EINVAL, f"caller identity over {IDENT_MAX} bytes")
            return
        if code < SYS_HELLO or code > SYS_LAST:
            self._reply(ident, fields.req, errno.EINVAL, "not a socket call")
            return
        req = fields.req
        client = call = None
        try:
            if fence is not None and not self.fence_holds(ident, req, fence):
                return
            if code == SYS_HELLO:
                self._reply(ident, req, 0, self.hello(ident, fields.pid, fields.events))
                return
            client = self.clients.get(ident.split(b".", 1)[0])
            if client is None:
                raise OSError(errno.EPERM, "say SYS_HELLO first")
            if code == SYS_SEND_POST:
                self.stream_post(client, ident, fields)
                return
            if fence is None and client.posts and code != SYS_SENDTO_NOWAIT:
                self.posts_confirmed(client, ident)
            self.counters["calls"] += 1
            call = Pending(ident, req, code, fields, None)
            if code == SYS_SENDTO_NOWAIT:
                call.code, call.nowait = SYS_SENDTO, True
                self.counters["sends_nowait"] += 1
            elif code == SYS_RECVFROM_MANY:
                call.code, call.many = SYS_RECVFROM, True
            if len(client.waiting) >= self.cfg.socket_limits.waiting_calls and not call.nowait:
                self.waiting_room(client)
            if not self.track(client, call):
                return
            self.dispatch(client, call)
            if not call.done and not call.nowait:
                self.suspended(client, call)
        except Exception as exc:
            if not isinstance(exc, OSError):
                # arguments of a type or shape no handler expects (an address as bytes, say):
                # EINVAL for the caller, a count and a logged traceback for us, never a call left hanging
                self.fault("call", exc)
                exc = OSError(errno.EINVAL, f"bad arguments ({exc.__class__.__name__}: {exc})")
            sock = None
            fd = getattr(fields, "fd", None)     # the calls that name a socket
            if client is not None and type(fd) is int:
                sock = client.fds.get(fd)
            if call is not None:
                self.fail(call, exc.errno or errno.EINVAL, exc.strerror or str(exc), sock)
            elif code in (SYS_SENDTO_NOWAIT, SYS_SEND_POST):
                self.counters["nowait_send_errors"] += 1   # nobody to answer
            else:
                self._reply(ident, req, exc.errno or errno.EINVAL, exc.strerror or str(exc), sock)

    def fence_holds(self, ident: bytes, req: int, fence: bytes) -> bool:
        """A fenced call goes ahead only if the caller's posts up to the one the fence names were
        applied. One lost with our previous incarnation, or dropped (not applied whole, or after
        a missing one), is not: the call is answered SYS_REPLAY with the last post applied, and
        the library sends the missing ones again as calls, then this call. So a call never
        overtakes a send its thread made before it (a close its data, say).

        The fence is that request id, or [it, [[identity, request id], ...]]: the posts other
        threads of the caller made on the call's socket and have not had confirmed. Each
        thread's posts travel on its own DEALER, and a call on another one may overtake them
        (a thread sends, then another shuts the socket down): until they are applied here the
        call is answered SYS_POSTS_PENDING, and asked again."""
        try:
            last = msgpack.unpackb(fence)
        except Exception:  # msgpack raises several unrelated types on garbage
            last = None
        others: list = []
        if type(last) is list and len(last) == 2 and type(last[1]) is list:
            last, others = last
        cid = ident.split(b".", 1)[0]
        if type(last) is not int or not all(type(o) is list and len(o) == 2 and type(o[0]) is bytes
                                            and type(o[1]) is int and o[0].split(b".", 1)[0] == cid for o in others):
            self.counters["bad_calls"] += 1
            self._reply(ident, req, errno.EINVAL, "a call's fence names posts of the caller's threads")
            return False
        client = self.clients.get(cid)
        if client is None:
            return True               # the call itself is refused (say SYS_HELLO first)
        applied = client.posts.get(ident, 0)
        if applied < last:
            self.counters["calls_fenced"] += 1
            self._reply(ident, req, SYS_REPLAY, applied)
            return False
        for other, other_last in others:
            if client.posts.get(other, 0) < other_last:
                self.counters["calls_waiting_for_posts"] += 1
                self._reply(ident, req, SYS_POSTS_PENDING, 0)
                return False
        return True

    def waiting_room(self, client: Client) -> None:
        """A client at its bound of suspended calls: those answered since leave the
        count; if it is still full, the new call is refused (ENOBUFS), counted."""
        for call in [c for c in client.waiting if c.done]:
            client.waiting.discard(call)
        if len(client.waiting) >= self.cfg.socket_limits.waiting_calls:
            self.counters["calls_refused_waiting"] += 1
            raise OSError(errno.ENOBUFS, f"{len(client.waiting)} calls of this process are waiting already"
                                         " ([socket] waiting_calls)")

    def suspended(self, client: Client, call: Pending) -> None:
        """``call`` waits: it counts against its process's and its user's bounds. Past the
        user's (waiting_calls_per_user), it is answered ENOBUFS at once instead."""
        if not self.users.room("calls", client.uid):
            self.fail(call, errno.ENOBUFS, f"{self.cfg.socket_limits.waiting_calls_per_user} calls of user "
                                           f"{client.uid} are waiting already ([socket] waiting_calls_per_user)")
            return
        client.waiting.add(call)
        call.uid = client.uid
        self.users.take("calls", client.uid)

    def track(self, client: Client, call: Pending) -> bool:
        """Remember each thread's last call; a repeat of it (the client asks again
        what it asked before our restart) is answered from that, not done twice.
        False: nothing more to do for this one."""
        if call.nowait:
            return True                  # a datagram never asked again: nothing to remember
        prev = client.calls.get(call.ident)
        if prev is not None and prev.req == call.req:
            if prev.done and self.reply_again(prev):
                self.counters["calls_repeated"] += 1
                return False
            if prev.done:
                self.counters["replies_lost"] += 1     # too big to keep (a datagram): done afresh
            if not prev.restored:
                self.counters["calls_repeated"] += 1      # still pending: its answer comes
                return False
            call.resumed = True
        if call.code in REPEATABLE:
            return True                  # done again if asked again: nothing to remember
        client.calls[call.ident] = call
        client.calls.move_to_end(call.ident)
        while len(client.calls) > CALLS_KEPT:
            self.state.forget_call(client, client.calls.popitem(last=False)[0])
        self.state.touch_call(client, call)
        return True

    def reply_again(self, call: Pending) -> bool:
        if call.reply is None and call.rx is not None:     # a stream read's data, from the ring
            sid, off, n, trunc, want_fds = call.rx
            sock = self.socks.get(sid)
            data = self.state.rx_read(sock, off, n) if sock is not None else None
            if data is not None:
                result = [bytes(n) if trunc else data, None, 0, n, *([[]] if want_fds else [])]
                call.reply = self._frame(call.req, 0, result, sock)
        if call.reply is None:
            return False
        self.frames.append([call.ident, call.reply])
        return True

    def _frame(self, req: int, err: int, result: object, sock: Sock | None) -> bytes:
        ready = None
        if sock is not None:
            ready = [sock.fd, *sock.readiness(), sock.id]
            self.state.touch(sock)
        return sys_reply(req, err, result, ready)

    def _reply(self, ident: bytes, req: int, err: int, result: object, sock: Sock | None = None) -> bytes:
        """Queue a reply; it leaves at the end of the turn, after the state is saved."""
        frame = self._frame(req, err, result, sock)
        self.frames.append([ident, frame])
        return frame

    def answer(self, call: Pending, result: object, sock: Sock | None = None) -> None:
        if call.done:
            return
        call.done = True
        if call.uid is not None:
            self.users.give("calls", call.uid)
            call.uid = None
        if call.nowait:
            return                       # nobody waits for it
        call.reply = self._reply(call.ident, call.req, 0, result, sock)
        self.call_done(call)

    def fail(self, call: Pending, err: int, text: str, sock: Sock | None = None) -> None:
        if call.nowait and not call.done:
            # the caller went on: the error is the socket's next one (SO_ERROR, the next call, POLLERR),
            # as an ICMP error is; a send on a descriptor closed meanwhile has no socket to tell
            call.done = True
            self.counters["nowait_send_errors"] += 1
            # EPIPE (after a shutdown): the state that caused it answers the next call the same way
            if sock is not None and err not in (errno.EBADF, errno.EPIPE):
                sock.err = err
                self.wake_readers(sock)
                self.notify(sock)
            return
        if not call.done:
            call.done = True
            if call.uid is not None:
                self.users.give("calls", call.uid)
                call.uid = None
            call.rx = None
            call.reply = self._reply(call.ident, call.req, err, text, sock)
            self.call_done(call)

    def call_done(self, call: Pending) -> None:
        client = self.clients.get(call.ident.split(b".", 1)[0])
        if client is not None and client.calls.get(call.ident) is call:
            self.state.touch_call(client, call)

    def notify(self, sock: Sock) -> None:
        """Push a readiness change to the holders' event channels, if one of them
        watches the socket (asked with SYS_WATCH); replies carry it otherwise."""
        before = sock.ready_ver
        ver, m = sock.readiness()
        if ver == before:
            return
        self.state.touch(sock)
        # an error (and its clearing) is pushed even to a socket nobody selects on: the
        # client library sends UDP without waiting only while it knows of none pending
        err = bool(m & POLLERR)
        if not (sock.watched or err or sock.err_shown):
            return
        sock.err_shown = err
        for client, fd in [(sock.client, sock.fd), *sock.holders]:
            if client.events is not None:
                self.frames.append([client.events, ready_event(fd, ver, m, sock.id)])

    def dispatch(self, client: Client, call: Pending) -> None:
        code, f = call.code, call.fields
        if code == SYS_SOCKET:
            fd = self.sys_socket(client, f.family, f.type, f.proto)
            self.answer(call, fd, client.fds[fd])      # the reply carries its readiness and id
            return
        if code == SYS_NETSTAT:
            self.answer(call, self.show("sockets"))
            return
        if code == SYS_SOCKETPAIR:
            self.answer(call, self.unix_socketpair(client, f.family, f.type, f.proto))
            return
        if code == SYS_SENDMSG:     # a sendto that passes sockets along
            call.fds = [self.sock_of(client, fd) for fd in f.fds if type(fd) is int]
            if len(call.fds) != len(f.fds):
                raise OSError(errno.EBADF, "Bad file descriptor")
            if call.fds and f.fd in client.fds and client.fds[f.fd].family != ksock.AF_UNIX:
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            call.code, call.fields = SYS_SENDTO, SENDTO_FIELDS._make(f[:7])
            code, f = call.code, call.fields
        elif code == SYS_RECVMSG:
            call.code, call.want_fds = SYS_RECVFROM, True
            code = call.code
        sock = self.sock_of(client, f.fd)
        if (call.many or call.nowait) and not (sock.family in INET_FAMILIES and sock.type == ksock.SOCK_DGRAM):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")    # UDP only: reads ahead, sends unanswered
        if call.resumed and sock.stream and sock.family in INET_FAMILIES and self.resume_stream(sock, call):
            return
        if call.resumed and code == SYS_BIND and sock.bound and sock.family in INET_FAMILIES:
            self.answer(call, 0, sock)           # its answer was lost with our restart
            return
        if code == SYS_WATCH:
            if not sock.watched:
                sock.watched = True
                self.state.touch(sock)
            self.answer(call, 0, sock)           # the reply carries its readiness now
            return
        if code == SYS_DUP:
            fd = self.new_fd(client)
            client.fds[fd] = sock
            sock.refs += 1
            self.answer(call, [fd, sock.id, *sock.readiness()], sock)
            return
        if code == SYS_CLOSE and sock.refs > 1:   # another fd still names it: only this one goes
            self.drop_fd(client, f.fd)
            self.answer(call, 0)
            return
        if code == SYS_BIND and sock.family in INET_FAMILIES and sock.type != ksock.SOCK_RAW \
                and type(f.port) is int and 0 < f.port <= 0xFFFF:
            self.bind_permitted(client, sock, f.addr, f.port)
        calls, family_call = self.families.get((sock.family, sock.type), NO_FAMILY)
        if code in calls:
            family_call(sock, call)
        elif code in (SYS_LISTEN, SYS_ACCEPT):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        elif code == SYS_GETSOCKNAME:
            self.answer(call, [sock_ntoa(sock, sock.laddr, self.scope6), sock.lport], sock)
        elif code == SYS_SETSOCKOPT:
            self.setsockopt(sock, f.level, f.name, f.value, client)
            self.answer(call, 0, sock)
        elif code == SYS_GETSOCKOPT:
            value = self.getsockopt(sock, f.level, f.name, call)
            if value is not ASKED:
                self.answer(call, value, sock)
        elif code == SYS_IOCTL:
            self.answer(call, self.ioctl(sock, f.request), sock)
        else:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    def sys_socket(self, client: Client, family: int, type_: int, proto: int) -> int:
        stype = type_ & SOCK_TYPE_MASK
        if family in INET_FAMILIES and stype == ksock.SOCK_DGRAM:
            if proto not in (0, ksock.IPPROTO_UDP):
                raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        elif family in INET_FAMILIES and stype == ksock.SOCK_STREAM:
            if proto not in (0, ksock.IPPROTO_TCP):
                raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        elif family in INET_FAMILIES and stype == ksock.SOCK_RAW:
            self.raw_socket_check(client, proto, family)
        elif family == ksock.AF_UNIX:
            self.unix_socket_check(stype, proto)
        elif family in INET_FAMILIES:
            raise OSError(errno.ESOCKTNOSUPPORT, "Socket type not supported")
        else:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return self.new_sock(client, family, stype, proto).fd

    def new_sock(self, client: Client, family: int, stype: int, proto: int) -> Sock:
        fd = self.new_fd(client)
        if family in INET_FAMILIES:
            proto = {ksock.SOCK_STREAM: ksock.IPPROTO_TCP, ksock.SOCK_DGRAM: ksock.IPPROTO_UDP}.get(stype, proto)
        tcp = family in INET_FAMILIES and stype == ksock.SOCK_STREAM
        rcvbuf, sndbuf = (self.cfg.tcp_rmem, self.cfg.tcp_wmem) if tcp else (self.cfg.socket_rcvbuf,
                                                                             self.cfg.socket_sndbuf)
        s = Sock(self.new_sock_id(client.uid), client, fd, family, stype, proto, rcvbuf, sndbuf)
        s.conn = s.id
        self.owned(s, client.uid)
        client.fds[fd] = s
        self.socks[s.id] = s
        if stype == ksock.SOCK_RAW:
            self.raw_opened(s)
        return s

    def bind_permitted(self, client: Client, sock: Sock, addr: object, port: int) -> None:
        """The caller's right to the port, as inet_bind judges it: a privileged port needs
        CAP_NET_BIND_SERVICE (EACCES); a SO_REUSEPORT group takes members of its owner's
        uid only (EADDRINUSE), so another user cannot take a share of a service's traffic."""
        creds = None
        if port < credentials.unprivileged_port_start():
            creds = credentials.creds_of(client.pid, client.start)
            if not creds.capable(credentials.CAP_NET_BIND_SERVICE):
                raise OSError(errno.EACCES, "Permission denied")
        if not sock.reuseport:
            return
        a = sock_aton(sock, addr) if isinstance(addr, str) else 0
        for other in self.socks.values():
            if other is sock or not other.reuseport or other.lport != port or other.type != sock.type \
                    or other.family != sock.family or not (other.bound or other.binding) \
                    or (a and other.laddr and a != other.laddr):
                continue
            creds = creds or credentials.creds_of(client.pid, client.start)
            try:
                theirs = credentials.creds_of(other.client.pid, other.client.start).uid
            except OSError:
                continue                    # its creator has gone: the port table decides
            if theirs != creds.uid:
                raise OSError(errno.EADDRINUSE, "Address already in use")

    def park(self, sock: Sock, queue: collections.deque, call: Pending, timeout: float | None) -> None:
        """Suspend a call until it can complete, or its timeout expires."""
        if timeout is not None:
            self.arm(call, timeout)
        queue.append(call)

    def arm(self, call: Pending, timeout: float) -> None:
        if not 0 <= timeout < MAX_TIMEOUT:      # a NaN at the top of the heap would stall every timer
            raise OSError(errno.EINVAL, "Invalid argument")
        call.deadline = time.monotonic() + timeout
        heapq.heappush(self.timers, (call.deadline, next(self.timer_seq), call))

    def take_error(self, sock: Sock) -> OSError:
        """The socket's pending error (SO_ERROR), cleared as the kernel clears it on report."""
        err, sock.err = sock.err, 0
        self.notify(sock)
        return OSError(err, os.strerror(err))

    def fail_with_error(self, sock: Sock, call: Pending) -> None:
        exc = self.take_error(sock)
        self.fail(call, exc.errno, exc.strerror, sock)

    def wake_readers(self, sock: Sock) -> None:
        while sock.readers:
            call = sock.readers[0]
            if call.done:
                sock.readers.popleft()
                continue
            if not self.try_recv(sock, call):
                break
            sock.readers.popleft()

    def close_sock(self, sock: Sock) -> None:
        self.state.touch(sock)
        if sock.client.fds.get(sock.fd) is sock:
            sock.client.free_fd(sock.fd)
        if self.socks.pop(sock.id, None) is not None:
            self.users.give("sockets", sock.uid)
        if sock.family == ksock.AF_UNIX:
            self.unix_close(sock)
        elif sock.stream:
            self.close_stream(sock)
        for call in list(sock.readers) + sock.after_bind:
            self.fail(call, errno.EBADF, "Bad file descriptor")
        sock.readers.clear()
        sock.after_bind = []
        while sock.rcvq:
            skb, _, _, passed = self.dgram_pop(sock)
            self.pool.free(skb)
            self.deliver_passed(None, passed)
        if sock.type == ksock.SOCK_RAW:
            self.raw_update()
        elif sock.bound and not sock.stream and sock.family in INET_FAMILIES:
            self.udp_msg(encode(UDP_UNBIND, sock.id))

    def udp_msg(self, msg: bytes) -> None:
        self._queue("udp", msg)

    def tcp_msg(self, msg: bytes) -> None:
        self._queue("tcp", msg)

    def _queue(self, service: str, msg: bytes) -> None:
        """Messages to udp and tcp go out in order and are retried until accepted:
        while a peer restarts, our PUSH socket may not be reconnected yet."""
        box = self.outbox[service]
        if len(box) >= OUTBOX_MAX:
            box.popleft()
            self.counters[f"{service}_outbox_overflow"] += 1
        box.append(msg)        # sent at the end of the turn, after the state is saved

    def on_message(self, code: int, fields: tuple) -> None:
        if code == UDP_DELIVER:
            self.udp_deliver(fields.items)
        elif code == UDP_BOUND:
            self.on_bound(*fields)
        elif code == UDP_SOCK_ERR:
            sock = self.socks.get(fields.sock)
            if sock is not None and fields.err > 0:
                sock.err = fields.err
                self.wake_readers(sock)
                self.notify(sock)
        elif code == UDP_RESYNC:
            self.resync_udp()
        elif code == RAW_DELIVER:
            self.raw_deliver(fields.handles)
        elif code == TCP_EVENTS:
            self.on_tcp_events(fields.items)
        else:
            self.counters["unexpected_messages"] += 1

    def timer_at(self) -> float | None:
        while self.timers and self.timers[0][2].done:
            heapq.heappop(self.timers)
        times = [self.next_client_check]
        if self.timers:
            times.append(self.timers[0][0])
        if self.credit_due is not None:
            times.append(self.credit_due)
        return min(times)

    def on_timer(self, now: float) -> None:
        if self.credit_due is not None and now >= self.credit_due:
            self.credits_due()
        while self.timers and self.timers[0][0] <= now:
            _, _, call = heapq.heappop(self.timers)
            if not call.done:
                self.fail(call, errno.ETIMEDOUT, "timed out")
        if now >= self.next_client_check:
            self.next_client_check = now + CLIENT_CHECK
            for cid, c in list(self.clients.items()):
                if procfs.start_time(c.pid) != c.start:
                    self.client_gone(c)

    def show(self, what: str) -> object:
        if what == "sockets":
            return [self.stream_row(s) if s.stream else self.dgram_row(s) for s in self.socks.values()]
        return super().show(what)


def _peek_req(frame: bytes) -> int | None:
    """The request id of a message the schema refused, so it can still be answered."""
    try:
        u = msgpack.Unpacker(max_buffer_size=64)
        u.feed(frame[:32])
        if u.read_array_header() < 2:
            return None
        u.unpack()
        req = u.unpack()
        return req if type(req) is int else None
    except Exception:
        return None
