"""AF_UNIX sockets in the socket server (unix(7)): SOCK_STREAM and SOCK_DGRAM.

Names are filesystem paths or abstract names (a leading NUL byte). Binding a
path creates a socket inode there, resolved against the caller's working
directory and owned by the caller, so a second bind gets EADDRINUSE until the
path is unlinked, and connect finds the socket by the inode the path names
now. Abstract names live in the server's table only and go with the socket.
Stream sockets reuse the stream machinery (receive buffer, readers, writers,
MSG_WAITALL, MSG_PEEK): a send appends to the peer's receive buffer, bounded
by the sender's SO_SNDBUF. Datagrams wait in skbs in the receiver's queue, with
the sender's name. SCM_RIGHTS passes mkstack sockets: a passing holds a
reference until the receiver takes the descriptor (or the message is dropped,
which closes it), as the BSD design of access rights has it.
"""

from __future__ import annotations

import collections
import errno
import os
import socket as ksock
import stat

from services.socket.credentials import acting_as, creds_of
from services.socket.types import Client, MSG_DONTWAIT, MSG_OOB, Pending, Sock, err
from shared.ipc.messages import (SYS_ACCEPT, SYS_BIND, SYS_CLOSE, SYS_CONNECT, SYS_GETPEERNAME,
                                 SYS_GETSOCKNAME, SYS_LISTEN, SYS_RECVFROM, SYS_SENDTO, SYS_SHUTDOWN)
from shared.skb import NoBuffers


UNIX_PATH_MAX = 108
MAX_UNIX_DGRAM = 65000          # what one skb holds here (Linux: up to SO_SNDBUF)
MAX_PASSED = 253                # SCM_MAX_FD
UNIX_CALLS = frozenset((SYS_BIND, SYS_CONNECT, SYS_LISTEN, SYS_ACCEPT, SYS_SENDTO, SYS_RECVFROM, SYS_GETSOCKNAME,
              SYS_GETPEERNAME, SYS_SHUTDOWN, SYS_CLOSE))


