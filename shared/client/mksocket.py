"""A drop-in for the stdlib ``socket`` module whose sockets live in mkstack.

Every call becomes a request to the socket server (DEALER -> ROUTER, msgpack,
request ids). Each thread has its own DEALER, so threads may share sockets (a
new thread takes over the DEALER of one that ended); a blocking call is
suspended in the server, not polled from here. For select, poll and
selectors, every socket has a real file descriptor (an eventfd) that
is readable exactly when the mkstack socket is: the server pushes readiness
changes to one event channel per process, and every reply carries the
socket's current readiness too. Errors are ``OSError`` with Linux's errno;
timeouts raise ``TimeoutError('timed out')`` (``socket.timeout``).

If the socket server is killed, its successor takes up every socket and tells
each client on the event channel; a call still waiting for its reply is sent
again with the same request id, and the server answers it exactly once.

What mkstack does not do yet is refused with a clear OSError, never faked.

Why one file: it replaces the stdlib module, whose surface is one socket class with
every method the stdlib's has plus the module-level functions (getaddrinfo, socketpair,
create_connection, fromfd...); the transport under it (threads' channels, the event
channel, restart handling) is what a split would take out next.
"""

from __future__ import annotations

import array
import atexit
import collections
import errno as _errno
import io
import itertools
import os
import signal
import struct
import sys
import threading
import time
import weakref

import msgpack
import zmq

# the kernel's socket module, for constants and helpers that are not about sockets
_k = sys.modules.get("_mkstack_kernel_socket") or __import__("socket")

from shared.ipc import endpoints  # noqa: E402
from shared.ipc.messages import (SYS_ACCEPT, SYS_BIND, SYS_CLOSE, SYS_CONNECT,  # noqa: E402
                                 SYS_DUP, SYS_GETPEERNAME, SYS_GETSOCKNAME, SYS_GETSOCKOPT, SYS_HELLO, SYS_LISTEN,
                                 SYS_IOCTL, SYS_RECVFROM, SYS_RECVMSG, SYS_SENDMSG, SYS_SENDTO, SYS_SETSOCKOPT,
                                 SYS_SHUTDOWN, SYS_SOCKET, SYS_SOCKETPAIR, SYS_SENDTO_NOWAIT, SYS_WATCH,
                                 SYS_RECVFROM_MANY, SYS_POSTS_PENDING, SYS_REPLAY, SYS_SEND_POST, SIOCATMARK, SIOCINQ,
                                 SIOCOUTQ, WAITALL_MAX)

# -- the module's public face: constants and helpers as the stdlib has them -----
for _name in dir(_k):
    if _name.isupper() or _name.startswith(("AF_", "SOCK_", "SOL_", "SO_", "MSG_", "IPPROTO_", "IP_", "TCP_",
                                            "SHUT_", "EAI_", "AI_", "NI_", "INADDR_", "SCM_")):
        globals()[_name] = getattr(_k, _name)
# the ones this module uses itself, named so that readers (and linters) can see them
AF_INET, AF_UNIX, SOCK_STREAM, SOCK_DGRAM, SOCK_RAW = _k.AF_INET, _k.AF_UNIX, _k.SOCK_STREAM, _k.SOCK_DGRAM, _k.SOCK_RAW
AF_INET6 = _k.AF_INET6
_INET = (AF_INET, AF_INET6)
IPPROTO_TCP, IPPROTO_UDP, MSG_TRUNC = _k.IPPROTO_TCP, _k.IPPROTO_UDP, _k.MSG_TRUNC
SOL_SOCKET, SO_LINGER, SO_REUSEADDR, SOMAXCONN = _k.SOL_SOCKET, _k.SO_LINGER, _k.SO_REUSEADDR, _k.SOMAXCONN
SEND_CHUNK = 256 * 1024     # bytes per send call to the socket server
MAX_UDP_PAYLOAD = 65507     # 65535 - IP and UDP headers: larger is EMSGSIZE
# MsgFlag members as plain ints for the per-call paths: an operation on the enum runs enum.py's
# Python code (~1 us), the names above stay the enum for programs that print them
_MSG_PEEK, _MSG_TRUNC, _MSG_WAITALL, _MSG_NOSIGNAL = (int(_k.MSG_PEEK), int(_k.MSG_TRUNC), int(_k.MSG_WAITALL),
                                                      int(_k.MSG_NOSIGNAL))
_MSG_DONTWAIT = int(_k.MSG_DONTWAIT)
NOWAIT_FLAGS = _MSG_DONTWAIT | _MSG_NOSIGNAL    # flags a datagram or small TCP send may carry and still not wait
NOWAIT_DESTS = 256          # destinations remembered per socket as sent to without an error
POST_LINGER_MS = 1000       # how long a closing DEALER keeps trying to deliver what was posted on it
IDLE_DEALERS = 64           # DEALERs of ended threads kept for new ones
EXIT_FLUSH_MS = 1000        # how long exit waits for the server to answer after the last posts
POST_MAX = 16 * 1024        # a TCP send up to this size may be posted (SYS_SEND_POST) ...
POST_WINDOW = 64 * 1024     # ... while a thread's posts not yet confirmed stay under this (and POST_COUNT)
POST_COUNT = 64
CONFIRM_WAIT_S = 0.05       # after a restart, how long the check of idle threads' posts waits for a busy DEALER
POSTS_PENDING_WAIT_S = 0.001    # a call waiting for another thread's posts to reach the server asks again after
POSTS_PENDING_WAIT_MAX_S = 0.05  # ... this, doubling up to this
_NO_FD_CALLS = frozenset((SYS_HELLO, SYS_SOCKET, SYS_SOCKETPAIR))   # calls whose first argument is not an fd
AddressFamily, SocketKind, MsgFlag, AddressInfo = _k.AddressFamily, _k.SocketKind, _k.MsgFlag, _k.AddressInfo
error, timeout, herror, gaierror = OSError, TimeoutError, _k.herror, _k.gaierror
has_ipv6 = True
(inet_aton, inet_ntoa, inet_pton, inet_ntop, htons, ntohs, htonl, ntohl, gethostname, getservbyname,
 getservbyport, getprotobyname, CMSG_LEN, CMSG_SPACE, sethostname) = (
    _k.inet_aton, _k.inet_ntoa, _k.inet_pton, _k.inet_ntop, _k.htons, _k.ntohs, _k.htonl, _k.ntohl,
    _k.gethostname, _k.getservbyname, _k.getservbyport, _k.getprotobyname, _k.CMSG_LEN,
    _k.CMSG_SPACE, _k.sethostname)      # the host name is the kernel's (UTS namespace), not the stack's
SocketType = None  # set below to the class
_GLOBAL_DEFAULT_TIMEOUT = object()
_default_timeout: float | None = None

ENDPOINT_ENV = "MKSTACK_ENDPOINT"
IFACES_ENV = "MKSTACK_IFACES"       # "1:lo,2:tap0": mkstack's interfaces, as `launcher.py run` names them
SENDFILE_BLOCK = 256 * 1024         # bytes read from the file per send
HELLO_WAIT_S = 10.0         # how long a new process waits for a (restarting) socket server to issue its id
FIRST_WAIT_MS = 10          # a call waits this long for its answer before it also listens for restarts
RESTART_CHECK_MS = 100      # and then looks at least this often whether the socket server restarted
HELLO_AGAIN_MS = 250        # SYS_HELLO unanswered this long is asked again, then after twice as long,
HELLO_AGAIN_MAX_MS = 2000   # up to this: a server away for long finds few of them queued for it
_POLLIN, _POLLOUT, _POLLERR, _POLLHUP = 0x1, 0x4, 0x8, 0x10


def _identity(s: zmq.Socket) -> bytes:
    return s.getsockopt(zmq.IDENTITY)


class _Lease:
    """A thread's DEALER. When the thread ends (and its thread-local storage with
    it), a DEALER with nothing posted since its last answered call goes back to the
    connection's pool for the next new thread: a server that starts a thread per
    connection would otherwise pay a new ZeroMQ connection (its handshake, ~0.3 ms
    before the first call) and the socket server a new call record for each one.
    Calls on one DEALER are never concurrent, whichever thread makes them, and the
    pool's lock orders the hand-over between threads as ZeroMQ asks."""

    __slots__ = ("conn", "sock", "ident", "posted", "unconfirmed", "unconfirmed_bytes", "lock", "__weakref__")

    def __init__(self, conn: "_Connection", sock: zmq.Socket, unconfirmed: list | None = None) -> None:
        self.conn, self.sock, self.posted = conn, sock, False
        self.ident = _identity(sock)
        # TCP sends posted on this DEALER (SYS_SEND_POST) and not yet known applied:
        # (request id, fd, data, flags, socket id); the next call fences them (see _Connection._call)
        self.unconfirmed: list = unconfirmed or []
        self.unconfirmed_bytes = sum(len(p[2]) for p in self.unconfirmed)
        # held while the DEALER is used: by its thread, or by the restart check of an idle
        # thread's posts (_Connection._confirm_posts)
        self.lock = threading.Lock()
        if self.unconfirmed:
            conn.posters.add(self)

    def __del__(self) -> None:
        # a UDP post not yet answered for may still be queued: only closing with linger
        # (what an unpooled DEALER does) sees it out, so such a DEALER is not reused; TCP
        # posts not yet confirmed go to the pool with it: the next thread's call fences them
        try:
            if (self.unconfirmed or not self.posted) and self.conn.pid == os.getpid():
                self.conn.give_back(self.sock, self.unconfirmed)
        except Exception:       # at interpreter exit the modules may be gone: nothing to keep
            pass


