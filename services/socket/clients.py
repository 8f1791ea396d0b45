"""Who the socket layer's clients are, and their descriptor tables.

A client is a process, known by the id the hello socket gave it (its pid and
start time from the kernel, never from what it says). Its descriptors name
sockets as a process's fds name files: the lowest free number, bounded by its
RLIMIT_NOFILE, shared after dup or SCM_RIGHTS, the socket closed with the
last one. A process that exits has its descriptors closed.
"""

from __future__ import annotations

import errno
import os

from services.socket.types import Client, Sock, nofile_limit
from shared import procfs

NOFILE_NEAR = 16                  # this close to it, a new descriptor reads the limit and /proc again


class ClientTable:
    """Mixed into SocketCore."""

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
        self.state.touch_client(c)
        self.counters["clients_gone"] += 1

    def sock_of(self, client: Client, fd: int) -> Sock:
        s = client.fds.get(fd)
        if s is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return s

    def new_fd(self, client: Client) -> int:
        """The lowest free descriptor number, as the kernel allocates them; EMFILE when the
        process's descriptors, its mkstack sockets and its own kernel ones, would pass its
        RLIMIT_NOFILE (both read again only near it)."""
        if len(client.fds) + client.own_fds >= client.nofile - NOFILE_NEAR:
            client.nofile = nofile_limit(client.pid)        # it may have raised its limit
            client.own_fds = procfs.program_fds(client.pid)
            if len(client.fds) + client.own_fds >= client.nofile:
                raise OSError(errno.EMFILE, "Too many open files")
        fd = client.fd_hint
        while fd in client.fds:
            fd += 1
        client.fd_hint = fd + 1
        return fd

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

    def owned(self, sock: Sock, uid: int) -> None:
        """``sock`` is ``uid``'s from now until it is closed (as sk_uid: its maker's)."""
        sock.uid = uid
        self.users.take("sockets", uid)