class UnixSockets:
    """Mixed into SocketCore; uses its answer/fail/notify/park and stream machinery."""

    @staticmethod
    def unix_socket_check(stype: int, proto: int) -> None:
        if stype not in (ksock.SOCK_STREAM, ksock.SOCK_DGRAM):
            raise OSError(errno.ESOCKTNOSUPPORT, "Socket type not supported (mkstack has AF_UNIX stream and "
                          "datagram sockets)")
        if proto not in (0, ksock.AF_UNIX):
            raise err(errno.EPROTONOSUPPORT)

    # -- names -------------------------------------------------------------------------
    def _path(self, client: Client, name: str | bytes) -> str:
        path = os.fsdecode(name)
        if not path or len(os.fsencode(path)) >= UNIX_PATH_MAX or "\0" in path:
            raise err(errno.EINVAL)
        return path if os.path.isabs(path) else os.path.join(f"/proc/{client.pid}/cwd", path)

    def _key(self, client: Client, name: str | bytes) -> tuple:
        """The name table key of an existing name; OSError as connect(2) reports it."""
        if isinstance(name, bytes) and name[:1] == b"\0":
            return ("abstract", name)
        path = self._path(client, name)
        try:
            with acting_as(creds_of(client.pid, client.start)):     # the caller's search and write rights
                st = os.stat(path)
                writable = os.access(path, os.W_OK, effective_ids=True)
        except FileNotFoundError:
            raise err(errno.ENOENT) from None
        except PermissionError:
            raise err(errno.EACCES) from None
        except NotADirectoryError:
            raise err(errno.ENOTDIR) from None
        if not stat.S_ISSOCK(st.st_mode):
            raise err(errno.ECONNREFUSED)
        if not writable:
            raise err(errno.EACCES)          # unix_find_bsd: connecting needs write permission on the inode
        return ("path", st.st_dev, st.st_ino)

    def _lookup(self, client: Client, name: str | bytes) -> Sock:
        target = self.unix_names.get(self._key(client, name))
        if target is None:
            raise err(errno.ECONNREFUSED)
        return target

    def unix_bind(self, sock: Sock, name: str | bytes) -> None:
        if sock.uname is not None:
            raise err(errno.EINVAL)
        if isinstance(name, bytes) and name[:1] == b"\0":
            if len(name) > UNIX_PATH_MAX - 1:
                raise err(errno.EINVAL)
            key: tuple = ("abstract", name)
            if key in self.unix_names:
                raise err(errno.EADDRINUSE)
        else:
            path = self._path(sock.client, name)
            try:
                # made by the caller, as the kernel makes it: its rights, its umask, its file
                with acting_as(creds_of(sock.client.pid, sock.client.start)):
                    os.mknod(path, stat.S_IFSOCK | 0o777)
                    st = os.stat(path)
            except FileExistsError:
                raise err(errno.EADDRINUSE) from None
            except OSError as exc:
                raise err(exc.errno or errno.EINVAL) from None
            key = ("path", st.st_dev, st.st_ino)
            name = os.fsdecode(name)
        self.unix_names[key] = sock
        sock.uname, sock.ukey, sock.bound = name, key, True

    # -- calls -------------------------------------------------------------------------
    def unix_call(self, sock: Sock, call: Pending) -> None:
        code, f = call.code, call.fields
        if code == SYS_BIND:
            self.unix_bind(sock, f.addr)
            self.answer(call, 0, sock)
        elif code == SYS_CONNECT:
            self.unix_connect(sock, f.addr)
            self.answer(call, 0, sock)
        elif code == SYS_LISTEN:
            if not sock.stream:
                raise err(errno.EOPNOTSUPP)
            if sock.uname is None or sock.st not in ("new", "listening"):
                raise err(errno.EINVAL)
            sock.st, sock.backlog = "listening", max(1, min(f.backlog, 4096))
            self.answer(call, 0, sock)
        elif code == SYS_ACCEPT:
            if not sock.stream:
                raise err(errno.EOPNOTSUPP)
            self.stream_accept(sock, call)
        elif code == SYS_SENDTO:
            if call.fields.flags & MSG_OOB:
                raise err(errno.EOPNOTSUPP)
            if sock.stream and sock.peer is None and sock.st == "new":
                raise err(errno.ENOTCONN)
            if sock.stream:
                self.stream_send(sock, call)
            else:
                self.unix_dgram_send(sock, call)
        elif code == SYS_RECVFROM:
            if sock.stream:
                self.stream_recv(sock, call)
            else:
                self.sys_recvfrom(sock, call)
        elif code == SYS_GETSOCKNAME:
            self.answer(call, [sock.uname or "", 0], sock)
        elif code == SYS_GETPEERNAME:
            if sock.peer is None or (sock.stream and sock.st != "connected"):
                raise err(errno.ENOTCONN)
            self.answer(call, self.peer_name(sock), sock)
        elif code == SYS_SHUTDOWN:
            self.unix_shutdown(sock, f.how)
            self.answer(call, 0, sock)
        elif code == SYS_CLOSE:
            self.close_sock(sock)
            self.answer(call, 0)

    def unix_connect(self, sock: Sock, name: str | bytes) -> None:
        if not sock.stream:
            if name in ("", b""):                 # AF_UNSPEC: dissolve the association
                sock.peer = None
                return
            target = self._lookup(sock.client, name)
            if target.type != sock.type:
                raise err(errno.EPROTOTYPE)
            sock.peer = target
            return
        if sock.st == "connected":
            raise err(errno.EISCONN)
        if sock.st != "new":
            raise err(errno.EINVAL)
        target = self._lookup(sock.client, name)
        if target.type != sock.type:
            raise err(errno.EPROTOTYPE)
        if target.st != "listening":
            raise err(errno.ECONNREFUSED)
        if len(target.acceptq) >= target.backlog:
            raise err(errno.EAGAIN)              # unix_stream_connect: the listener's queue is full
        new = Sock(self.new_sock_id(target.uid), target.client, -1, sock.family, sock.type, sock.proto,
                   target.rcvbuf, target.sndbuf)
        new.st, new.bound, new.uname, new.peer, new.origin = "connected", True, target.uname, sock, target.id
        self.socks[new.id] = new
        self.owned(new, target.uid)
        sock.st, sock.peer = "connected", new
        target.acceptq.append(new)
        self.wake_stream(target)

    def unix_socketpair(self, client: Client, family: int, stype: int, proto: int) -> list:
        if family != ksock.AF_UNIX:
            raise err(errno.EOPNOTSUPP)
        stype &= 0xF
        self.unix_socket_check(stype, proto)
        a = self.new_sock(client, family, stype, 0)
        try:
            b = self.new_sock(client, family, stype, 0)
        except OSError:
            self.close_sock(a)
            raise
        a.peer, b.peer = b, a
        if stype == ksock.SOCK_STREAM:
            a.st = b.st = "connected"
        return [[s.fd, s.id, *s.readiness()] for s in (a, b)]

    def unix_shutdown(self, sock: Sock, how: int) -> None:
        if how not in (ksock.SHUT_RD, ksock.SHUT_WR, ksock.SHUT_RDWR):
            raise err(errno.EINVAL)
        if sock.peer is None or (sock.stream and sock.st != "connected"):
            raise err(errno.ENOTCONN)
        if how in (ksock.SHUT_RD, ksock.SHUT_RDWR):
            sock.shut_rd = True
        if how in (ksock.SHUT_WR, ksock.SHUT_RDWR):
            sock.shut_wr = True
            if sock.stream:
                sock.peer.eof = True             # the peer reads EOF
                self.wake_stream(sock.peer)
        self.wake_stream(sock) if sock.stream else self.wake_readers(sock)
        self.notify(sock)

    # -- data --------------------------------------------------------------------------
    def unix_try_send(self, sock: Sock, call: Pending) -> bool:
        """Stream send: straight into the peer's receive buffer, within SO_SNDBUF."""
        peer = sock.peer
        if peer is None or peer.shut_rd or peer.st == "closed":
            self.fail(call, errno.EPIPE, "Broken pipe", sock)
            return True
        room = sock.sndbuf - len(peer.rbuf)
        if room <= 0:
            return False
        data = call.fields.data
        n = min(len(data), room)
        if call.fds and n:
            peer.scm.append((peer.rcv_total, self.take_passed(call)))
        call.fds = None          # with no byte to ride on, nothing is passed (unix_stream_sendmsg of 0 bytes)
        self.state.rx_write(peer, peer.rcv_total, data[:n])
        self.state.touch(peer)
        peer.rbuf += data[:n]
        peer.rcv_total += n
        sock.snd_pending = len(peer.rbuf)
        self.answer(call, n, sock)
        self.wake_stream(peer)
        return True

    def unix_consumed(self, sock: Sock) -> None:
        """The reader made room: the writer may go on."""
        peer = sock.peer
        if peer is not None and peer.peer is sock:
            peer.snd_pending = len(sock.rbuf)
            self.wake_stream(peer)

    def unix_dgram_send(self, sock: Sock, call: Pending) -> None:
        data, flags, addr, timeout = call.fields.data, call.fields.flags, call.fields.addr, call.fields.timeout
        if flags & MSG_OOB:
            raise err(errno.EOPNOTSUPP)
        if sock.shut_wr:
            raise err(errno.EPIPE)
        target = self._lookup(sock.client, addr) if addr not in (None, "", b"") else sock.peer
        if target is None:
            raise err(errno.ENOTCONN)
        if target.id not in self.socks:
            raise err(errno.ECONNREFUSED)
        if target.type != sock.type:
            raise err(errno.EPROTOTYPE)
        if target.peer is not None and target.peer is not sock:
            raise err(errno.EPERM)               # unix_may_send: it is connected to another
        if len(data) > MAX_UNIX_DGRAM:
            raise err(errno.EMSGSIZE)
        if self._queue_full(target, len(data)):
            if timeout is not None and timeout <= 0 or flags & MSG_DONTWAIT:
                raise err(errno.EAGAIN)
            call.sender = sock
            self.park(target, target.writers, call, timeout)   # until the receiver reads
            return
        self.unix_deliver(sock, target, call)

    @staticmethod
    def _queue_full(target: Sock, n: int) -> bool:
        """No room for an n-byte datagram (an empty queue takes one whatever its size)."""
        return bool(target.rcvq) and target.rcvq_mem + n + 64 > target.rcvbuf

    def unix_deliver(self, sock: Sock, target: Sock, call: Pending) -> None:
        data = call.fields.data
        try:
            skb = self.pool.alloc(len(data))
        except NoBuffers:
            raise err(errno.ENOBUFS) from None
        skb.put(len(data))[:] = data
        passed = self.take_passed(call) if call.fds else None
        self.queue_datagram(target, skb, sock.uname, 0, passed)
        self.answer(call, len(data), sock)

    def dgram_room(self, sock: Sock) -> None:
        """A datagram was read: senders waiting for room in ``sock``'s queue retry."""
        while sock.family == ksock.AF_UNIX and sock.writers:
            call = sock.writers[0]
            if call.done:
                sock.writers.popleft()
                continue
            sender = call.sender
            if self._queue_full(sock, len(call.fields.data)):
                return
            sock.writers.popleft()
            if sender is None or sender.id not in self.socks:
                self.fail(call, errno.EBADF, "Bad file descriptor")
                continue
            try:
                self.unix_deliver(sender, sock, call)
            except OSError as exc:
                self.fail(call, exc.errno or errno.EIO, exc.strerror or str(exc), sender)

    # -- passing sockets (SCM_RIGHTS) ---------------------------------------------------
    def take_passed(self, call: Pending) -> list:
        """The sockets a sendmsg passes: each holds a reference while in flight."""
        socks = list(call.fds or [])[:MAX_PASSED]
        for s in socks:
            s.refs += 1
        call.fds = None
        return socks

    def deliver_passed(self, client: Client | None, passed: list | None) -> list:
        """Passed sockets reach ``client`` as new descriptors, or (no client: the
        reader took no descriptors, or the message was dropped) are released."""
        out = []
        for s in passed or []:
            if client is not None and s.id in self.socks:
                try:
                    out.append(self.give_fd(client, s))
                    continue
                except OSError:
                    pass                          # EMFILE: dropped, as the kernel does (MSG_CTRUNC)
            self.release(s)
        return out

    def unix_gc(self) -> None:
        """Free sockets that only passings in flight refer to, inside queues nobody can read
        (as Linux's unix_gc): a datagram socket sent over itself and closed, or two sockets
        each in the other's queue. A candidate is a socket whose every reference is such a
        passing; it lives if a queue of a live socket holds it, directly or through other
        candidates' queues; the rest is garbage, closed with what its queues hold."""
        if self.gc_running:
            return
        queues: dict = {}                      # socket -> the sockets in flight in its queues
        inflight: collections.Counter = collections.Counter()
        for s in self.socks.values():
            if s.family != ksock.AF_UNIX or not (s.rcvq or s.scm):
                continue
            held = [p for *_, passed in s.rcvq if passed for p in passed] + [p for _, ps in s.scm for p in ps]
            if held:
                queues[s] = held
                inflight.update(held)
        candidates = {p for p, n in inflight.items() if p.refs == n}
        if not candidates:
            return
        live, todo = set(), [p for s, held in queues.items() if s not in candidates for p in held if p in candidates]
        while todo:
            p = todo.pop()
            if p not in live:
                live.add(p)
                todo.extend(q for q in queues.get(p, ()) if q in candidates)
        garbage = candidates - live
        if not garbage:
            return
        self.gc_running = True
        try:
            self.counters["unix_gc_collected"] += len(garbage)
            for s in garbage:                  # cut the cycles; what else they carried is let go
                s.rcvq = collections.deque((skb, a, port, None) for skb, a, port, _ in s.rcvq)
                s.scm = []
                for p in queues.get(s, ()):
                    if p not in garbage:
                        self.release(p)
            for s in garbage:
                s.refs = 0
                if s.id in self.socks:
                    self.close_sock(s)
        finally:
            self.gc_running = False

    # -- after a restart ----------------------------------------------------------------
    def unix_relink(self) -> None:
        """Restored AF_UNIX sockets name their peers and passed sockets by id: link
        them, count a stream writer's queue again, and every socket's references
        (a datagram passing one was lost with its queue)."""
        refs = {sock.id: (sock.fd >= 0) + len(sock.holders) for sock in self.socks.values()}
        for sock in self.socks.values():
            for queued in sock.acceptq:
                refs[queued.id] += 1
            if sock.family != ksock.AF_UNIX:
                continue
            sock.peer = self.socks.get(sock.peer) if sock.peer else None
        for sock in self.socks.values():
            if sock.family != ksock.AF_UNIX:
                continue
            if sock.stream and sock.peer is not None and sock.peer.peer is sock:   # its queue: the peer's buffer
                sock.snd_pending = len(sock.peer.rbuf)
            sock.scm = [(off, [self.socks[i] for i in ids if i in self.socks]) for off, ids in sock.scm]
            for _, passed in sock.scm:
                for p in passed:
                    refs[p.id] += 1
        for sock in list(self.socks.values()):
            sock.refs = refs[sock.id]
            if sock.refs == 0:
                self.close_sock(sock)

    # -- closing -----------------------------------------------------------------------
    def unix_close(self, sock: Sock) -> None:
        if sock.ukey is not None and self.unix_names.get(sock.ukey) is sock:
            del self.unix_names[sock.ukey]      # a path stays in the filesystem, as on Linux
        while sock.acceptq:                      # connections never accepted are reset
            pending = sock.acceptq.popleft()
            self.close_sock(pending)
        peer, sock.peer = sock.peer, None
        if sock.stream and peer is not None and peer.peer is sock:
            peer.eof = True
            if sock.rbuf:
                peer.err = errno.ECONNRESET       # unread data: the peer hears a reset
            peer.st = "closed" if not peer.rbuf else peer.st
            peer.peer = None
            self.wake_stream(peer)
        for _, passed in sock.scm:
            self.deliver_passed(None, passed)
        sock.scm = []
        for call in list(sock.writers):
            self.fail(call, errno.EBADF if call.sender is None else errno.ECONNREFUSED, "socket closed")
        sock.writers.clear()
        sock.st = "closed"
        for other in self.socks.values():        # datagram sockets connected to it
            if other.peer is sock and not other.stream:
                other.peer = None
                other.err = errno.ECONNREFUSED
                self.notify(other)
