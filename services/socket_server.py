"""The socket layer (sys_socketcall): per-client fd tables, socket queues, blocking calls.

Applications' client libraries talk to one ROUTER endpoint. Each call names a
file descriptor in the caller's own table, so a client can never reach
another's sockets. A call that cannot complete is suspended here (the client
does not poll) and answered when data arrives, the socket closes, or its
timeout expires. Readiness changes are pushed to the client's event channel
so that select/poll work on the client's notifier fds. A client process that
disappears has its sockets closed, as process exit closes fds.

Datagrams stay in their skbs in the receive queue until read; the queue is
bounded by SO_RCVBUF counted in slot sizes, as Linux counts truesize.
Errors are OSError inside; they become errno values in exactly one place,
``_reply``.
"""

from __future__ import annotations

import collections
import errno
import heapq
import itertools
import os
import resource
import socket as ksock
import struct
import time
import weakref
from dataclasses import dataclass, field

import msgpack
import zmq

from services.base import Service, main
from services.routes import fib_from_config, local_addrs
from services.socket_raw import RawSockets
from services import credentials
from services.socket_state import CALLS_KEPT, PENDING, REPLIED, REPLIED_RX, SOCK_FIELDS, SocketState
from services.socket_stream import StreamSockets
from services.socket_unix import UNIX_CALLS, UnixSockets
from services.user_ledger import UserLedger
from shared import procfs
from shared.bytequeue import ByteQueue
from shared.ipc import endpoints
from shared.ipc.codec import BadMessage, decode, encode
from shared.ipc.zflags import EVENTS, NOBLOCK, RCVMORE, SNDMORE
from shared.ipc.messages import (BIND_RESTORE, SYS_ACCEPT, SYS_BIND, SYS_CLOSE, SYS_CONNECT,
                                 SYS_GETPEERNAME, SYS_GETSOCKNAME, SYS_GETSOCKOPT, SYS_HELLO, SYS_LISTEN,
                                 SYS_NETSTAT, SYS_RECVFROM, SYS_SENDTO, SYS_SETSOCKOPT, SYS_SHUTDOWN,
                                 SYS_SOCKET, SYS_DUP, SYS_IOCTL, SYS_LAST, SYS_SENDTO_NOWAIT, SYS_WATCH,
                                 SYS_RECVFROM_MANY,
                                 SYS_RECVMSG, SYS_SENDMSG, SYS_SOCKETPAIR, SIOCATMARK, SIOCINQ, SIOCOUTQ,
                                 RAW_DELIVER, RMEM_MAX, TCP_EVENTS, UDP_BIND, UDP_BOUND, UDP_CONNECT,
                                 UDP_DELIVER, UDP_RESYNC, UDP_SEND, UDP_SOCK_ERR, UDP_UNBIND, TCP_RESYNC,
                                 TCP_GETINFO, TCP_SETOPT)
from shared.proto import sockopt
from shared.proto.tcp.info import STATE_CLOSE, STATE_LISTEN, idle_info
from shared.proto.tcp.tcb import TcpConfig
from shared.skb import NoBuffers, Skb
from shared.wire.ipv4 import DEFAULT_TTL

MAX_UDP_PAYLOAD = 65507
DGRAM_RMEM_MIN = 4096             # net.ipv4.udp_rmem_min: a socket's queue may hold this much whatever the total
ASKED = object()                  # getsockopt: answered when tcp tells
MAX_FDS = 1024                    # descriptors per client when its RLIMIT_NOFILE cannot be read
NOFILE_NEAR = 16                  # this close to it, a new descriptor reads the limit and /proc again
SYSCALL_FRAME_MAX = 4 << 20       # bytes of one frame a client may send (ZMQ_MAXMSGSIZE)
POLLIN, POLLOUT, POLLERR, POLLHUP = 0x1, 0x4, 0x8, 0x10
CLIENT_CHECK = 1.0                # seconds between checks that client processes live
OUTBOX_RETRY = 0.02               # seconds between attempts to reach a restarting udp
OUTBOX_MAX = 65536
RESTART_NOTICE_FOR = 10.0         # seconds to keep trying to tell a client we restarted
RESTART_NOTICE_RETRY = 0.004      # seconds between tries (its event channel reconnects every 5 ms)
# calls that change nothing: a repeat after a restart may simply do them again
IDENT_MAX = 120                    # bytes of a DEALER identity: the client id, a dot, the thread's part
MAX_TIMEOUT = 9.2e9                # seconds: CPython's own bound (int64 nanoseconds); NaN fails the test too
RECV_AHEAD_N, RECV_AHEAD_BYTES = 64, 256 * 1024   # datagrams a SYS_RECVFROM_MANY reply takes along, at most
# not SO_ERROR: it clears
REPEATABLE = frozenset((SYS_GETSOCKNAME, SYS_GETPEERNAME, SYS_IOCTL, SYS_NETSTAT, SYS_WATCH))
SOCK_TYPE_MASK = 0xF              # SOCK_NONBLOCK / SOCK_CLOEXEC live above



def aton(addr: str) -> int:
    """Dotted quad to int, strictly (inet_pton, not inet_aton)."""
    try:
        return int.from_bytes(ksock.inet_pton(ksock.AF_INET, addr), "big")
    except (OSError, ValueError):
        raise OSError(errno.EINVAL, f"invalid IPv4 address {addr!r}") from None


def ntoa(addr: int) -> str:
    return ksock.inet_ntop(ksock.AF_INET, addr.to_bytes(4, "big"))


def _check_port(port: int) -> int:
    if not 0 <= port <= 0xFFFF:
        raise OSError(errno.EINVAL, "port must be 0-65535")
    return port


@dataclass(eq=False)
class Pending:
    """A suspended call: answered later through ``ident`` with request id ``req``."""
    ident: bytes
    req: int
    code: int
    fields: list
    deadline: float | None
    done: bool = False
    got: bytearray | None = None   # MSG_WAITALL: bytes already taken from the socket
    fds: list | None = None        # SYS_SENDMSG: sockets being passed (SCM_RIGHTS)
    want_fds: bool = False         # SYS_RECVMSG: the caller takes passed descriptors
    sender: object = None          # AF_UNIX datagram waiting for room: the sending socket
    reply: bytes | None = None     # the reply as sent, for a repeat of the call
    rx: list | None = None         # a stream read's reply: [socket id, stream offset, length, MSG_TRUNC]
    resumed: bool = False          # asked again after our restart, which found it pending
    restored: bool = False         # known from the saved state only
    nowait: bool = False           # SYS_SENDTO_NOWAIT: nobody waits for the answer
    many: bool = False             # SYS_RECVFROM_MANY: the reply takes queued datagrams along
    uid: int | None = None         # suspended: charged to this user's waiting calls until done


