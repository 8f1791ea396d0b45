"""The socket layer's plain types: a socket, a client process, a suspended call.

They import nothing of the server, so every part of the layer (the core, each
family, the state records) and the tests can use them alone.
"""

from __future__ import annotations

import collections
import errno
import os
import resource
import socket as ksock
import weakref
from dataclasses import dataclass, field

from shared.bytequeue import ByteQueue
from shared.proto import sockopt

MAX_FDS = 1024                    # descriptors per client when its RLIMIT_NOFILE cannot be read
POLLIN, POLLOUT, POLLERR, POLLHUP = 0x1, 0x4, 0x8, 0x10
# the socket module's MsgFlag members as plain ints: each operation on the enum runs
# enum.py's Python code (~1 us), and the read and write paths make several per call
MSG_OOB, MSG_PEEK, MSG_DONTWAIT, MSG_WAITALL, MSG_TRUNC, MSG_NOSIGNAL = (
    int(ksock.MSG_OOB), int(ksock.MSG_PEEK), int(ksock.MSG_DONTWAIT), int(ksock.MSG_WAITALL), int(ksock.MSG_TRUNC),
    int(ksock.MSG_NOSIGNAL))


def err(code: int) -> OSError:
    """An OSError with the kernel's text for ``code``."""
    return OSError(code, os.strerror(code))


def aton(addr: str) -> int:
    """Dotted quad to int, strictly (inet_pton, not inet_aton)."""
    try:
        return int.from_bytes(ksock.inet_pton(ksock.AF_INET, addr), "big")
    except (OSError, ValueError, TypeError):
        raise OSError(errno.EINVAL, f"invalid IPv4 address {addr!r}") from None


def ntoa(addr: int) -> str:
    return ksock.inet_ntop(ksock.AF_INET, addr.to_bytes(4, "big"))


INET_FAMILIES = (ksock.AF_INET, ksock.AF_INET6)
_V4_MAPPED = bytes(10) + b"\xff\xff"


def aton6(addr: str) -> int | bytes:
    """An AF_INET6 socket's address as the stack holds it: ``::`` is the wildcard 0, a
    v4-mapped one (``::ffff:10.66.0.1``) the IPv4 int, any other 16 bytes. A ``%scope``
    the client library appends for a scope id is checked and dropped: IPv6 runs on one
    device, so a link-local address names the same neighbour whatever the scope."""
    try:
        text, _, scope = addr.partition("%")
        if scope and not scope.isdigit():
            raise ValueError(scope)
        packed = ksock.inet_pton(ksock.AF_INET6, text)
    except (OSError, ValueError, TypeError):
        raise OSError(errno.EINVAL, f"invalid IPv6 address {addr!r}") from None
    if packed[:12] == _V4_MAPPED:
        return int.from_bytes(packed[12:], "big")
    return 0 if packed == bytes(16) else packed


def ntoa6(addr: int | bytes, scope: int = 0) -> str:
    """The text an AF_INET6 socket shows for ``addr``: IPv4 ones v4-mapped; a link-local one
    with ``%scope`` (the device's index) for the client library's scope id."""
    if type(addr) is int:
        return "::" if addr == 0 else "::ffff:" + ntoa(addr)
    text = ksock.inet_ntop(ksock.AF_INET6, addr)
    return f"{text}%{scope}" if scope and addr[:2] == b"\xfe\x80" else text


def sock_aton(sock: "Sock", addr: str) -> int | bytes:
    return aton6(addr) if sock.family == ksock.AF_INET6 else aton(addr)


def bind_aton(sock: "Sock", addr: str) -> int | bytes:
    """The address a bind names: an IPV6_V6ONLY socket takes no IPv4 (v4-mapped) one (EINVAL, as Linux)."""
    a = sock_aton(sock, addr)
    if a and type(a) is int and sock.tcpopts.get("v6only"):
        raise OSError(errno.EINVAL, "Invalid argument")
    return a


def sock_ntoa(sock: "Sock", addr: int | bytes, scope: int = 0) -> str:
    return ntoa6(addr, scope) if sock.family == ksock.AF_INET6 else ntoa(addr)


def host_text(sock: "Sock", addr: int | bytes) -> str:
    """An address as netstat shows it (IPv6 in brackets, as ss does)."""
    return f"[{ntoa6(addr)}]" if sock.family == ksock.AF_INET6 else ntoa(addr)


def inet_bind_flags(sock: "Sock") -> int:
    """UDP_BIND / TCP_BIND flags of an AF_INET or AF_INET6 socket's options."""
    return sockopt.bind_flags(sock.reuseaddr, sock.reuseport, sock.family == ksock.AF_INET6,
                              bool(sock.tcpopts.get("v6only")))


def check_port(port: int) -> int:
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
    laddr: int | bytes = 0         # IPv4 as an int, IPv6 as 16 bytes (AF_INET6 sockets), 0 unset
    lport: int = 0
    raddr: int | bytes = 0
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
    saved: list | None = None      # the record last saved (records.py)
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
    # each thread's (DEALER's) last TCP send post applied (SYS_SEND_POST), by request id: what a fence checks
    posts: dict = field(default_factory=dict)

    def free_fd(self, fd: int) -> "Sock | None":
        """Take ``fd`` out of the table (its socket, if it named one); keeps ``fd_hint`` true."""
        self.fd_hint = min(self.fd_hint, fd)
        return self.fds.pop(fd, None)


def nofile_limit(pid: int) -> int:
    """The process's RLIMIT_NOFILE (soft): how many mkstack descriptors it may hold."""
    try:
        soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return MAX_FDS
    return 1 << 30 if soft == resource.RLIM_INFINITY else soft