class _Bell:
    """An eventfd the events thread writes when the socket server restarted: a
    call waiting for its answer (lost with the old server) wakes at once and
    asks again, instead of at its next RESTART_CHECK_MS look."""

    __slots__ = ("fd", "__weakref__")

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def ring(self) -> None:
        try:
            os.eventfd_write(self.fd, 1)
        except OSError:
            pass

    def clear(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except OSError:
            pass

    def __del__(self) -> None:
        os.close(self.fd)


def _os_error(err: int, text: str | None = None) -> OSError:
    """OSError with the subclass the stdlib would raise for ``err``."""
    return OSError(err, text or os.strerror(err))


def _unpack_reply(frame: bytes) -> tuple:
    """A socket server reply: (request id, errno, result, readiness)."""
    try:
        rreq, err, result, ready = msgpack.unpackb(frame, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise _os_error(_errno.EPROTO, "malformed reply from the socket server") from None
    return rreq, err, result, ready


def _reply_error(err: int, result: object) -> OSError:
    """The exception a reply's errno stands for (a call's own timeout: socket.timeout)."""
    if err == _errno.ETIMEDOUT and result == "timed out":
        return TimeoutError("timed out")
    return _os_error(err, result if isinstance(result, str) else None)


# -- the connection to the socket server ---------------------------------------------
class _Notifier:
    """A real descriptor whose readiness mirrors the mkstack socket's, for select/poll.

    It is one end of a kernel AF_UNIX socketpair; the library holds the other.
    Readable while a byte from the other end waits in it; not writable while its
    own send buffer is full (filled by us, drained again when mkstack says the
    socket is writable). An eventfd would do for reading, but is always writable.
    The pair is made the first time ``fd`` is asked for (fileno(), select): a
    program that only makes blocking calls holds no kernel descriptors for its
    mkstack sockets, so ten thousand connections fit in its RLIMIT_NOFILE.
    """

    __slots__ = ("app", "lib", "made", "closed", "sock_id", "srv_fd", "ver", "mask", "readable", "writable", "lock")

    def __init__(self, sock_id: int) -> None:
        self.sock_id = sock_id                     # the server's id of the socket: events name it
        self.srv_fd = -1                   # the socket server's fd for it, to ask for its events
        self.mask = 0                      # the last readiness mask known
        self.app = self.lib = None
        self.made = -1                     # the app end's descriptor, once made
        self.closed = False
        self.ver = 0
        self.readable, self.writable = False, True
        self.lock = threading.Lock()

    @property
    def fd(self) -> int:
        with self.lock:
            if self.made >= 0 or self.closed:
                return self.made
            self.app, self.lib = _k.socketpair(AF_UNIX, SOCK_STREAM)
            for s in (self.app, self.lib):
                s.setblocking(False)
            self.app.setsockopt(SOL_SOCKET, _k.SO_SNDBUF, 1)      # the kernel's minimum: quick to fill
            self.made = self.app.fileno()
            self._show(self.readable, self.writable, False, True)
        # from now on someone may select on it: ask for its readiness events (until now only
        # replies carried readiness, so what we have may be old; the reply brings it up to date)
        try:
            _connection().call(SYS_WATCH, self.srv_fd)
        except OSError:
            pass          # closed meanwhile: the descriptor stays as it is
        return self.made

    @staticmethod
    def _drain(s: object) -> None:
        try:
            while s.recv(65536):  # type: ignore[attr-defined]
                pass
        except (BlockingIOError, OSError):
            pass

    def _show(self, want_r: bool, want_w: bool, was_r: bool, was_w: bool) -> None:
        """Make the pair's readiness go from (was_r, was_w) to (want_r, want_w)."""
        if want_r and not was_r:
            self.lib.send(b"r")
        elif not want_r and was_r:
            self._drain(self.app)
        if want_w and not was_w:
            self._drain(self.lib)
        elif not want_w and was_w:
            try:
                while True:
                    self.app.send(bytes(4096))
            except (BlockingIOError, OSError):
                pass

    def apply(self, ver: int, mask: int) -> None:
        with self.lock:
            if ver <= self.ver or self.closed:
                return
            self.ver, self.mask = ver, mask
            want_r = self._readable(bool(_conn and (_conn.held.get(self.sock_id) or self.sock_id in _conn.buffered)))
            want_w = bool(mask & (_POLLOUT | _POLLERR | _POLLHUP))
            if self.made >= 0:
                self._show(want_r, want_w, self.readable, self.writable)
            self.readable, self.writable = want_r, want_w

    def _readable(self, held: bool) -> bool:
        """Readable: datagrams (or TLS records) held here, or the server's last mask says so."""
        return held or bool(self.mask & (_POLLIN | _POLLERR | _POLLHUP))

    def recheck(self, held: bool) -> None:
        """The datagrams held for the socket here came or went: readable if any are
        held or the server said it is."""
        with self.lock:
            if self.closed:
                return
            want_r = self._readable(held)
            if self.made >= 0:
                self._show(want_r, self.writable, self.readable, self.writable)
            self.readable = want_r

    def close(self) -> None:
        with self.lock:
            self.closed = True
            if self.made >= 0:
                self.app.close()
                self.lib.close()
                self.made = -1


class _Connection:
    """One per process: the client id, per-thread DEALERs and the event thread."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.pid = os.getpid()
        self.cid = _client_id(endpoint)
        self.ctx = zmq.Context()
        self.sockets: weakref.WeakSet[zmq.Socket] = weakref.WeakSet()    # every DEALER made, for close()
        self.closed = False
        self.local = threading.local()
        self.flush_at_exit = False
        self.seq = itertools.count(1)
        self.threads = itertools.count(1)
        self.notifiers: dict[int, _Notifier] = {}      # by the socket server's fd
        self.by_sid: dict[int, list[_Notifier]] = {}   # by socket id: dup'd fds share a socket
        self.detached: dict[int, tuple[int, int, int, int, _Notifier]] = {}   # detach(): by notifier fd
        # readiness that arrived before its socket's notifier existed, by socket id
        self.early: dict[int, tuple[int, int]] = {}
        # UDP datagrams a SYS_RECVFROM_MANY brought along, by socket id: later reads take them
        self.held: dict[int, collections.deque] = {}
        self.buffered: set[int] = set()     # sockets whose TLS layer holds records read ahead (mkssl)
        self.objects: weakref.WeakValueDictionary = weakref.WeakValueDictionary()   # server fd -> socket
        self.lock = threading.Lock()
        self.generation = 0                 # restarts of the socket server seen
        self.bells: weakref.WeakSet[_Bell] = weakref.WeakSet()   # one per calling thread
        self.idle: list[tuple[zmq.Socket, list]] = []    # DEALERs of ended threads, their TCP posts (_Lease)
        self.posters: weakref.WeakSet[_Lease] = weakref.WeakSet()    # leases that posted TCP sends
        # by fd: the DEALER identities with posts on it not yet confirmed, and the last one's request id.
        # One thread at a time posts on a socket; another thread's call on it is fenced by them (_send_call)
        self.fd_posts: dict[int, dict[bytes, int]] = {}
        try:
            self._hello(self._dealer(), False, HELLO_WAIT_S)
        except OSError:
            self.ctx.destroy(0)      # its unanswered hellos must not hold the process's exit (linger)
            raise
        self.events_ready = threading.Event()
        self.events_thread = threading.Thread(target=self._events, name="mkstack-events", daemon=True)
        self.events_thread.start()
        self.events_ready.wait(5)

    def close(self) -> None:
        """Stop the events thread and close every DEALER, so the ZeroMQ threads go (a process's
        own connection lives as long as the process; tests make many). The context's
        termination interrupts the events thread's wait; a call still waiting in another
        thread fails with ETERM."""
        if self.closed:
            return
        self.closed = True
        term = threading.Thread(target=self.ctx.term, name="mkstack-term", daemon=True)
        term.start()
        self.events_thread.join(2)
        if not self.events_thread.is_alive():
            for s in list(self.sockets):
                s.close(0)
        term.join(2)

    def _new_dealer(self, part: bytes, linger: int = 0, rcvtimeo: int | None = FIRST_WAIT_MS) -> zmq.Socket:
        """A DEALER to the socket server named ``<client id>.<part>``."""
        s = self.ctx.socket(zmq.DEALER)
        self.sockets.add(s)
        s.setsockopt(zmq.LINGER, linger)
        if rcvtimeo is not None:
            s.setsockopt(zmq.RCVTIMEO, rcvtimeo)
        s.setsockopt(zmq.IDENTITY, self.cid + b"." + part)
        endpoints.connect_fast(s, self.endpoint)
        return s

    def _dealer(self) -> zmq.Socket:
        lease = getattr(self.local, "lease", None)
        if lease is None:
            with self.lock:
                s, unconfirmed = self.idle.pop() if self.idle else (None, None)
            if s is None:
                # a thread that posts a send and ends closes its DEALER when it goes: linger
                # so the post still leaves (the kernel's send had completed by then)
                s = self._new_dealer(str(next(self.threads)).encode(), POST_LINGER_MS)
            lease = self.local.lease = _Lease(self, s, unconfirmed)
        return lease.sock

    def give_back(self, s: zmq.Socket, unconfirmed: list) -> None:
        """A DEALER whose thread ended, for the next new thread (see _Lease); one with TCP
        posts not yet confirmed is always kept (closing it could lose them to a restart)."""
        with self.lock:
            if len(self.idle) < IDLE_DEALERS or unconfirmed:
                self.idle.append((s, unconfirmed))
                return
        s.close()

    def call(self, code: int, *args: object) -> object:
        """One request; the reply's readiness is applied before returning. A call
        made while this thread's own call waits (from a signal handler) gets a
        DEALER of its own, so neither takes the other's reply."""
        if getattr(self.local, "busy", False):
            return self._call_on_new_dealer(code, *args)
        self.local.busy = True
        try:
            s = self._dealer()
            lease = self.local.lease
            fd = args[0] if self.fd_posts and args and code not in _NO_FD_CALLS else None
            with lease.lock:
                result = self._call(s, code, *args, lease=lease, fd=fd)
            lease.posted = False     # answered: what was posted before has arrived
            return result
        finally:
            self.local.busy = False

    def post(self, code: int, *args: object) -> bool:
        """Send a request that gets no reply (SYS_SENDTO_NOWAIT) on this thread's DEALER,
        so it stays in order with the thread's calls. False: not sent (this thread is
        inside a call, e.g. in a signal handler): make it a call instead."""
        if getattr(self.local, "busy", False):
            return False
        frame = msgpack.packb([code, next(self.seq), *args], use_bin_type=True)
        if not self.flush_at_exit and threading.current_thread() is threading.main_thread():
            self.flush_at_exit = True
            atexit.register(self._flush_posts)
        s = self._dealer()
        with self.local.lease.lock:
            s.send(frame)
        self.local.lease.posted = True
        return True

    def post_send(self, fd: int, data: bytes, flags: int, sock_id: int | None = None) -> bool:
        """A small TCP send on a connected socket, posted (SYS_SEND_POST) on this thread's
        DEALER: the kernel would return at once. Kept until a later call on the DEALER is
        answered: the call goes fenced (see _call), so the socket server applies it only
        after every post before it, and a post it did not apply (lost with a restarted
        server, or no room for it) is sent again as a call first. False: not posted (this
        thread is inside a call, or has POST_WINDOW bytes unconfirmed): make it a call."""
        if getattr(self.local, "busy", False):
            return False
        self._dealer()
        lease = self.local.lease
        with lease.lock:     # the restart check may confirm (and replace) the list meanwhile
            un = lease.unconfirmed
            if len(un) >= POST_COUNT or lease.unconfirmed_bytes + len(data) > POST_WINDOW:
                return False
            with self.lock:
                owners = self.fd_posts.get(fd)
                if owners and (len(owners) > 1 or lease.ident not in owners):
                    return False    # another thread's posts on it are not confirmed: a call, fenced by them
                req = next(self.seq)
                if owners is None:
                    owners = self.fd_posts[fd] = {}
                owners[lease.ident] = req
            lease.sock.send(msgpack.packb([SYS_SEND_POST, req, fd, data, flags, un[-1][0] if un else 0],
                                          use_bin_type=True))
            un.append((req, fd, data, flags, sock_id))
            lease.unconfirmed_bytes += len(data)
        self.posters.add(lease)
        if not self.flush_at_exit and threading.current_thread() is threading.main_thread():
            self.flush_at_exit = True
            atexit.register(self._flush_posts)
        return True

    def _replay(self, s: zmq.Socket, lease: _Lease, applied: int) -> None:
        """The socket server answered a fenced call SYS_REPLAY: the posts after ``applied``
        were not applied. Sent again now, as calls (which wait for room, as a send does);
        one that fails (the connection broke meanwhile) is dropped with the rest of its
        socket's, as the kernel drops a send queue on a reset."""
        posts = lease.unconfirmed
        missing = [p for p in posts if p[0] > applied]
        lease.unconfirmed, lease.unconfirmed_bytes = [], 0
        broken: set[tuple] = set()      # (fd, socket id)
        for _, fd, data, flags, sock_id in missing:
            n = self.notifiers.get(fd)
            if sock_id is not None and n is not None and n.sock_id != sock_id:
                broken.add((fd, sock_id))   # closed since, the number now another socket's: not its bytes
            view = memoryview(data)
            while view and (fd, sock_id) not in broken:
                try:
                    view = view[self._call(s, SYS_SENDTO, fd, bytes(view), flags & ~_MSG_DONTWAIT, None, 0,
                                           None):]
                except OSError:
                    broken.add((fd, sock_id))
        # only now: until these are in, other threads' calls on the sockets wait for them
        self._forget_posts(lease.ident, posts)

    def _forget_posts(self, ident: bytes, posts: list) -> None:
        """``ident``'s posts ``posts`` are confirmed: calls on their sockets need not wait for them."""
        with self.lock:
            for p in posts:
                self._drop_poster(p[1], ident, None)

    def _forget_others(self, fd: int, others: list) -> None:
        """Posts of other threads on ``fd`` known applied (or stale): calls need not wait for them."""
        with self.lock:
            for ident, last in others:
                self._drop_poster(fd, ident, last)     # (not if it posted again since)

    def _drop_poster(self, fd: int, ident: bytes, last: int | None) -> None:
        """``ident`` off ``fd``'s posters (if its last post there is still ``last``; None: any).
        The caller holds the lock."""
        owners = self.fd_posts.get(fd)
        if owners is not None and ident in owners and (last is None or owners[ident] == last):
            del owners[ident]
            if not owners:
                del self.fd_posts[fd]

    def _pooled_posters(self, ident: bytes | None = None) -> list[_Lease]:
        """The pooled DEALERs with posts not yet confirmed (only ``ident``'s, if named), out of
        the pool as leases again: dropped, they go back to it (_Lease.__del__)."""
        keep: list = []
        taken: list = []
        with self.lock:
            for e in self.idle:
                (taken if e[1] and (ident is None or _identity(e[0]) == ident) else keep).append(e)
            self.idle[:] = keep
        return [_Lease(self, s, unconfirmed) for s, unconfirmed in taken]

    def _posts_pending(self, others: list, fd: int, waits: int) -> None:
        """A call on ``fd`` was answered SYS_POSTS_PENDING: posts ``others`` ([identity, request id])
        of other threads on it are not applied yet. In flight, they arrive by themselves; lost
        with a restarted server, or refused (no room), the poster's next call replays them, and
        a poster not in a call (waiting on something else, or ended: its DEALER in the pool)
        has its DEALER make a fenced call now, from here. A stale entry (its poster's posts all
        confirmed since) is dropped."""
        for ident, last in others:
            lease = next((x for x in list(self.posters) if x.ident == ident), None)
            if lease is None:
                lease = next(iter(self._pooled_posters(ident)), None)
            if lease is None or not any(p[1] == fd and p[0] >= last for p in lease.unconfirmed):
                self._forget_others(fd, [[ident, last]])
                continue
            self._confirm(lease, 0)      # not if its thread is in a call: that call fences them
        time.sleep(min(POSTS_PENDING_WAIT_S * 2 ** waits, POSTS_PENDING_WAIT_MAX_S))

    def _confirm_posts(self) -> None:
        """After a socket server restart: a thread that posted TCP sends and has made no call
        since (it waits on something else, or ended) would hold a post lost with the old server
        until its next call. Each such DEALER not in use makes one fenced call now, which brings
        the missing posts back; one in use fences its own call. (Run on a thread of its own: the
        event thread must stay free to hear of a restart during it.)"""
        for lease in self._pooled_posters() + list(self.posters):
            if lease.unconfirmed:
                self._confirm(lease, CONFIRM_WAIT_S)    # in use: its own call fences them

    def _confirm(self, lease: _Lease, wait: float) -> None:
        """A fenced call on ``lease``'s DEALER, from this thread, if it is free within ``wait``
        s: its posts confirmed, or the missing ones replayed."""
        if not lease.lock.acquire(timeout=wait):
            return
        try:
            if lease.unconfirmed:
                self._call(lease.sock, SYS_HELLO, self.pid, False, lease=lease)
        except (OSError, zmq.ZMQError):
            pass
        finally:
            lease.lock.release()

    def _flush_posts(self) -> None:
        """At exit: one answered call (bounded in time) after the main thread's last
        posts, so they reach the server before the process and its ZeroMQ I/O thread go."""
        lease = getattr(self.local, "lease", None)      # atexit runs in the main thread: its DEALER
        if lease is None or self.pid != os.getpid() or self.closed:
            return
        s = lease.sock
        try:
            if lease.unconfirmed:       # TCP posts: made sure of, sent again if they went missing
                self.local.deadline = time.monotonic() + EXIT_FLUSH_MS / 1000
                try:
                    self._confirm(lease, EXIT_FLUSH_MS / 1000)
                finally:
                    self.local.deadline = None
                return
            s.send(msgpack.packb([SYS_HELLO, next(self.seq), self.pid, False]))
            s.poll(EXIT_FLUSH_MS)
        except (zmq.ZMQError, OSError):
            pass

    def _call_on_new_dealer(self, code: int, *args: object) -> object:
        s = self._new_dealer(b"r" + str(next(self.threads)).encode())
        try:
            return self._call(s, code, *args)
        finally:
            s.close(0)

    def _call(self, s: zmq.Socket, code: int, *args: object, lease: _Lease | None = None,
              fd: int | None = None) -> object:
        req = next(self.seq)
        request = msgpack.packb([code, req, *args], use_bin_type=True)
        gen = self.generation
        others = self._send_call(s, request, lease, fd)
        waits = 0
        while True:
            try:
                frame = s.recv()          # RCVTIMEO: FIRST_WAIT_MS
            except zmq.Again:
                deadline = getattr(self.local, "deadline", None)
                if deadline is not None and time.monotonic() > deadline:
                    raise _os_error(_errno.ETIMEDOUT, "mkstack: the socket server did not answer in time")
                if self.generation == gen:
                    self._wait_long(s)       # until the answer, a restart's bell, or a while
                if self.generation != gen:
                    # the socket server restarted: ask again (it answers a call only once)
                    gen = self.generation
                    others = self._send_call(s, request, lease, fd)
                continue
            rreq, err, result, ready = _unpack_reply(frame)
            if rreq != req:
                continue   # replies to abandoned requests (interrupted calls) are skipped
            if err == SYS_REPLAY and lease is not None:
                self._replay(s, lease, result)      # posts before the call went missing
                others = self._send_call(s, request, lease, fd)
                continue
            if err == SYS_POSTS_PENDING and others:
                self._posts_pending(others, fd, waits)     # other threads' posts on the socket not in yet
                waits += 1
                others = self._send_call(s, request, lease, fd)
                continue
            break
        if lease is not None and lease.unconfirmed:
            posts = lease.unconfirmed                # the fence held: all were applied
            lease.unconfirmed, lease.unconfirmed_bytes = [], 0
            self._forget_posts(lease.ident, posts)
        if others:
            self._forget_others(fd, others)          # and so were theirs
        if ready is not None:
            self.apply(*ready)
        self.local.last_ready = ready      # per thread: socket() reads its new socket's readiness
        if err:
            raise _reply_error(err, result)
        return result

    def _send_call(self, s: zmq.Socket, request: bytes, lease: _Lease | None, fd: int | None) -> list | None:
        """A call, fenced by the last post not yet confirmed on its DEALER (if any), and by other
        threads' posts on its socket ``fd`` not yet confirmed (returned: [identity, request id]
        each): the parts arrive together or not at all, so a call cannot arrive without its fence."""
        own = lease.unconfirmed[-1][0] if lease is not None and lease.unconfirmed else 0
        others = None
        if fd is not None and self.fd_posts:
            # read without the lock (the writers hold it): a dict read, and a copy of its items,
            # are each one step under the GIL; usually the only poster on fd is this thread
            owners = self.fd_posts.get(fd)
            mine = lease.ident if lease is not None else None
            if owners and (len(owners) > 1 or mine not in owners):
                others = [[i, r] for i, r in list(owners.items()) if i != mine] or None
        if others:
            s.send_multipart([msgpack.packb([own, others]), request])
        elif own:
            s.send_multipart([msgpack.packb(own), request])
        else:
            s.send(request)
        return others

    def _wait_long(self, s: zmq.Socket) -> None:
        """Wait for the answer or this thread's bell (a restart), RESTART_CHECK_MS at most."""
        bell = getattr(self.local, "bell", None)
        if bell is None:
            bell = self.local.bell = _Bell()
            with self.lock:
                self.bells.add(bell)
        zmq.select([s, bell.fd], [], [], RESTART_CHECK_MS / 1000)
        bell.clear()        # a ring missed here is seen by the generation check after the next recv

    def _hello(self, s: zmq.Socket, events: bool, wait: float | None) -> None:
        """SYS_HELLO on ``s``, asked again (HELLO_AGAIN_MS, doubling) until answered (for ``wait`` s
        at most; None: until then). Until the event channel's hello is done, no restart
        notice can reach this process: a hello lost with a socket server killed meanwhile
        was waited for forever (a new process hung at its first socket() that way in the
        soak). A repeated hello is harmless: it says the same again."""
        req = 0 if events else next(self.seq)
        request = msgpack.packb([SYS_HELLO, req, self.pid, events], use_bin_type=True)
        deadline = None if wait is None else time.monotonic() + wait
        again = HELLO_AGAIN_MS
        while deadline is None or time.monotonic() < deadline:
            s.send(request)
            if not s.poll(again):
                again = min(2 * again, HELLO_AGAIN_MAX_MS)
                continue
            rreq, err, result, _ = _unpack_reply(s.recv())
            if rreq != req:
                continue
            if err:
                raise _reply_error(err, result)
            return
        raise _os_error(_errno.ENETDOWN, f"mkstack: the socket server did not answer in {wait:g} s")

    def _events(self) -> None:
        s = self._new_dealer(b"ev", rcvtimeo=None)
        try:
            self._hello(s, True, None)   # the socket server may be down a while (backed off)
        except (OSError, zmq.ContextTerminated):
            s.close(0)       # refused (not our id): the connection's wait for the channel gives up
            return
        self.events_ready.set()
        while True:
            try:
                msg = msgpack.unpackb(s.recv(), raw=False)
            except zmq.ContextTerminated:    # close()
                s.close(0)
                return
            except (zmq.ZMQError, ValueError, msgpack.UnpackException):
                continue
            if isinstance(msg, list) and len(msg) == 5 and msg[0] == 0:
                self.apply(*msg[1:])
            elif isinstance(msg, list) and len(msg) == 2 and msg[0] == 1:
                self.generation += 1        # [1, pid]: the socket server restarted
                with self.lock:
                    bells = list(self.bells)
                for bell in bells:
                    bell.ring()
                if self.posters or any(e[1] for e in self.idle):
                    threading.Thread(target=self._confirm_posts, name="mkstack-posts", daemon=True).start()

    def apply(self, fd: int, ver: int, mask: int, sock_id: int) -> None:
        targets = self.by_sid.get(sock_id)
        if targets:
            for n in list(targets):
                n.apply(ver, mask)
            return
        with self.lock:
            if len(self.early) > 4096:
                self.early.clear()
            old = self.early.get(sock_id)
            if old is None or old[0] < ver:
                self.early[sock_id] = (ver, mask)

    def socket_of(self, fileno: int) -> int | None:
        """The mkstack fd whose notifier is the descriptor ``fileno``."""
        for fd, n in list(self.notifiers.items()):
            if n.made == fileno:
                return fd
        return None

    def register(self, fd: int, sock_id: int, ver: int, mask: int, n: "_Notifier | None" = None) -> _Notifier:
        n = n or _Notifier(sock_id)
        n.srv_fd = fd
        n.apply(ver, mask)
        self.notifiers[fd] = n
        with self.lock:
            peers = self.by_sid.setdefault(sock_id, [])
            if n not in peers:
                peers.append(n)
            early = self.early.pop(sock_id, None)
        if early is not None:
            n.apply(*early)
        return n

    def server_fd(self, fileno: int, why: str) -> int:
        """The socket server's fd for one of our descriptors (live or detached)."""
        sfd = self.socket_of(fileno)
        if sfd is None and fileno in self.detached:
            sfd = self.detached[fileno][0]
        if sfd is None:
            raise _os_error(_errno.EOPNOTSUPP, f"fd {fileno} is not an mkstack socket; {why}")
        return sfd

    def park(self, fd: int, sock_id: int, ver: int, mask: int, family: int, type_: int, proto: int) -> int:
        """A socket that arrived with SCM_RIGHTS: its descriptor, for socket(fileno=...)."""
        n = self.register(fd, sock_id, ver, mask)
        self.notifiers.pop(fd, None)
        self.detached[n.fd] = (fd, family, type_, proto, n)
        return n.fd

    def hold(self, sock_id: int, dgrams: list) -> None:
        q = self.held.setdefault(sock_id, collections.deque())
        q.extend(dgrams)
        for n in list(self.by_sid.get(sock_id, ())):
            n.recheck(True)

    def take_held(self, sock_id: int, peek: bool) -> list | None:
        """The next datagram held for socket ``sock_id`` ([data, addr, port]), or None."""
        q = self.held.get(sock_id)
        if not q:
            return None
        try:
            d = q[0] if peek else q.popleft()
        except IndexError:            # another thread took the last one
            return None
        if not q:
            for n in list(self.by_sid.get(sock_id, ())):
                n.recheck(False)
        return d

    def unregister(self, fd: int) -> None:
        n = self.notifiers.pop(fd, None)
        if n is None:
            return
        with self.lock:
            peers = self.by_sid.get(n.sock_id, [])
            if n in peers:
                peers.remove(n)
            if not peers:
                self.by_sid.pop(n.sock_id, None)
                self.held.pop(n.sock_id, None)      # the last descriptor: what it held goes with it
                self.buffered.discard(n.sock_id)
        n.close()


def _client_id(endpoint: str) -> bytes:
    """This process's client id, issued by the socket server over a kernel AF_UNIX socket
    (it learns our pid from the kernel); asked again while the server restarts."""
    path = endpoints.hello_of(endpoint)
    deadline = time.monotonic() + HELLO_WAIT_S
    while True:
        s = _k.socket(AF_UNIX, SOCK_STREAM)          # the kernel's
        try:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.connect(path)
            line = b""
            while not line.endswith(b"\n"):
                part = s.recv(256)
                if not part:
                    raise ConnectionResetError
                line += part
            break
        except (FileNotFoundError, ConnectionError, TimeoutError):
            if time.monotonic() >= deadline:
                raise _os_error(_errno.ENETDOWN, f"mkstack: no answer from {path} (is the instance up?)") from None
            time.sleep(0.02)
        finally:
            s.close()
    err, _, rest = line.strip().partition(b" ")
    if err != b"0":
        raise _os_error(int(err), rest.decode(errors="replace"))
    return rest


_conn: _Connection | None = None
_conn_lock = threading.Lock()


def _connection() -> _Connection:
    global _conn
    if _conn is None or _conn.pid != os.getpid():
        with _conn_lock:
            if _conn is None or _conn.pid != os.getpid():
                ep = os.environ.get(ENDPOINT_ENV)
                if not ep:
                    raise _os_error(_errno.ENETDOWN, f"mkstack: {ENDPOINT_ENV} is not set (use 'launcher.py run')")
                _conn = _Connection(ep)
    return _conn


# -- addresses ------------------------------------------------------------------------
def _inet_addr(address: object) -> tuple[str, int]:
    if not (isinstance(address, tuple) and len(address) == 2):
        raise TypeError("AF_INET address must be tuple, not " + type(address).__name__)
    host, port = address
    if not isinstance(port, int):
        raise TypeError(f"'{type(port).__name__}' object cannot be interpreted as an integer")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("bind(): port must be 0-65535.")
    if host in ("", "0.0.0.0"):
        return "0.0.0.0", port
    if host == "<broadcast>":
        return "255.255.255.255", port
    return gethostbyname(host), port


def _inet6_addr(address: object) -> tuple[str, int]:
    """(host, port[, flowinfo[, scope_id]]) as the socket server takes it: the numeric
    address, with ``%scope_id`` when one is given (in the tuple or as ``%name`` after it)."""
    if not (isinstance(address, tuple) and 2 <= len(address) <= 4):
        raise TypeError("AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])")
    host, port, flowinfo, scope = (*address, 0, 0)[:4]
    if not all(isinstance(v, int) for v in (port, flowinfo, scope)):
        raise TypeError("'str' object cannot be interpreted as an integer")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("bind(): port must be 0-65535.")
    if not 0 <= flowinfo <= 0xFFFFF:
        raise OverflowError("flowinfo must be 0-1048575.")
    if host in ("", "::"):
        return "::", port
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return "::1", port
    text, _, name = str(host).partition("%")
    try:
        _k.inet_pton(_k.AF_INET6, text)
    except OSError:
        raise gaierror(_k.EAI_NONAME, "Name or service not known") from None
    if name:
        scope = int(name) if name.isdigit() else dict((n, i) for i, n in if_nameindex()).get(name, -1)
        if scope < 0:
            raise gaierror(_k.EAI_NONAME, "Name or service not known")
    return (f"{text}%{scope}" if scope else text), port


def _inet6_name(host: str, port: int) -> tuple[str, int, int, int]:
    """The 4-tuple of an AF_INET6 name; the server writes a link-local one's scope after ``%``."""
    text, _, scope = host.partition("%")
    return text, port, 0, int(scope) if scope.isdigit() else 0


def gethostbyname(host: str) -> str:
    """Numeric forms and localhost; mkstack has no resolver (no DNS traffic leaves it)."""
    if host in ("localhost", "localhost.localdomain"):
        return "127.0.0.1"
    try:
        return _k.inet_ntoa(_k.inet_aton(host))   # also accepts "10.1", as the stdlib does
    except OSError:
        raise gaierror(_k.EAI_NONAME, "Name or service not known") from None


def gethostbyname_ex(host: str) -> tuple[str, list[str], list[str]]:
    addr = gethostbyname(host)
    return host, [], [addr]


def gethostbyaddr(addr: str) -> tuple[str, list[str], list[str]]:
    ip = gethostbyname(addr)
    return ("localhost" if ip.startswith("127.") else ip), [], [ip]


def getfqdn(name: str = "") -> str:
    """The stdlib asks a resolver; mkstack has none: the name as given, or the host name."""
    name = name.strip()
    return _k.gethostname() if name in ("", "0.0.0.0", "::") else name


def getnameinfo(sockaddr: tuple, flags: int) -> tuple[str, str]:
    if isinstance(sockaddr, tuple) and len(sockaddr) in (3, 4):
        host, port = _inet6_addr(sockaddr)
        return host, str(port)
    host, port = sockaddr
    return gethostbyname(host), str(port)


def getaddrinfo(host: str | bytes | None, port: str | int | bytes | None, family: int = 0, type: int = 0,
                proto: int = 0, flags: int = 0) -> list:
    """Numeric hosts and localhost (mkstack has no resolver). IPv6 rows come for IPv6 literals
    and for AF_INET6; for family 0 a name gives IPv4 rows only (a host without IPv6 routes
    beyond its link, as glibc's AI_ADDRCONFIG would answer)."""
    if family not in (0, AF_INET, AF_INET6):
        raise gaierror(_k.EAI_FAMILY, "ai_family not supported")
    if isinstance(host, bytes):
        host = host.decode("idna")
    if isinstance(port, bytes):
        port = port.decode()
    literal6 = host is not None and ":" in host
    if literal6 and family == AF_INET:
        raise gaierror(_k.EAI_ADDRFAMILY, "Address family for hostname not supported")
    if family == AF_INET6 or literal6:
        family = AF_INET6
        if host is None:
            addr, scope = "::" if flags & _k.AI_PASSIVE else "::1", 0
        else:
            addr, _, _, scope = _inet6_name(*_inet6_addr((host, 0)))
    elif host is None:
        addr = "0.0.0.0" if flags & _k.AI_PASSIVE else "127.0.0.1"
    else:
        addr = gethostbyname(host)
    kinds = [(SOCK_STREAM, IPPROTO_TCP, "tcp"), (SOCK_DGRAM, IPPROTO_UDP, "udp"), (SOCK_RAW, 0, "")]
    ports: dict[int, int] = {}
    if port is None or isinstance(port, int) or str(port).isdigit():
        ports = {kind: int(port or 0) for kind, _, _ in kinds}
    else:
        # a service name (as glibc): only the socket types the service is defined for
        for kind, _, pname in kinds[:2]:
            try:
                ports[kind] = _k.getservbyname(str(port), pname)
            except OSError:
                pass
        if not ports:
            raise gaierror(_k.EAI_SERVICE, "Servname not supported for ai_socktype")
    out = []
    for kind, p, _ in kinds:
        if kind not in ports or (type and kind != type) or (proto and p != proto and type != SOCK_RAW):
            continue
        sockaddr = (addr, ports[kind], 0, scope) if family == AF_INET6 else (addr, ports[kind])
        out.append((AddressFamily(family or AF_INET), SocketKind(kind), p if not proto else proto, "", sockaddr))
    if not out and len(ports) < len(kinds):
        raise gaierror(_k.EAI_SERVICE, "Servname not supported for ai_socktype")
    return out


def has_dualstack_ipv6() -> bool:
    return True                     # an AF_INET6 socket without IPV6_V6ONLY takes IPv4 too


def if_nameindex() -> list[tuple[int, str]]:
    """mkstack's interfaces (lo and its configured devices), not the host's."""
    out = []
    for item in os.environ.get(IFACES_ENV, "1:lo").split(","):
        index, _, name = item.partition(":")
        if index.isdigit() and name:
            out.append((int(index), name))
    return out


def if_nametoindex(name: str) -> int:
    name = os.fsdecode(name)        # TypeError for what is not a name, as the stdlib
    for index, n in if_nameindex():
        if n == name:
            return index
    raise OSError("no interface with this name")


def if_indextoname(index: int) -> str:
    if not isinstance(index, int):
        raise TypeError("an integer is required")
    if index < 0:
        raise OverflowError("can't convert negative value to unsigned int")
    for i, name in if_nameindex():
        if i == index:
            return name
    raise _os_error(_errno.ENXIO)


def _live_connection() -> "_Connection | None":
    """This process's connection if it has made one (never makes one)."""
    return _conn if _conn is not None and _conn.pid == os.getpid() else None


def _detached(fd: int) -> tuple | None:
    conn = _live_connection()
    return conn.detached.get(fd) if conn is not None else None


def close(fd: int) -> None:
    """socket.close(fd): a descriptor detach() gave closes its mkstack socket; others are the kernel's."""
    found = _detached(fd)
    if found is None:
        _k.close(fd)
        return
    conn = _connection()
    del conn.detached[fd]
    sfd, _, _, _, n = found
    n.close()
    try:
        conn.call(SYS_CLOSE, sfd)
    except OSError:
        pass


def dup(fd: int) -> int:
    """socket.dup(fd): for a descriptor detach() gave, one more for the same mkstack socket."""
    found = _detached(fd)
    if found is None:
        return _k.dup(fd)
    sfd, family, type_, proto, _ = found
    conn = _connection()
    newfd, sock_id, ver, mask = conn.call(SYS_DUP, sfd)  # type: ignore[misc]
    return conn.park(newfd, sock_id, ver, mask, family, type_, proto)


def hold_readable(sock: "socket", held: bool) -> None:
    """A layer above the socket (TLS) holds bytes read ahead, or no longer does: its
    fileno() reads as readable while it does, as if they were still in the socket."""
    conn, n = _connection(), sock._notifier
    if held:
        conn.buffered.add(n.sock_id)
    else:
        conn.buffered.discard(n.sock_id)
    n.recheck(held or bool(conn.held.get(n.sock_id)))


def take_back(sock: "socket", fileno: int) -> bool:
    """Take ``sock``'s detached descriptor up again into ``sock`` itself (a wrapper
    that detached it refused it before taking it up); False if it is gone."""
    conn = _live_connection()
    if conn is None or fileno not in conn.detached:
        return False
    sock._adopt(fileno)
    return True


def getdefaulttimeout() -> float | None:
    return _default_timeout


def setdefaulttimeout(value: float | None) -> None:
    global _default_timeout
    _default_timeout = _check_timeout(value)


def _check_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if value != value:
        raise ValueError("Invalid value NaN (not a number)")
    if value < 0:
        raise ValueError("Timeout value out of range")
    if value * 1e9 >= 2 ** 63:          # CPython keeps timeouts as int64 nanoseconds
        raise OverflowError("timestamp out of range for platform time_t")
    return value


# -- the socket class -------------------------------------------------------------------
class socket:
    """An mkstack socket with the stdlib ``socket.socket`` interface."""

    __slots__ = ("_fd", "_family", "_type", "_proto", "_timeout", "_notifier", "_closed", "_io_refs",
                 "_closed_requested", "_sent_ok", "_post_ok", "__weakref__")

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
        if fileno is not None:
            self._adopt(fileno)
            return
        family = AF_INET if family == -1 else family
        type = SOCK_STREAM if type == -1 else type
        proto = 0 if proto == -1 else proto
        self._closed = True
        conn = _connection()
        fd = conn.call(SYS_SOCKET, int(family), int(type), int(proto))
        _, ver, mask, sock_id = conn.local.last_ready
        self._setup(fd, family, type & 0xF, proto,
                    0.0 if type & getattr(_k, "SOCK_NONBLOCK", 0) else _default_timeout, sock_id, ver, mask)

    def _setup(self, fd: int, family: int, type: int, proto: int, timeout: float | None,
               sock_id: int, ver: int, mask: int, notifier: _Notifier | None = None) -> None:
        self._fd, self._family, self._type, self._proto = fd, family, type, proto
        self._timeout = timeout
        self._io_refs = 0
        # UDP: destinations a send reached without an error; later sends to them do not wait
        self._sent_ok: set | None = set() if family in _INET and type == SOCK_DGRAM else None
        # TCP: a send call went through (connected, not shut down): later small sends are posted
        self._post_ok = False
        conn = _connection()
        self._notifier = conn.register(fd, sock_id, ver, mask, notifier)
        conn.objects[fd] = self
        self._closed = False

    def _adopt(self, fileno: int) -> None:
        """socket(fileno=...): take up a socket whose descriptor detach() returned."""
        self._closed = True
        conn = _connection()
        found = conn.detached.pop(fileno, None)
        if found is None:
            raise _os_error(_errno.EOPNOTSUPP, f"fd {fileno} is not a detached mkstack socket; mkstack cannot "
                            "take over kernel sockets")
        fd, family, type_, proto, n = found
        self._setup(fd, family, type_, proto, _default_timeout, n.sock_id, n.ver, -1, n)

    # -- plumbing
    def _call(self, code: int, *args: object) -> object:
        if self._closed:
            raise _os_error(_errno.EBADF, "Bad file descriptor")
        return _connection().call(code, self._fd, *args)

    def __repr__(self) -> str:
        return (f"<mkstack.socket fd={-1 if self._closed else self._fd}, family={AddressFamily(self._family)!s}, "
                f"type={SocketKind(self._type)!s}, proto={self._proto}>")

    def __enter__(self) -> "socket":
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __getstate__(self) -> None:
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")

    @property
    def family(self) -> AddressFamily:
        return AddressFamily(self._family)

    @property
    def type(self) -> SocketKind:
        return SocketKind(self._type)

    @property
    def proto(self) -> int:
        return self._proto

    def fileno(self) -> int:
        """A descriptor that select/poll/selectors see as readable when this socket is."""
        return -1 if self._closed else self._notifier.fd

    def close(self) -> None:
        # as the stdlib: files from makefile() keep the socket open until they close
        if self._io_refs > 0:
            self._closed_requested = True
            return
        self._real_close()

    def _decref_socketios(self) -> None:
        self._io_refs -= 1
        if self._io_refs <= 0 and getattr(self, "_closed_requested", False):
            self._real_close()

    def _real_close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = _connection()
        conn.unregister(self._fd)
        try:
            conn.call(SYS_CLOSE, self._fd)
        except OSError:
            pass

    def detach(self) -> int:
        """Close the object without closing the socket; returns the descriptor that
        ``socket(fileno=...)`` takes up again."""
        if self._closed:
            return -1
        self._closed = True
        n = self._notifier
        conn = _connection()
        conn.detached[n.fd] = (self._fd, self._family, self._type, self._proto, n)
        conn.notifiers.pop(self._fd, None)     # its readiness keeps arriving by socket id
        return n.fd

    def dup(self) -> "socket":
        """A new socket object and descriptor for the same socket (the socket server's dup)."""
        fd, sock_id, ver, mask = self._call(SYS_DUP)  # type: ignore[misc]
        new = socket.__new__(socket)
        new._setup(fd, self._family, self._type, self._proto, None, sock_id, ver, mask)
        new.settimeout(self._timeout)
        return new

    # -- timeouts and blocking
    def settimeout(self, value: float | None) -> None:
        self._timeout = _check_timeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # -- names
    def _addr(self, address: object) -> tuple[str | bytes, int]:
        """An address as the socket server takes it: (host, port), or an AF_UNIX name."""
        if self._family == AF_INET6:
            return _inet6_addr(address)
        if self._family != AF_UNIX:
            return _inet_addr(address)
        if isinstance(address, (bytes, bytearray, memoryview)):
            return bytes(address), 0
        return os.fspath(address), 0  # type: ignore[call-overload]

    def _name(self, result: list) -> object:
        return self._peer(result[0], result[1])

    def bind(self, address: tuple[str, int]) -> None:
        host, port = self._addr(address)
        self._call(SYS_BIND, host, port)

    def connect(self, address: tuple[str, int]) -> None:
        host, port = self._addr(address)
        if self._sent_ok:
            self._sent_ok.clear()          # the default destination changes
        self._call(SYS_CONNECT, host, port, self._timeout)

    def listen(self, backlog: int = min(SOMAXCONN, 128)) -> None:
        self._call(SYS_LISTEN, int(backlog))

    def accept(self) -> tuple["socket", tuple[str, int]]:
        fd, host, port, sock_id, ver, mask = self._call(SYS_ACCEPT, self._timeout)  # type: ignore[misc]
        new = socket.__new__(socket)
        # as the stdlib: the new socket blocks unless a default timeout is set
        new._setup(fd, self._family, self._type, self._proto, _default_timeout, sock_id, ver, mask)
        return new, self._name([host, port])  # type: ignore[return-value]

    def connect_ex(self, address: tuple[str, int]) -> int:
        try:
            self.connect(address)
        except OSError as exc:
            return exc.errno or _errno.EINVAL
        return 0

    def getsockname(self) -> tuple[str, int]:
        return self._name(self._call(SYS_GETSOCKNAME))  # type: ignore[arg-type, return-value]

    def getpeername(self) -> tuple[str, int]:
        return self._name(self._call(SYS_GETPEERNAME))  # type: ignore[arg-type, return-value]

    # -- data
    def sendto(self, data: bytes, flags_or_addr: object, address: object = None) -> int:
        if address is None:
            flags, address = 0, flags_or_addr
        else:
            flags = flags_or_addr  # type: ignore[assignment]
        host, port = self._addr(address)
        return self._send(bytes(memoryview(data)), int(flags), host, port)

    def send(self, data: bytes, flags: int = 0) -> int:
        view = memoryview(data).cast("B")
        if self._type == SOCK_STREAM:
            view = view[:SEND_CHUNK]       # a stream send may be partial, as with the kernel
        return self._send(bytes(view), int(flags), None, 0)

    def _send(self, data: bytes, flags: int, host: str | bytes | None, port: int, fds: list | None = None) -> int:
        if self._post_ok:
            # a small TCP send the kernel would return from at once: the connection works, there was
            # room when last heard (POLLOUT), no error or hang-up known. Posted; the thread's next
            # call makes sure it was applied (_call)
            if (0 < len(data) <= POST_MAX and not flags & ~NOWAIT_FLAGS and host is None and not fds
                    and not self._closed and self._notifier.mask & (_POLLOUT | _POLLERR | _POLLHUP) == _POLLOUT
                    and _connection().post_send(self._fd, data, flags, self._notifier.sock_id)):
                return len(data)
        ok = self._sent_ok
        if ok is not None and not fds and not self._closed:
            # a UDP send the kernel would not block on: to a destination already reached (bound,
            # routed, not a refused broadcast), no error pending, a size that fits. Sent without
            # waiting for the answer; an error found later is the socket's next one (SO_ERROR).
            if (host in ok and not flags & ~NOWAIT_FLAGS and len(data) <= MAX_UDP_PAYLOAD
                    and not self._notifier.mask & _POLLERR
                    and _connection().post(SYS_SENDTO_NOWAIT, self._fd, data, flags, host, port, self._timeout)):
                return len(data)
        try:
            if fds:
                return self._call(SYS_SENDMSG, data, flags, host, port, self._timeout, fds)  # type: ignore[return-value]
            n = self._call(SYS_SENDTO, data, flags, host, port, self._timeout)
            if self._type == SOCK_STREAM and self._family in _INET and n:
                self._post_ok = True
            if ok is not None:
                if len(ok) >= NOWAIT_DESTS:
                    ok.clear()
                ok.add(host)
            return n  # type: ignore[return-value]
        except BrokenPipeError:
            if not flags & _MSG_NOSIGNAL:
                signal.raise_signal(signal.SIGPIPE)   # as the kernel does; Python ignores it by default
            raise

    def sendall(self, data: bytes, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = self.send(view, flags)
            view = view[n:]

    def sendmsg(self, buffers: object, ancdata: object = (), flags: int = 0, address: object = None) -> int:
        data = b"".join(bytes(memoryview(b)) for b in buffers)  # type: ignore[attr-defined]
        fds = []
        for level, kind, payload in ancdata:  # type: ignore[attr-defined]
            if (level, kind) != (SOL_SOCKET, _k.SCM_RIGHTS) or self._family != AF_UNIX:
                raise _os_error(_errno.EOPNOTSUPP, "mkstack passes only SCM_RIGHTS, over AF_UNIX sockets")
            passed, raw = array.array("i"), bytes(payload)
            passed.frombytes(raw[:len(raw) - len(raw) % passed.itemsize])
            fds += [self._server_fd(fd) for fd in passed]
        host, port = self._addr(address) if address is not None else (None, 0)
        return self._send(data, int(flags), host, port, fds)

    @staticmethod
    def _server_fd(fileno: int) -> int:
        return _connection().server_fd(fileno, "only mkstack sockets can be passed")

    def _recv(self, bufsize: int, flags: int) -> tuple[bytes, object, int]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        if not (self._family in _INET and self._type == SOCK_DGRAM):
            if bufsize > WAITALL_MAX and flags & _MSG_WAITALL and self._type & SOCK_STREAM:
                return self._recv_waitall(int(bufsize), int(flags))
            data, host, port, truelen = self._call(SYS_RECVFROM, int(bufsize), int(flags),  # type: ignore[misc]
                                                   self._timeout)
            return data, self._peer(host, port), truelen
        # UDP: datagrams that came along with an earlier read are served here, in order;
        # a read of the server brings along what is queued behind its datagram
        if self._closed:
            raise _os_error(_errno.EBADF, "Bad file descriptor")
        conn = _connection()
        held = conn.take_held(self._notifier.sock_id, bool(flags & _MSG_PEEK))
        if held is not None:
            data, host, port = held
            return data[:bufsize], self._peer(host, port), len(data)
        res = self._call(SYS_RECVFROM_MANY, int(bufsize), int(flags), self._timeout)
        data, host, port, truelen = res[:4]  # type: ignore[index]
        more = res[4] if len(res) > 4 else None  # type: ignore[arg-type]   # (not after a shutdown, say)
        if more:
            conn.hold(self._notifier.sock_id, more)
        return data, self._peer(host, port), truelen

    def _recv_waitall(self, bufsize: int, flags: int) -> tuple[bytes, object, int]:
        """A MSG_WAITALL read larger than the socket server gathers for one call: in
        turns of WAITALL_MAX, into this process's memory (as the kernel fills the
        caller's buffer); a short turn (end of stream, a signal, a timeout) ends it."""
        parts, got = [], 0
        while got < bufsize:
            n = min(WAITALL_MAX, bufsize - got)
            data = self._call(SYS_RECVFROM, n, flags, self._timeout)[0]  # type: ignore[index]
            parts.append(data)
            got += len(data)
            if len(data) < n:
                break
        data = b"".join(parts)
        return data, None, len(data)

    def _peer(self, host: object, port: int) -> object:
        if host is None:
            return None
        if self._family == AF_INET6:
            return _inet6_name(host, port)  # type: ignore[arg-type]
        return host if self._family == AF_UNIX else (host, port)

    def _recv_trunc(self, bufsize: int, flags: int) -> tuple[bytes, tuple[str, int] | None]:
        """recv/recvfrom: with MSG_TRUNC the result is as long as the datagram was
        (CPython sizes it by recv's return value, which is the real length)."""
        data, addr, truelen = self._recv(bufsize, flags)
        if flags & _MSG_TRUNC and truelen > len(data):
            data += bytes(truelen - len(data))
        return data, addr

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, tuple[str, int] | None]:
        return self._recv_trunc(bufsize, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._recv_trunc(bufsize, flags)[0]

    def recvfrom_into(self, buffer: object, nbytes: int = 0, flags: int = 0) -> tuple[int, tuple[str, int] | None]:
        view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
        if nbytes < 0:
            raise ValueError("negative buffersize in recvfrom_into")
        if nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data, addr, truelen = self._recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return (truelen if flags & _MSG_TRUNC else len(data)), addr

    def recv_into(self, buffer: object, nbytes: int = 0, flags: int = 0) -> int:
        return self.recvfrom_into(buffer, nbytes, flags)[0]

    def recvmsg_into(self, buffers: object, ancbufsize: int = 0, flags: int = 0) -> tuple:
        views = [memoryview(b).cast("B") for b in buffers]  # type: ignore[attr-defined]
        data, ancdata, msg_flags, addr = self.recvmsg(sum(len(v) for v in views), ancbufsize, flags)
        at = 0
        for v in views:
            part = data[at:at + len(v)]
            v[:len(part)] = part
            at += len(part)
        return len(data), ancdata, msg_flags, addr

    def sendfile(self, file: object, offset: int = 0, count: int | None = None) -> int:
        """As the stdlib's (its send fallback, in larger blocks): ``count`` bytes of
        ``file`` from ``offset`` (to EOF if None); the file's position ends after them."""
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if not self._type & SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if count is not None and (not isinstance(count, int) or count <= 0):
            raise (TypeError if not isinstance(count, int) else ValueError)(
                f"count must be a positive integer (got {count!r})")
        if offset:
            file.seek(offset)  # type: ignore[attr-defined]
        first = file.read(SENDFILE_BLOCK if count is None else min(SENDFILE_BLOCK, count))  # type: ignore[attr-defined]
        if not first:
            return 0                    # nothing to send: the stdlib answers 0 before anything else
        if self.gettimeout() == 0:
            file.seek(offset)  # type: ignore[attr-defined]
            raise ValueError("non-blocking sockets are not supported")
        total = 0
        try:
            data = first
            while data:
                self.sendall(data)
                total += len(data)
                if count is not None and total >= count:
                    break
                want = SENDFILE_BLOCK if count is None else min(SENDFILE_BLOCK, count - total)
                data = file.read(want)  # type: ignore[attr-defined]
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    _sendfile_use_send = sendfile     # the name ssl.SSLSocket.sendfile calls for a TLS socket

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def get_inheritable(self) -> bool:
        made = self._notifier.made        # no readiness descriptor yet: nothing a child could inherit
        return made >= 0 and not self._closed and os.get_inheritable(made)

    def set_inheritable(self, inheritable: bool) -> None:
        os.set_inheritable(self._notifier.fd, inheritable)   # the readiness descriptor; the socket stays ours

    def sendmsg_afalg(self, *args: object, **kwargs: object) -> int:
        raise _os_error(_errno.EOPNOTSUPP, "mkstack has no AF_ALG sockets")

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> tuple:
        if bufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        if ancbufsize < 0:
            raise ValueError("negative buffer size in recvmsg()")
        if self._family != AF_UNIX:
            data, addr, truelen = self._recv(bufsize, flags)
            return data, [], _MSG_TRUNC if truelen > len(data) else 0, addr
        data, host, port, truelen, passed = self._call(SYS_RECVMSG, int(bufsize), int(flags),  # type: ignore[misc]
                                                       self._timeout)
        msg_flags = _MSG_TRUNC if truelen > len(data) else 0
        conn = _connection()
        room = max(0, (ancbufsize - _k.CMSG_LEN(0)) // 4) if ancbufsize >= _k.CMSG_LEN(0) else 0
        fds = [conn.park(*p) for p in passed[:room]]
        for p in passed[room:]:                 # no room for them: closed, as the kernel does
            conn.call(SYS_CLOSE, p[0])
            msg_flags |= int(_k.MSG_CTRUNC)
        ancdata = [(SOL_SOCKET, _k.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
        return data, ancdata, msg_flags, self._peer(host, port)

    def shutdown(self, how: int) -> None:
        self._sent_ok = None               # sends report EPIPE at once from now on
        self._post_ok = False
        self._call(SYS_SHUTDOWN, int(how))

    # -- options
    def setsockopt(self, level: int, optname: int, value: object, optlen: int | None = None) -> None:
        if level == IPPROTO_TCP and optname == _k.TCP_CONGESTION and isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value).split(b"\0", 1)[0].decode("latin-1")     # a name, as the kernel reads it
            self._call(SYS_SETSOCKOPT, int(level), int(optname), value)
            return
        if level == SOL_SOCKET and optname == SO_LINGER and isinstance(value, (bytes, bytearray, memoryview)):
            onoff, secs = struct.unpack("ii", bytes(value)[:8])
            value = secs if onoff else -1          # the server keeps seconds, -1 for off
        elif isinstance(value, (bytes, bytearray, memoryview)):
            b = bytes(value)
            value = int.from_bytes(b[:4].ljust(4, b"\0"), sys.byteorder) if b else 0
        if value is None:
            raise _os_error(_errno.EINVAL)
        if isinstance(value, int) and not -2 ** 31 <= value < 2 ** 31:
            # CPython tries an int, then a buffer, and reports the second failure
            raise TypeError(f"a bytes-like object is required, not '{type(value).__name__}'")
        self._call(SYS_SETSOCKOPT, int(level), int(optname), int(value))  # type: ignore[arg-type]

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        if buflen is not None and not 0 <= buflen <= 1024:
            raise OSError("getsockopt buflen out of range")          # CPython's own check
        buflen = buflen or None                                      # 0: the int form, as CPython
        v = self._call(SYS_GETSOCKOPT, int(level), int(optname))
        if isinstance(v, (bytes, str)):
            # TCP_INFO (a struct) or TCP_CONGESTION (a name in a 16-byte field); without a
            # buflen CPython reads an int from the first four bytes, as it does from the kernel
            raw = v if isinstance(v, bytes) else v.encode().ljust(16, b"\0")
            if buflen is None:
                return int.from_bytes(raw[:4].ljust(4, b"\0"), sys.byteorder, signed=True)
            return raw[:buflen]
        if level == SOL_SOCKET and optname == SO_LINGER:
            packed = struct.pack("ii", int(v >= 0), max(v, 0))  # type: ignore[operator]
            return packed[:buflen] if buflen else int(v >= 0)  # type: ignore[operator]
        if buflen is None:
            return v  # type: ignore[return-value]
        return int(v).to_bytes(4, sys.byteorder, signed=True)[:buflen]  # type: ignore[arg-type]

    def makefile(self, mode: str = "r", buffering: int | None = None, *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> object:
        """A file object over the socket, built as the stdlib builds it (SocketIO + io buffers)."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        writing, reading, binary = "w" in mode, "r" in mode or "w" not in mode, "b" in mode
        raw = _k.SocketIO(self, ("r" if reading else "") + ("w" if writing else ""))
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buf: object = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buf = io.BufferedReader(raw, buffering)
        else:
            buf = io.BufferedWriter(raw, buffering)
        if binary:
            return buf
        text = io.TextIOWrapper(buf, encoding, errors, newline)  # type: ignore[arg-type]
        text.mode = mode
        return text


SocketType = socket


def create_connection(address: tuple[str, int], timeout: object = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: tuple[str, int] | None = None, *, all_errors: bool = False) -> socket:
    host, port = address
    err = None
    for family, kind, proto, _, sa in getaddrinfo(host, port, 0, SOCK_STREAM):
        s = socket(family, kind, proto)
        try:
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                s.settimeout(timeout)  # type: ignore[arg-type]
            if source_address:
                s.bind(source_address)
            s.connect(sa)
            return s
        except OSError as exc:
            err = exc
            s.close()
    raise err or OSError("getaddrinfo returns an empty list")


def create_server(address: tuple[str, int], *, family: int = AF_INET, backlog: int | None = None,
                  reuse_port: bool = False, dualstack_ipv6: bool = False) -> socket:
    if dualstack_ipv6 and family != AF_INET6:
        raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    s = socket(family, SOCK_STREAM)
    try:
        s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)     # as the stdlib does on POSIX
        if reuse_port:
            s.setsockopt(SOL_SOCKET, _k.SO_REUSEPORT, 1)
        if family == AF_INET6:                       # as the stdlib: IPv6 only unless asked for both
            s.setsockopt(_k.IPPROTO_IPV6, _k.IPV6_V6ONLY, 0 if dualstack_ipv6 else 1)
        s.bind(address)
        s.listen(backlog) if backlog is not None else s.listen()
        return s
    except OSError:
        s.close()
        raise


def socketpair(family: int = -1, type: int = -1, proto: int = 0) -> tuple:
    """A connected pair of mkstack AF_UNIX sockets."""
    family = AF_UNIX if family == -1 else family
    type = SOCK_STREAM if type == -1 else type
    conn = _connection()
    pair = conn.call(SYS_SOCKETPAIR, int(family), int(type), int(proto))
    out = []
    for fd, sock_id, ver, mask in pair:  # type: ignore[union-attr]
        s = socket.__new__(socket)
        s._setup(fd, family, type & 0xF, proto, 0.0 if type & getattr(_k, "SOCK_NONBLOCK", 0) else _default_timeout,
                 sock_id, ver, mask)
        out.append(s)
    return out[0], out[1]


_kernel_ioctl = None


def ioctl(fd: object, request: int, arg: object = 0, mutate_flag: bool = True) -> object:
    """``fcntl.ioctl`` that answers SIOCATMARK, SIOCINQ (FIONREAD) and SIOCOUTQ for
    mkstack sockets (``launcher.py run`` installs it); other descriptors go to the kernel."""
    fileno = fd if isinstance(fd, int) else fd.fileno()  # type: ignore[attr-defined]
    conn = _live_connection()
    mk = conn.socket_of(fileno) if conn is not None else None
    if mk is None or request not in (SIOCATMARK, SIOCINQ, SIOCOUTQ):
        return _kernel_ioctl(fd, request, arg, mutate_flag)  # type: ignore[misc]
    q = conn.held.get(conn.notifiers[mk].sock_id) if request == SIOCINQ else None  # type: ignore[union-attr]
    value = len(q[0][0]) if q else conn.call(SYS_IOCTL, mk, request)  # type: ignore[union-attr]
    if isinstance(arg, int):
        return 0
    packed = int(value).to_bytes(4, sys.byteorder, signed=True)  # type: ignore[arg-type]
    if isinstance(arg, (bytearray, memoryview)) and mutate_flag:
        memoryview(arg).cast("B")[:4] = packed
        return 0
    return packed[:len(arg)]  # type: ignore[arg-type]


_kernel_sendfile = None


def _os_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int, *args: object, **kwargs: object) -> int:
    """``os.sendfile`` that sends through mkstack when ``out_fd`` is an mkstack socket's
    fileno() (asyncio's sock_sendfile and loop.sendfile call it so): up to ``count``
    bytes of ``in_fd`` from ``offset`` (from its position, which then advances, if
    None), as one send, which is partial, or BlockingIOError, as the socket's mode
    makes it. Other descriptors go to the kernel."""
    conn = _live_connection()
    sfd = conn.socket_of(out_fd) if conn is not None and isinstance(out_fd, int) else None
    if sfd is None:
        return _kernel_sendfile(out_fd, in_fd, offset, count, *args, **kwargs)  # type: ignore[misc]
    sock = conn.objects.get(sfd)  # type: ignore[union-attr]
    if sock is None or args or kwargs:
        raise _os_error(_errno.EOPNOTSUPP if sock is not None else _errno.EBADF,
                        "mkstack's sendfile takes out_fd, in_fd, offset, count")
    if count < 0:
        raise _os_error(_errno.EINVAL)
    want = min(count, SENDFILE_BLOCK)
    data = (os.read(in_fd, want) if offset is None else os.pread(in_fd, want, offset)) if want else b""
    if not data:
        return 0
    n = 0
    try:
        n = socket.send(sock, data)       # the socket's own bytes, not a TLS layer's above it (as the kernel)
        return n
    finally:
        if offset is None and n < len(data):
            os.lseek(in_fd, n - len(data), os.SEEK_CUR)     # the position advances by what was sent


def install_ioctl() -> None:
    """Route ``fcntl.ioctl`` and ``os.sendfile`` on mkstack sockets here."""
    global _kernel_ioctl
    import fcntl
    if _kernel_ioctl is None:
        _kernel_ioctl = fcntl.ioctl
        fcntl.ioctl = ioctl
    global _kernel_sendfile
    if _kernel_sendfile is None and hasattr(os, "sendfile"):
        _kernel_sendfile = os.sendfile
        os.sendfile = _os_sendfile


class _SslImportHook:
    """Installs TLS for mkstack sockets (shared/client/mkssl.py) when the program first
    imports ssl: programs that never do pay nothing for it at start-up."""

    def find_spec(self, name: str, path: object, target: object = None) -> object:
        if name != "ssl":
            return None
        sys.meta_path.remove(self)
        import importlib.util
        spec = importlib.util.find_spec("ssl")
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: object) -> None:
            run(module)  # type: ignore[arg-type]
            from shared.client import mkssl
            mkssl.install()
        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install_ssl_hook() -> None:
    if "ssl" in sys.modules:                 # already there (imported before the socket module was swapped)
        from shared.client import mkssl
        mkssl.install()
    elif not any(isinstance(h, _SslImportHook) for h in sys.meta_path):
        sys.meta_path.insert(0, _SslImportHook())


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> socket:
    """A socket object for a duplicate of ``fd``, which must be an mkstack socket's
    fileno() (or a descriptor detach() returned)."""
    conn = _connection()
    sfd = conn.server_fd(fd, "mkstack cannot take over kernel sockets")
    newfd, sock_id, ver, mask = conn.call(SYS_DUP, sfd)  # type: ignore[misc]
    new = socket.__new__(socket)
    new._setup(newfd, int(family), int(type), int(proto), _default_timeout, sock_id, ver, mask)
    return new


def send_fds(sock: socket, buffers: object, fds: object, flags: int = 0, address: object = None) -> int:
    """As the stdlib's: pass ``fds`` (mkstack sockets' fileno()) with SCM_RIGHTS."""
    return sock.sendmsg(buffers, [(SOL_SOCKET, _k.SCM_RIGHTS, array.array("i", fds))], flags, address)  # type: ignore[arg-type]


def recv_fds(sock: socket, bufsize: int, maxfds: int, flags: int = 0) -> tuple:
    """As the stdlib's: the message and up to ``maxfds`` passed descriptors."""
    fds = array.array("i")
    msg, ancdata, msg_flags, addr = sock.recvmsg(bufsize, _k.CMSG_LEN(maxfds * fds.itemsize), flags)
    for level, kind, data in ancdata:
        if (level, kind) == (SOL_SOCKET, _k.SCM_RIGHTS):
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    return msg, list(fds), msg_flags, addr


__all__ = list(_k.__all__)      # every name of the stdlib module, each defined above