@dataclass(eq=False)
class Sock:
    id: int
    client: "Client"
    fd: int
    family: int
    type: int
    proto: int
    rcvbuf: int
    sndbuf: int
    laddr: int = 0
    lport: int = 0
    raddr: int = 0
    rport: int = 0
    bound: bool = False
    binding: bool = False          # a bind is on its way to udp
    reuseaddr: bool = False
    broadcast: bool = False
    err: int = 0                   # pending SO_ERROR
    shut_rd: bool = False
    shut_wr: bool = False
    rcvq: collections.deque = field(default_factory=collections.deque)   # (skb, saddr, sport, passed socks)
    rcvq_mem: int = 0
    readers: collections.deque = field(default_factory=collections.deque)
    after_bind: list = field(default_factory=list)   # calls waiting for the bind
    ready_ver: int = 0
    ready_mask: int = -1
    watched: bool = False          # a holder selects/polls on it: readiness changes go to event channels
    err_shown: bool = False        # the last readiness pushed had POLLERR
    # SOCK_STREAM
    st: str = "new"                # new, listening, connecting, connected, closed
    conn: int = 0                  # the connection's id in tcp
    rbuf: ByteQueue = field(default_factory=ByteQueue)
    eof: bool = False
    credited: int = 0              # stream offset tcp was last told the application read up to (TCP_RCVD)
    snd_pending: int = 0           # handed to tcp, not yet acknowledged by the peer
    snd_sent: int = 0              # stream bytes ever handed to tcp
    sndkeep: ByteQueue = field(default_factory=ByteQueue)   # the unacknowledged ones, to resend after tcp restarts
    acceptq: collections.deque = field(default_factory=collections.deque)
    writers: collections.deque = field(default_factory=collections.deque)
    connect_call: Pending | None = None
    nodelay: bool = False
    keepalive: bool = False
    linger: int = -1               # SO_LINGER seconds; -1 off, 0 abort on close
    backlog: int = 0
    rcv_total: int = 0             # stream bytes ever received: rbuf[0] is at rcv_total - len(rbuf)
    oobinline: bool = False        # SO_OOBINLINE
    urg: int = 0                   # urgent data: URG_NONE, URG_NOTYET, URG_VALID, URG_READ (tcp_sock.urg_data)
    urg_off: int = 0               # its stream offset
    oob: int = 0                   # the urgent byte, once it arrived
    hdrincl: bool = False          # SOCK_RAW: IP_HDRINCL
    tcpopts: dict = field(default_factory=dict)   # TCP- and IP-level options set (shared/proto/sockopt.py)
    rcvlowat: int = 1              # SO_RCVLOWAT: a stream read waits for this many bytes (or its end)
    reuseport: bool = False        # SO_REUSEPORT: binds into a group that shares the port (shared/proto/udp.py)
    refs: int = 1                  # fds naming it (dup, passed) and passings in flight
    holders: list = field(default_factory=list)   # (client, fd) holding it besides (client, fd)
    # AF_UNIX
    uname: object = None           # bound name: a path (str) or an abstract name (bytes)
    ukey: object = None            # its key in the name table
    peer: "Sock | None" = None     # the other end (stream), or the default destination (dgram)
    scm: list = field(default_factory=list)       # stream: (offset, [socks]) passed with the bytes there
    origin: int = 0                # accepted connection: the listener whose queue it waits in
    saved: list | None = None      # the record last saved (socket_state)
    uid: int = -1                  # whose it is (sk_uid: its maker's), charged in the user ledger
    sent_charged: int = 0          # stream bytes sent, not yet acknowledged, charged to the user (mem)

    @property
    def stream(self) -> bool:
        return self.type == ksock.SOCK_STREAM

    def readers_waiting(self) -> bool:
        """Reads still suspended on the socket, which a new one queues behind; a timed-out
        one at the head no longer counts (it stays there until the next wake otherwise)."""
        while self.readers and self.readers[0].done:
            self.readers.popleft()
        return bool(self.readers)

    def readiness(self) -> list[int]:
        """[version, mask] after bringing the version up to date."""
        m = self.mask()
        if m != self.ready_mask:
            self.ready_mask = m
            self.ready_ver += 1
        return [self.ready_ver, m]

    def mask(self) -> int:
        if self.stream:
            return self._stream_mask()
        m = POLLOUT if not self.shut_wr else 0
        if self.rcvq or self.shut_rd:
            m |= POLLIN
        if self.err:
            m |= POLLERR | POLLIN
        return m

    @property
    def consumed(self) -> int:
        """Stream offset of the next byte to read (rbuf[0])."""
        return self.rcv_total - len(self.rbuf)

    def _stream_mask(self) -> int:
        m = 0
        # the urgent byte next in line is not data to read (tcp_poll's target++)
        skip = self.urg and not self.oobinline and self.urg_off == self.consumed
        if len(self.rbuf) - skip >= self.rcvlowat or self.eof or self.shut_rd or \
                (self.st == "listening" and self.acceptq):
            m |= POLLIN
        if self.st == "connected" and not self.shut_wr and self.snd_pending < self.sndbuf:
            m |= POLLOUT
        if self.err:
            m |= POLLERR | POLLIN | POLLOUT
        if self.eof and (self.shut_wr or self.st == "closed"):
            m |= POLLHUP
        return m


@dataclass(eq=False)
class Client:
    cid: bytes
    pid: int
    start: str
    uid: int = -1                  # as the kernel said at its hello (-1: not known)
    fds: dict[int, Sock] = field(default_factory=dict)
    events: bytes | None = None
    pidfd: int = -1                # readable when the process exits
    fd_hint: int = 3               # no free descriptor below this one
    nofile: int = 0                # its RLIMIT_NOFILE (soft) as last read; read again when near
    own_fds: int = 0               # kernel descriptors it holds for itself (procfs.program_fds), as last read
    # each calling thread's (DEALER's) last call: a call repeated after our restart is answered once
    calls: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    waiting: weakref.WeakSet = field(default_factory=weakref.WeakSet)   # its suspended calls (a bound)

    def free_fd(self, fd: int) -> "Sock | None":
        """Take ``fd`` out of the table (its socket, if it named one); keeps ``fd_hint`` true."""
        self.fd_hint = min(self.fd_hint, fd)
        return self.fds.pop(fd, None)


def _nofile(pid: int) -> int:
    """The process's RLIMIT_NOFILE (soft): how many mkstack descriptors it may hold."""
    try:
        soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return MAX_FDS
    return 1 << 30 if soft == resource.RLIM_INFINITY else soft


class SocketServer(StreamSockets, RawSockets, UnixSockets, Service):
    kind = "socket_server"
    aton = staticmethod(aton)
    ntoa = staticmethod(ntoa)
    check_port = staticmethod(_check_port)

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
        self.watch_socket(self.sys, self.serve_sys)
        self.open_hello()
        self.clients: dict[bytes, Client] = {}
        self.socks: dict[int, Sock] = {}
        self.sock_ids_next = 1
        self.reqs_next = 1              # requests to udp and tcp
        self.pending_binds: dict[int, Sock] = {}
        self.timers: list[tuple[float, int, Pending]] = []
        self.timer_seq = itertools.count()
        self.next_client_check = time.monotonic() + CLIENT_CHECK
        self.fib = fib_from_config(self.cfg, self.rundir)
        self.local = {int.from_bytes(a, "big") for a in local_addrs(self.cfg, self.rundir)}
        self.bcast = {int.from_bytes(d.addr.network.broadcast_address.packed, "big")
                      for d in self.cfg.devices} | {0xFFFFFFFF}
        self.udp_sends: list[tuple[list, Skb]] = []
        # control messages to udp and tcp, in order, retried while a peer restarts
        self.outbox: dict[str, collections.deque[bytes]] = {"udp": collections.deque(), "tcp": collections.deque()}
        self.outbox_retry: float | None = None
        self.tcp_reqs: dict[int, tuple[Sock, Pending | None, str, bytes]] = {}
        self.gone_conns: collections.OrderedDict[int, None] = collections.OrderedDict()   # closed here lately
        self.tcp_unsynced: set[int] = set()
        self.lingering: dict[int, Sock] = {}     # conn -> closed socket with data not yet acknowledged
        self.conns: dict[int, Sock] = {}        # tcp conn id -> stream socket
        self.credits_owed: dict[int, Sock] = {}  # sockets whose small reads tcp has not been told of yet
        self.credit_due: float | None = None
        self.peer("udp")
        self.peer("tcp")
        self.raw_init()
        self.unix_names: dict[object, Sock] = {}
        self.gc_running = False            # unix_gc at work (releases inside it must not start another)
        self.dgram_mem = 0                 # slot bytes of every datagram queue (as udp_mem counts)
        self.users = UserLedger(self.cfg.socket_limits, self.counters)
        self.mem_waiters: dict[int, set[Sock]] = {}   # uid -> stream sockets whose sends wait for its memory
        self.frames: list[list[bytes]] = []     # replies and events of this turn, sent after the save
        self.restart_notices: dict[bytes, float] = {}   # client id -> give up telling it at
        self.state = SocketState(self.instance, *self.cfg.stream_bufs_max(2 * RMEM_MAX))
        self.restore()

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

    # -- the RPC boundary ---------------------------------------------------------
    def serve_sys(self) -> None:
        sys_ = self.sys
        for i in range(256):
            if i and not sys_.get(EVENTS) & POLLIN:
                break
            try:
                parts = [sys_.recv(NOBLOCK)]
                while sys_.get(RCVMORE):
                    parts.append(sys_.recv(NOBLOCK))
            except zmq.Again:
                break
            if len(parts) != 2:
                self.counters["bad_calls"] += 1
                continue
            self.syscall(parts[0], parts[1])

    def syscall(self, ident: bytes, frame: bytes) -> None:
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
            self._reply(ident, fields[0], errno.EINVAL, f"caller identity over {IDENT_MAX} bytes")
            return
        if code < SYS_HELLO or code > SYS_LAST:
            self._reply(ident, fields[0], errno.EINVAL, "not a socket call")
            return
        req = fields[0]
        client = call = None
        try:
            if code == SYS_HELLO:
                self._reply(ident, req, 0, self.hello(ident, fields[1], fields[2]))
                return
            client = self.clients.get(ident.split(b".", 1)[0])
            if client is None:
                raise OSError(errno.EPERM, "say SYS_HELLO first")
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
            if code not in (SYS_HELLO, SYS_SOCKET, SYS_NETSTAT) and client is not None and len(fields) > 1:
                sock = client.fds.get(fields[1]) if type(fields[1]) is int else None
            if call is not None:
                self.fail(call, exc.errno or errno.EINVAL, exc.strerror or str(exc), sock)
            elif code == SYS_SENDTO_NOWAIT:
                self.counters["nowait_send_errors"] += 1   # nobody to answer
            else:
                self._reply(ident, req, exc.errno or errno.EINVAL, exc.strerror or str(exc), sock)

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
        return msgpack.packb([req, err, result, ready], use_bin_type=True)

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

    def send_frames(self) -> None:
        send = self.sys.send
        for ident, body in self.frames:
            try:
                send(ident, NOBLOCK | SNDMORE)
                send(body, NOBLOCK)
            except zmq.ZMQError:
                self.counters["frames_undeliverable"] += 1     # the client is gone
        self.frames = []

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
                self.frames.append([client.events, msgpack.packb([0, fd, ver, m, sock.id])])

    # -- calls ----------------------------------------------------------------------
    # -- who a client is --------------------------------------------------------------
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

    def new_client(self, cid: bytes, pid: int, uid: int) -> Client:
        lim = self.cfg.socket_limits
        if len(self.clients) >= lim.max_clients:
            self.counters["clients_refused"] += 1
            raise OSError(errno.ENOBUFS, f"mkstack serves {lim.max_clients} clients at most ([socket] max_clients)")
        if uid != 0 and sum(1 for other in self.clients.values() if other.uid == uid) >= lim.clients_per_user:
            # one user cannot take every client slot from the others (root is not held to it)
            self.counters["clients_refused_user"] += 1
            raise OSError(errno.ENOBUFS, f"user {uid} holds {lim.clients_per_user} client ids already "
                                         "([socket] clients_per_user)")
        if sum(1 for other in self.clients.values() if other.pid == pid) >= lim.clients_per_process:
            self.counters["clients_refused"] += 1
            raise OSError(errno.ENOBUFS, f"process {pid} holds {lim.clients_per_process} client ids already")
        start = procfs.start_time(pid)
        if start is None:
            raise OSError(errno.ESRCH, f"no process {pid}")
        c = self.clients[cid] = Client(cid, pid, start, uid)
        self.counters["clients"] += 1
        self.watch_client(c)
        self.state.touch_client(c)
        return c

    def hello(self, ident: bytes, pid: int, events: bool) -> dict:
        """A thread's (or the event channel's) first call: the id must be one we issued,
        to the process that says it is calling."""
        c = self.clients.get(ident.split(b".", 1)[0])
        if c is None:
            raise OSError(errno.EPERM, "not a client id of this stack (a process gets one from its hello socket)")
        if c.pid != pid:
            raise OSError(errno.EPERM, "client id belongs to another process")
        if events:
            c.events = ident
        self.state.touch_client(c)
        return {"pid": os.getpid()}

    def watch_client(self, c: Client) -> None:
        try:
            # process exit closes fds at once, as the kernel does on exit
            c.pidfd = os.pidfd_open(c.pid)
            self.watch_fd(c.pidfd, lambda c=c: self.client_gone(c))
        except OSError:
            pass          # the periodic check by start time still finds it

    def sock_of(self, client: Client, fd: int) -> Sock:
        s = client.fds.get(fd)
        if s is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return s

    def dispatch(self, client: Client, call: Pending) -> None:
        code, f = call.code, call.fields
        if code == SYS_SOCKET:
            fd = self.sys_socket(client, f[1], f[2], f[3])
            self.answer(call, fd, client.fds[fd])      # the reply carries its readiness and id
            return
        if code == SYS_NETSTAT:
            self.answer(call, self.show("sockets"))
            return
        if code == SYS_SOCKETPAIR:
            self.answer(call, self.unix_socketpair(client, f[1], f[2], f[3]))
            return
        if code == SYS_SENDMSG:     # a sendto that passes sockets along
            call.fds = [self.sock_of(client, fd) for fd in f[7] if type(fd) is int]
            if len(call.fds) != len(f[7]):
                raise OSError(errno.EBADF, "Bad file descriptor")
            if call.fds and f[1] in client.fds and client.fds[f[1]].family != ksock.AF_UNIX:
                raise OSError(errno.EOPNOTSUPP, "Operation not supported")
            call.code, call.fields = SYS_SENDTO, f[:7]
            code, f = call.code, call.fields
        elif code == SYS_RECVMSG:
            call.code, call.want_fds = SYS_RECVFROM, True
            code = call.code
        sock = self.sock_of(client, f[1])
        if (call.many or call.nowait) and not (sock.family == ksock.AF_INET and sock.type == ksock.SOCK_DGRAM):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")    # UDP only: reads ahead, sends unanswered
        if call.resumed and sock.stream and sock.family == ksock.AF_INET and self.resume_stream(sock, call):
            return
        if call.resumed and code == SYS_BIND and sock.bound and sock.family == ksock.AF_INET:
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
            self.drop_fd(client, f[1])
            self.answer(call, 0)
            return
        if code == SYS_BIND and sock.family == ksock.AF_INET and sock.type != ksock.SOCK_RAW \
                and type(f[3]) is int and 0 < f[3] <= 0xFFFF:
            self.bind_permitted(client, sock, f[2], f[3])
        if sock.family == ksock.AF_UNIX and code in UNIX_CALLS:
            self.unix_call(sock, call)
            return
        if sock.stream and code in (SYS_BIND, SYS_CONNECT, SYS_SENDTO, SYS_RECVFROM, SYS_SHUTDOWN, SYS_CLOSE,
                                    SYS_LISTEN, SYS_ACCEPT, SYS_GETPEERNAME):
            self.stream_call(sock, call)
            return
        if code in (SYS_LISTEN, SYS_ACCEPT):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        if sock.type == ksock.SOCK_RAW and code in (SYS_BIND, SYS_CONNECT, SYS_SENDTO, SYS_RECVFROM, SYS_SHUTDOWN,
                                                    SYS_CLOSE, SYS_GETSOCKNAME, SYS_GETPEERNAME):
            self.raw_call(sock, call)
            return
        if code == SYS_CLOSE:
            self.close_sock(sock)
            self.answer(call, 0)
        elif code == SYS_BIND:
            self.sys_bind(sock, call, aton(f[2]), _check_port(f[3]))
        elif code == SYS_CONNECT:
            self.sys_connect(sock, call, f[2], f[3])
        elif code == SYS_SENDTO:
            self.sys_sendto(sock, call)
        elif code == SYS_RECVFROM:
            self.sys_recvfrom(sock, call)
        elif code == SYS_GETSOCKNAME:
            self.answer(call, [ntoa(sock.laddr), sock.lport], sock)
        elif code == SYS_GETPEERNAME:
            if not sock.raddr:
                raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
            self.answer(call, [ntoa(sock.raddr), sock.rport], sock)
        elif code == SYS_SETSOCKOPT:
            self.setsockopt(sock, f[2], f[3], f[4], client)
            self.answer(call, 0, sock)
        elif code == SYS_GETSOCKOPT:
            value = self.getsockopt(sock, f[2], f[3], call)
            if value is not ASKED:
                self.answer(call, value, sock)
        elif code == SYS_SHUTDOWN:
            self.sys_shutdown(sock, f[2])
            self.answer(call, 0, sock)
        elif code == SYS_IOCTL:
            self.answer(call, self.ioctl(sock, f[2]), sock)

    def sys_socket(self, client: Client, family: int, type_: int, proto: int) -> int:
        stype = type_ & SOCK_TYPE_MASK
        if family == ksock.AF_INET and stype == ksock.SOCK_DGRAM:
            if proto not in (0, ksock.IPPROTO_UDP):
                raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        elif family == ksock.AF_INET and stype == ksock.SOCK_STREAM:
            if proto not in (0, ksock.IPPROTO_TCP):
                raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        elif family == ksock.AF_INET and stype == ksock.SOCK_RAW:
            self.raw_socket_check(client, proto)
        elif family == ksock.AF_UNIX:
            self.unix_socket_check(stype, proto)
        elif family == ksock.AF_INET:
            raise OSError(errno.ESOCKTNOSUPPORT, "Socket type not supported")
        else:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return self.new_sock(client, family, stype, proto).fd

    def new_sock(self, client: Client, family: int, stype: int, proto: int) -> Sock:
        fd = self.new_fd(client)
        if family == ksock.AF_INET:
            proto = {ksock.SOCK_STREAM: ksock.IPPROTO_TCP, ksock.SOCK_DGRAM: ksock.IPPROTO_UDP}.get(stype, proto)
        tcp = family == ksock.AF_INET and stype == ksock.SOCK_STREAM
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

    def owned(self, sock: Sock, uid: int) -> None:
        """``sock`` is ``uid``'s from now until it is closed (as sk_uid: its maker's)."""
        sock.uid = uid
        self.users.take("sockets", uid)

    def drop_fd(self, client: Client, fd: int) -> None:
        """One descriptor naming the socket goes; the socket goes with the last reference."""
        sock = client.free_fd(fd)
        if sock is None:
            return
        self.state.touch(sock)
        if (client, fd) in sock.holders:
            sock.holders.remove((client, fd))
        elif sock.client is client and sock.fd == fd:
            # the primary holder goes: another fd of this client, or another holder, takes over
            mine = next((f for f, s in client.fds.items() if s is sock), None)
            if mine is not None:
                sock.fd = mine
            elif sock.holders:
                sock.client, sock.fd = sock.holders.pop(0)
        self.release(sock)

    def release(self, sock: Sock) -> None:
        sock.refs -= 1
        if sock.refs <= 0:
            self.close_sock(sock)
        else:
            self.unix_gc()           # it may be left only in flight, inside a cycle of passings

    def give_fd(self, client: Client, sock: Sock) -> list:
        """Install a passed socket in ``client``'s table (the passing's reference moves to the fd)."""
        fd = self.new_fd(client)
        client.fds[fd] = sock
        self.state.touch(sock)
        if sock.client is client and sock.fd < 0:
            sock.fd = fd
        else:
            sock.holders.append((client, fd))
        return [fd, sock.id, *sock.readiness(), sock.family, sock.type, sock.proto]

    def new_fd(self, client: Client) -> int:
        """The lowest free descriptor number, as the kernel allocates them; EMFILE when the
        process's descriptors, its mkstack sockets and its own kernel ones, would pass its
        RLIMIT_NOFILE (both read again only near it)."""
        if len(client.fds) + client.own_fds >= client.nofile - NOFILE_NEAR:
            client.nofile = _nofile(client.pid)        # it may have raised its limit
            client.own_fds = procfs.program_fds(client.pid)
            if len(client.fds) + client.own_fds >= client.nofile:
                raise OSError(errno.EMFILE, "Too many open files")
        fd = client.fd_hint
        while fd in client.fds:
            fd += 1
        client.fd_hint = fd + 1
        return fd

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
        a = aton(addr) if isinstance(addr, str) else 0
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

    # bind: the port table lives in udp, so the answer comes back as UDP_BOUND
    def sys_bind(self, sock: Sock, call: Pending, addr: int, port: int) -> None:
        if sock.bound or sock.binding:
            raise OSError(errno.EINVAL, "Invalid argument")
        if addr and addr not in self.local and addr not in self.bcast:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        sock.after_bind.append(call)
        self.request_bind(sock, addr, port)

    def request_bind(self, sock: Sock, addr: int, port: int, restore: bool = False) -> None:
        req = self.new_req()
        self.pending_binds[req] = sock
        sock.binding = not restore
        flags = sockopt.bind_flags(sock.reuseaddr, sock.reuseport) | (BIND_RESTORE if restore else 0)
        self.udp_msg(encode(UDP_BIND, req, sock.id, addr, port, flags))

    def autobind(self, sock: Sock, call: Pending) -> bool:
        """Bind an unbound socket to an ephemeral port first (as inet_autobind); the
        call is retried once the port is known. Returns True if it had to wait."""
        if sock.bound:
            return False
        sock.after_bind.append(call)
        if not sock.binding:
            self.request_bind(sock, 0, 0)
        return True

    def on_bound(self, req: int, sock_id: int, err: int, addr: int, port: int) -> None:
        sock = self.pending_binds.pop(req, None)
        if sock is None or sock.id != sock_id or self.socks.get(sock_id) is not sock:
            if err == 0 and sock_id not in self.socks:
                self.udp_msg(encode(UDP_UNBIND, sock_id))   # closed meanwhile
            return
        was_binding = sock.binding
        sock.binding = False
        self.state.touch(sock)
        if err == 0:
            sock.bound, sock.laddr, sock.lport = True, addr, port
            if sock.raddr:
                self.udp_msg(encode(UDP_CONNECT, sock.id, sock.laddr, sock.raddr, sock.rport))
        waiting, sock.after_bind = sock.after_bind, []
        if not was_binding:
            return
        for call in waiting:
            if err:
                self.fail(call, err, os.strerror(err), sock)
            elif call.code == SYS_BIND:
                self.answer(call, 0, sock)
            else:
                self.redo(sock, call)

    def redo(self, sock: Sock, call: Pending) -> None:
        try:
            if call.code == SYS_SENDTO:
                self.sys_sendto(sock, call)
            elif call.code == SYS_CONNECT:
                self.sys_connect(sock, call, call.fields[2], call.fields[3])
        except OSError as exc:
            self.fail(call, exc.errno or errno.EINVAL, exc.strerror or str(exc), sock)

    def route_src(self, daddr: int) -> int:
        r = self.fib.lookup(daddr.to_bytes(4, "big"))
        if r is None:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return int.from_bytes(r.src, "big")

    def sys_connect(self, sock: Sock, call: Pending, addr: str, port: int) -> None:
        if addr == "":                           # AF_UNSPEC: dissolve the association
            sock.raddr = sock.rport = 0
            if sock.bound:
                self.udp_msg(encode(UDP_CONNECT, sock.id, 0, 0, 0))
            self.answer(call, 0, sock)
            return
        raddr, rport = aton(addr), _check_port(port)
        if rport == 0:
            raise OSError(errno.ECONNREFUSED, "Connection refused")
        src = self.route_src(raddr)
        if raddr in self.bcast and not sock.broadcast:
            raise OSError(errno.EACCES, "Permission denied")
        if self.autobind(sock, call):
            sock.raddr, sock.rport = raddr, rport
            return
        sock.raddr, sock.rport = raddr, rport
        if not sock.laddr:
            sock.laddr = src
        sock.err = 0
        self.udp_msg(encode(UDP_CONNECT, sock.id, sock.laddr, raddr, rport))
        self.answer(call, 0, sock)

    def sys_sendto(self, sock: Sock, call: Pending) -> None:
        _, _, data, flags, addr, port, _tmo = call.fields
        if flags & ksock.MSG_OOB:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        if sock.err:
            raise self.take_error(sock)
        if sock.shut_wr:
            raise OSError(errno.EPIPE, "Broken pipe")
        if len(data) > MAX_UDP_PAYLOAD:
            raise OSError(errno.EMSGSIZE, "Message too long")
        if addr is None:
            if not sock.raddr:
                raise OSError(errno.EDESTADDRREQ, "Destination address required")
            daddr, dport = sock.raddr, sock.rport
        else:
            daddr, dport = aton(addr), _check_port(port)
            if dport == 0:
                raise OSError(errno.EINVAL, "Invalid argument")
        if daddr in self.bcast and not sock.broadcast:
            raise OSError(errno.EACCES, "Permission denied")
        self.route_src(daddr)
        if self.autobind(sock, call):
            return
        try:
            skb = self.pool.alloc(len(data))
        except NoBuffers:
            raise OSError(errno.ENOBUFS, "No buffer space available") from None
        skb.put(len(data))[:] = data
        opts = sock.tcpopts
        self.udp_sends.append(([sock.id, self.pool.give(skb, self.owner_ids["udp"]), daddr, dport,
                                opts.get("tos", 0), opts.get("ttl", DEFAULT_TTL)], skb))
        self.counters["datagrams_sent"] += 1
        self.answer(call, len(data), sock)

    def sys_recvfrom(self, sock: Sock, call: Pending) -> None:
        bufsize, flags, timeout = call.fields[2], call.fields[3], call.fields[4]
        if bufsize < 0:
            raise OSError(errno.EINVAL, "negative buffersize in recvfrom")
        if sock.readers_waiting() or not self.try_recv(sock, call):
            if timeout is not None and timeout <= 0 or flags & ksock.MSG_DONTWAIT:
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
            self.park(sock, sock.readers, call, timeout)

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

    def try_recv(self, sock: Sock, call: Pending) -> bool:
        bufsize, flags = call.fields[2], call.fields[3]
        if sock.rcvq:
            skb, saddr, sport, passed = sock.rcvq[0]
            data = bytes(skb.data[:bufsize])
            truelen = len(skb)
            if not flags & ksock.MSG_PEEK:
                self.dgram_pop(sock)
                self.pool.free(skb)
                fds = self.deliver_passed(sock.client if call.want_fds else None, passed)
                self.dgram_room(sock)
            else:
                fds = []
            addr = saddr if sock.family == ksock.AF_UNIX else ntoa(saddr)   # AF_UNIX: the sender's name
            if call.many:
                extra = self.take_queued(sock) if not flags & ksock.MSG_PEEK else []
                self.answer(call, [data, addr, sport, truelen, extra], sock)
            else:
                self.answer(call, [data, addr, sport, truelen, *([fds] if call.want_fds else [])], sock)
            self.notify(sock)
            return True
        if sock.err:
            self.fail_with_error(sock, call)
            return True
        if sock.shut_rd:
            self.answer(call, [b"", None, 0, 0, *([[]] if call.want_fds else [])], sock)
            return True
        return False

    def take_queued(self, sock: Sock) -> list:
        """The datagrams queued behind the one a SYS_RECVFROM_MANY read, whole, up to
        RECV_AHEAD_N of them and RECV_AHEAD_BYTES: they leave the socket for the
        client library's queue, which serves the next reads without a call."""
        out: list = []
        size = 0
        while sock.rcvq and len(out) < RECV_AHEAD_N and size < RECV_AHEAD_BYTES:
            skb, saddr, sport, _ = self.dgram_pop(sock)
            out.append([bytes(skb.data), ntoa(saddr), sport])
            size += len(skb)
            self.pool.free(skb)
        if out:
            self.counters["datagrams_received_ahead"] += len(out)
        return out

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

    def sys_shutdown(self, sock: Sock, how: int) -> None:
        if how not in (ksock.SHUT_RD, ksock.SHUT_WR, ksock.SHUT_RDWR):
            raise OSError(errno.EINVAL, "Invalid argument")
        if not sock.raddr:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        if how in (ksock.SHUT_RD, ksock.SHUT_RDWR):
            sock.shut_rd = True
        if how in (ksock.SHUT_WR, ksock.SHUT_RDWR):
            sock.shut_wr = True
        self.wake_readers(sock)
        self.notify(sock)

    def setsockopt(self, sock: Sock, level: int, name: int, value: int | str, client: Client) -> None:
        if level == ksock.IPPROTO_TCP and sock.stream and name == ksock.TCP_NODELAY:
            self.set_stream_opt(sock, "nodelay", int(value))
            return
        if (level, name) in sockopt.KEYS and sock.family == ksock.AF_INET and sock.type != ksock.SOCK_RAW:
            key, kept = sockopt.check(level, name, value, sock.stream, sock.tcpopts.get("tos", 0))
            if key == "tos" and kept != sock.tcpopts.get("tos", 0):
                sock.tcpopts["priority"] = sockopt.tos_priority(kept)
            sock.tcpopts[key] = kept
            self.state.touch(sock)
            if sock.stream and sock.st in ("connecting", "connected") and sock.conn:
                self.tcp_msg(encode(TCP_SETOPT, sock.conn, key, kept))
            return
        if not isinstance(value, int):
            raise OSError(errno.EINVAL, "Invalid argument")
        if level == ksock.IPPROTO_IP:
            self.raw_setsockopt(sock, name, value)
            return
        if level != ksock.SOL_SOCKET:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        if name == ksock.SO_KEEPALIVE and sock.stream:
            self.set_stream_opt(sock, "keepalive", value)
        elif name == ksock.SO_LINGER:
            sock.linger = value             # the client library sends seconds, or -1 for off
        elif name == ksock.SO_REUSEADDR:
            sock.reuseaddr = bool(value)
        elif name == ksock.SO_REUSEPORT:
            sock.reuseport = bool(value)
        elif name == ksock.SO_BROADCAST:
            sock.broadcast = bool(value)
        elif name == ksock.SO_OOBINLINE:
            sock.oobinline = bool(value)
        elif name == ksock.SO_RCVBUF:   # the kernel doubles it for bookkeeping overhead
            sock.rcvbuf = max(2304, min(max(value, 0), RMEM_MAX) * 2)
        elif name == ksock.SO_SNDBUF:
            sock.sndbuf = max(4608, min(max(value, 0), RMEM_MAX) * 2)
        elif name == ksock.SO_PRIORITY:     # 0..6 for anyone, the rest with CAP_NET_RAW or CAP_NET_ADMIN
            if not 0 <= value <= sockopt.PRIO_MAX_UNPRIVILEGED and not self.net_admin(client):
                raise OSError(errno.EPERM, "Operation not permitted")
            sock.tcpopts["priority"] = value
            self.state.touch(sock)
        elif name == ksock.SO_MARK:         # the kernel's check first, then: no rule or route matches marks
            if not self.net_admin(client):
                raise OSError(errno.EPERM, "Operation not permitted")
            raise OSError(errno.ENOPROTOOPT, "SO_MARK is not supported by mkstack (nothing matches on marks)")
        elif name == ksock.SO_RCVLOWAT:     # sock_setsockopt: negative is INT_MAX, 0 is 1
            value = value if value >= 0 else 2 ** 31 - 1
            if sock.stream:                 # tcp_set_rcvlowat: at most half the largest receive buffer
                value = min(value, RMEM_MAX >> 1)
            sock.rcvlowat = value or 1
            if sock.stream:
                self.wake_stream(sock)
        else:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")

    def getsockopt(self, sock: Sock, level: int, name: int, call: Pending | None = None) -> object:
        """The option's value, or ASKED: the call is answered when tcp tells (TCP_INFO,
        and TCP_MAXSEG of a connection: the MSS it sends with)."""
        if level == ksock.IPPROTO_TCP and sock.stream and name == ksock.TCP_NODELAY:
            return int(sock.nodelay)
        if level == ksock.IPPROTO_TCP and sock.stream and name in (ksock.TCP_INFO, ksock.TCP_MAXSEG):
            if sock.conn and sock.st in ("connecting", "connected") and call is not None:
                what = "info" if name == ksock.TCP_INFO else "maxseg"
                self.tcp_request(sock, call, what, TCP_GETINFO, sock.conn)
                return ASKED
            if name == ksock.TCP_MAXSEG:
                return sock.tcpopts.get("maxseg") or sockopt.TCP_MSS_DEFAULT
            return idle_info(STATE_LISTEN if sock.st == "listening" else STATE_CLOSE)
        if (level, name) in sockopt.KEYS and sock.family == ksock.AF_INET and sock.type != ksock.SOCK_RAW and \
                (sock.stream or level == ksock.IPPROTO_IP):
            return sockopt.current(sock.tcpopts, level, name, self.cfg.tcp.get("cc", TcpConfig.cc))
        if level == ksock.IPPROTO_TCP and sock.family == ksock.AF_INET and not sock.stream:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")    # ip_getsockopt's answer to SOL_TCP
        if level == ksock.IPPROTO_IP and sock.type == ksock.SOCK_RAW and name == ksock.IP_HDRINCL:
            return int(sock.hdrincl)
        if level != ksock.SOL_SOCKET:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        if name == ksock.SO_KEEPALIVE:
            return int(sock.keepalive)
        if name == ksock.SO_ACCEPTCONN:
            return int(sock.st == "listening")
        if name == ksock.SO_LINGER:
            return sock.linger
        if name == ksock.SO_ERROR:
            return self.take_error(sock).errno if sock.err else 0
        if name == ksock.SO_PEERCRED:
            return self.peercred(sock)
        values = {ksock.SO_REUSEADDR: int(sock.reuseaddr), ksock.SO_REUSEPORT: int(sock.reuseport),
                  ksock.SO_BROADCAST: int(sock.broadcast),
                  ksock.SO_OOBINLINE: int(sock.oobinline),
                  ksock.SO_RCVBUF: sock.rcvbuf, ksock.SO_SNDBUF: sock.sndbuf, ksock.SO_TYPE: sock.type,
                  ksock.SO_PROTOCOL: sock.proto, ksock.SO_DOMAIN: sock.family, ksock.SO_RCVLOWAT: sock.rcvlowat,
                  ksock.SO_PRIORITY: sock.tcpopts.get("priority", 0)}
        if name not in values:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        return values[name]

    @staticmethod
    def net_admin(client: Client) -> bool:
        """sockopt_ns_capable(CAP_NET_RAW) || ...(CAP_NET_ADMIN), of the calling process."""
        creds = credentials.creds_of(client.pid, client.start)
        return creds.capable(credentials.CAP_NET_RAW) or creds.capable(credentials.CAP_NET_ADMIN)

    @staticmethod
    def peercred(sock: Sock) -> bytes:
        """struct ucred of the process at the other end of an AF_UNIX socket (a listener's
        own), as the kernel knows it now (Linux keeps what it was at connect time); none:
        pid 0 and ids -1, as Linux answers unconnected and INET sockets."""
        who = sock.peer.client if sock.family == ksock.AF_UNIX and sock.peer is not None else \
            sock.client if sock.family == ksock.AF_UNIX and sock.st == "listening" else None
        if who is None:
            return struct.pack("3i", 0, -1, -1)
        try:
            c = credentials.creds_of(who.pid, who.start)
        except OSError:
            return struct.pack("3i", 0, -1, -1)         # that process has gone
        return struct.pack("3i", who.pid, c.uid, c.gid)

    def ioctl(self, sock: Sock, request: int) -> int:
        """The socket ioctls an application may read through fcntl.ioctl."""
        if sock.stream:
            if request == SIOCATMARK:
                return int(self.at_mark(sock))
            if sock.st == "listening" and request in (SIOCINQ, SIOCOUTQ):
                raise OSError(errno.EINVAL, "Invalid argument")
            if request == SIOCINQ:   # tcp_inq: up to a pending urgent byte that is not inline
                consumed = sock.consumed
                if sock.urg and not sock.oobinline and consumed <= sock.urg_off < sock.rcv_total:
                    return sock.urg_off - consumed
                return len(sock.rbuf)
            if request == SIOCOUTQ:
                return sock.snd_pending
        elif request == SIOCINQ:
            return len(sock.rcvq[0][0]) if sock.rcvq else 0   # the next datagram's size, as udp_ioctl
        elif request == SIOCOUTQ:
            return 0
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")

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
        elif sock.bound and not sock.stream and sock.family == ksock.AF_INET:
            self.udp_msg(encode(UDP_UNBIND, sock.id))

    # -- from udp -----------------------------------------------------------------
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

    def on_message(self, code: int, fields: list) -> None:
        if code == UDP_DELIVER:
            self.udp_deliver(fields[0])
        elif code == UDP_BOUND:
            self.on_bound(*fields)
        elif code == UDP_SOCK_ERR:
            sock = self.socks.get(fields[0])
            if sock is not None and fields[1] > 0:
                sock.err = fields[1]
                self.wake_readers(sock)
                self.notify(sock)
        elif code == UDP_RESYNC:
            self.resync_udp()
        elif code == RAW_DELIVER:
            self.raw_deliver(fields[1])
        elif code == TCP_EVENTS:
            self.on_tcp_events(fields[0])
        else:
            self.counters["unexpected_messages"] += 1

    def udp_deliver(self, items: list) -> None:
        for (sid, _, saddr, sport), skb in self.skb_items(items, 4, 1):
            sock = self.socks.get(sid)
            if sock is None:
                self.pool.free(skb)
                continue
            self.queue_datagram(sock, skb, saddr, sport)

    def queue_datagram(self, sock: Sock, skb: Skb, saddr: object, sport: int, passed: list | None = None) -> None:
        # past the total, as past udp_mem's hard limit: only a socket holding less than
        # udp_rmem_min still gets its datagram, so hoarders cannot silence everyone else
        over_mem = (self.dgram_mem + skb.end > self.cfg.socket_limits.dgram_mem
                    and sock.rcvq_mem >= DGRAM_RMEM_MIN)
        users = self.users
        if sock.shut_rd or sock.rcvq_mem + skb.end > sock.rcvbuf or over_mem or not (
                users.room("skbs", sock.uid) and users.room("mem", sock.uid, skb.end)):
            self.counters["RcvbufErrors"] += 1   # sk_rmem_alloc over sk_rcvbuf (or udp_mem): dropped
            if over_mem:
                self.counters["dgram_mem_drops"] += 1
            self.pool.free(skb)
            self.deliver_passed(None, passed)
            return
        sock.rcvq.append((skb, saddr, sport, passed))
        sock.rcvq_mem += skb.end
        self.dgram_mem += skb.end
        users.take("skbs", sock.uid)
        users.take("mem", sock.uid, skb.end)
        self.counters["datagrams_received"] += 1
        self.wake_readers(sock)
        if sock.rcvq and sock.rcvq[-1][0] is skb and not self.pool.owns(skb):
            self.dgram_adopt(sock)
        self.notify(sock)

    def dgram_adopt(self, sock: Sock) -> None:
        """A datagram left waiting in a queue moves into a slot of our own partition: in
        the one it came in (the driver's, udp's) it would keep that service from receiving,
        and unread queues of many sockets could hold all of it."""
        skb, saddr, sport, passed = sock.rcvq[-1]
        try:
            mine = self.pool.copy(skb)
        except NoBuffers:
            return                           # ours is full: it stays where it is
        sock.rcvq[-1] = (mine, saddr, sport, passed)
        sock.rcvq_mem += mine.end - skb.end
        self.dgram_mem += mine.end - skb.end
        self.users.take("mem", sock.uid, mine.end - skb.end)
        self.pool.free(skb)
        self.counters["datagrams_adopted"] += 1

    def dgram_pop(self, sock: Sock) -> tuple:
        entry = sock.rcvq.popleft()
        sock.rcvq_mem -= entry[0].end
        self.dgram_mem -= entry[0].end
        self.users.give("skbs", sock.uid)
        self.users.give("mem", sock.uid, entry[0].end)
        if self.mem_waiters:
            self.mem_freed(sock.uid)
        return entry

    def resync_udp(self) -> None:
        """udp restarted with an empty port table: announce every binding again."""
        for sock in self.socks.values():
            if sock.bound:
                self.request_bind(sock, sock.laddr, sock.lport, restore=True)
                if sock.raddr:
                    self.udp_msg(encode(UDP_CONNECT, sock.id, sock.laddr, sock.raddr, sock.rport))
            elif sock.binding:
                self.request_bind(sock, sock.laddr, 0)
        self.counters["udp_resyncs"] += 1

    # -- time -----------------------------------------------------------------------
    def timer_at(self) -> float | None:
        while self.timers and self.timers[0][2].done:
            heapq.heappop(self.timers)
        times = [self.next_client_check]
        if self.timers:
            times.append(self.timers[0][0])
        if self.outbox_retry is not None:
            times.append(self.outbox_retry)
        if self.restart_notices:
            times.append(self.notice_at)
        if self.credit_due is not None:
            times.append(self.credit_due)
        return min(times)

    def on_timer(self, now: float) -> None:
        if self.outbox_retry is not None and now >= self.outbox_retry:
            self._flush_outbox()
        if self.restart_notices and now >= self.notice_at:
            self.tell_restart(now)
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

    def client_gone(self, c: Client) -> None:
        if c.pidfd >= 0:
            self.unwatch_fd(c.pidfd)
            os.close(c.pidfd)
            c.pidfd = -1
        for fd in list(c.fds):
            self.drop_fd(c, fd)
        for sock in [s for s in self.socks.values() if s.client is c and s.fd < 0]:   # accepted, never given an fd
            self.close_sock(sock)
        self.clients.pop(c.cid, None)
        self.restart_notices.pop(c.cid, None)
        self.state.touch_client(c)
        self.counters["clients_gone"] += 1

    # -- restart ------------------------------------------------------------------
    def restore(self) -> None:
        """Take up what the previous incarnation saved: clients with their threads'
        last calls, sockets with their fds, queues and accept queues, requests to tcp.
        Then ask tcp and udp to reconcile, and tell each client to ask again what
        it is still waiting for."""
        table, clients, socks, gone = self.state.load()
        ids, reqs, tcp_reqs, _ = table
        self.sock_ids_next, self.reqs_next = max(self.sock_ids_next, ids), max(self.reqs_next, reqs)
        for conn in gone:
            self.gone_conns[conn] = None
        for cid, pid, start, events, calls in clients:
            if procfs.start_time(pid) != start:
                self.state.remove_client(cid, [call[0] for call in calls])
                continue
            c = self.clients[cid] = Client(cid, pid, start, events=events)
            try:
                c.uid = credentials.creds_of(pid, start).uid
            except OSError:
                pass
            self.watch_client(c)
            for ident, req, code, fd, how, payload in calls:
                call = Pending(ident, req, code, [req, fd], None, restored=True, done=how != PENDING)
                call.reply = payload if how == REPLIED else None
                call.rx = payload if how == REPLIED_RX else None
                c.calls[ident] = call
            if events is not None:
                self.restart_notices[cid] = time.monotonic() + RESTART_NOTICE_FOR
        self.notice_at = time.monotonic()
        kept = [self.restore_sock(rec) for rec in sorted(socks, key=lambda r: r[1][0])]
        self.counters["restore_skipped"] += self.state.skipped
        for sock in kept:
            if sock is not None and sock.origin and sock.fd < 0:
                lst = self.socks.get(sock.origin)
                if lst is not None and lst.st == "listening":
                    lst.acceptq.append(sock)
        self.unix_relink()
        for req, sid, what, msg in tcp_reqs:
            if sid in self.socks:
                self.tcp_reqs[req] = (self.socks[sid], None, what, msg)
        connecting = {sock.id for sock, _, what, _ in self.tcp_reqs.values() if what == "connect"}
        for sock in self.socks.values():
            tcp = sock.stream and sock.family == ksock.AF_INET
            if tcp and (sock.st == "connected" or sock.st == "connecting" and sock.id not in connecting):
                self.conns[sock.conn] = sock
            elif sock.type == ksock.SOCK_DGRAM and sock.binding:   # its bind may or may not have happened:
                sock.binding = False                                # undone; the call, asked again, redoes it
                self.udp_msg(encode(UDP_UNBIND, sock.id))
        if not (self.clients or self.socks or self.lingering):
            return
        self.resync_udp()
        self.raw_update()
        self.tcp_msg(encode(TCP_RESYNC))
        self.counters["restored_sockets"] += len(self.socks)
        self.log.info("took up %d clients, %d sockets (%d lingering)", len(self.clients), len(self.socks),
                      len(self.lingering))

    def restore_sock(self, rec: list) -> Sock | None:
        """A saved socket taken up; None if it belongs to no one now, is lingering, or
        cannot be taken up (a value no socket can have: skipped and counted)."""
        try:
            return self._restore_sock(rec)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            self.log.warning("socket record %s not taken up: %r", rec[1][0], exc)
            self.state.skip(f"s{rec[1][0]}")
            return None

    def _restore_sock(self, rec: list) -> Sock | None:
        cid, values, holders, keep_len, rd_off, origin, lingering = rec[:7]
        client = self.clients.get(cid)
        if client is None:
            self.state.remove_sock(values[0])
            return None
        sock = Sock(0, client, 0, 0, 0, 0, 0, 0)
        for name, value in zip(SOCK_FIELDS, values):
            setattr(sock, name, value)
        sock.holders = [(self.clients[c], fd) for c, fd in holders if c in self.clients]
        sock.origin, sock.ready_mask = origin, -1
        if sock.stream:
            keep, rbuf = self.state.sock_queues(sock, keep_len, rd_off)
            sock.sndkeep, sock.rbuf = ByteQueue(keep), ByteQueue(rbuf)
            sock.snd_pending = len(sock.sndkeep)
            if sock.consumed != rd_off:
                self.counters["restored_reads_truncated"] += 1
        if lingering:
            self.lingering[sock.conn] = sock
            return None
        if sock.family == ksock.AF_UNIX:
            sock.uname, ukey, sock.peer, sock.scm = rec[7], rec[8], rec[9], rec[10]   # ids: resolved after
            sock.ukey = tuple(ukey) if ukey else None
            if sock.ukey is not None and sock.uname is not None:
                self.unix_names[sock.ukey] = sock
        self.socks[sock.id] = sock
        self.owned(sock, client.uid)
        if sock.stream and sock.family == ksock.AF_INET:
            self.charge_sent(sock, len(sock.sndkeep))
        for c, fd in [(sock.client, sock.fd), *sock.holders]:
            if fd >= 0:
                c.fds[fd] = sock
        return sock

    def tell_restart(self, now: float) -> None:
        """Tell each client we restarted, once its event channel is connected again,
        and push every socket's readiness to it."""
        for cid, until in list(self.restart_notices.items()):
            c = self.clients.get(cid)
            if c is None or c.events is None or now > until:
                self.restart_notices.pop(cid, None)
                continue
            try:
                self.sys.send_multipart([c.events, msgpack.packb([1, os.getpid()])], zmq.NOBLOCK)
            except zmq.ZMQError:
                continue                 # not reconnected yet (ROUTER_MANDATORY)
            del self.restart_notices[cid]
            for fd, sock in c.fds.items():
                self.frames.append([c.events, msgpack.packb([0, fd, *sock.readiness(), sock.id])])
        self.notice_at = now + RESTART_NOTICE_RETRY

    # -- introspection ------------------------------------------------------------
    def show(self, what: str) -> object:
        if what == "sockets":
            rows = []
            for s in self.socks.values():
                if s.stream:
                    rows.append(self.stream_row(s))
                    continue
                rows.append({"proto": "raw" if s.type == ksock.SOCK_RAW else "udp",
                             "local": f"{ntoa(s.laddr)}:{s.lport}" if s.bound else "*:*",
                             "remote": f"{ntoa(s.raddr)}:{s.rport}" if s.raddr else "*:*",
                             "state": "ESTAB" if s.raddr else ("UNCONN" if s.bound else "CLOSE"),
                             "recv_q": sum(len(e[0]) for e in s.rcvq), "send_q": 0,
                             "pid": s.client.pid, "fd": s.fd})
            return rows
        return super().show(what)

    def stats(self) -> dict:
        out = super().stats()
        out["clients_now"] = len(self.clients)
        out["outbox"] = {name: len(box) for name, box in self.outbox.items()}
        out["sockets_now"] = len(self.socks)
        out["users"] = {kind: {str(uid): n for uid, n in held.items()} for kind, held in self.users.summary().items()}
        return out



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


if __name__ == "__main__":
    main(SocketServer)
