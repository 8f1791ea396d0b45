"""Waiting on ZeroMQ sockets and file descriptors together, with few system calls.

A ZeroMQ socket's ZMQ_FD only signals that the socket's state may have changed,
and any call on the socket can consume that signal (a send reads the socket's
mailbox too): only ZMQ_EVENTS tells whether a message is waiting. zmq_poll
therefore asks every socket before and after every wait, and each asking is two
system calls (getpid, for libzmq's fork check, and a poll of the mailbox): ~20
per loop turn in a service with four sockets, where one message needs ~4.

Here a socket is asked before a wait only if something may have consumed its
signal since it was last asked: it was *touched* (its handler ran) or it is
*shared* (code other than its handler uses it). Every other socket is asked
only when its descriptor fires, in one epoll_wait over everything.
"""

from __future__ import annotations

import select

import zmq

from shared.ipc.zflags import EVENTS, POLLIN


class Readiness:
    def __init__(self) -> None:
        self._ep = select.epoll()
        self._by_fd: dict[int, zmq.Socket | int] = {}
        self._shared: list[zmq.Socket] = []
        self._lenient: set[zmq.Socket] = set()
        self.touched: set[zmq.Socket] = set()    # sockets to ask before the next wait

    def add_socket(self, sock: zmq.Socket, shared: bool = False, lenient: bool = False) -> None:
        """Watch ``sock`` for input. ``lenient``: its handler copes with finding nothing,
        so a firing descriptor is reported without asking the socket first."""
        fd = sock.get(zmq.FD)
        self._ep.register(fd, select.EPOLLIN)
        self._by_fd[fd] = sock
        self.touched.add(sock)           # it may hold messages already
        if shared:
            self._shared.append(sock)
        if lenient:
            self._lenient.add(sock)

    def add_fd(self, fd: int) -> None:
        self._ep.register(fd, select.EPOLLIN)
        self._by_fd[fd] = fd

    def remove_fd(self, fd: int) -> None:
        if self._by_fd.pop(fd, None) is not None:
            try:
                self._ep.unregister(fd)
            except OSError:               # closed already: epoll dropped it with the file
                pass

    def settled(self, sock: zmq.Socket) -> None:
        """``sock`` was just found empty by a call on it: nothing to ask before the wait."""
        self.touched.discard(sock)

    def wait(self, timeout: float) -> list:
        """The readable sockets and descriptors (any event, for a descriptor), waiting up
        to ``timeout`` seconds if none is readable at once."""
        touched = self.touched
        touched.update(self._shared)
        ready = [s for s in touched if s.get(EVENTS) & POLLIN]
        touched.clear()
        by_fd, lenient = self._by_fd, self._lenient
        for fd, _ in self._ep.poll(0.0 if ready else max(0.0, timeout)):
            what = by_fd.get(fd)
            if what is None or what in ready:
                continue
            if type(what) is int or what in lenient or what.get(EVENTS) & POLLIN:
                ready.append(what)
        return ready

    def sockets(self) -> list[zmq.Socket]:
        return [w for w in self._by_fd.values() if type(w) is not int]

    def close(self) -> None:
        self._ep.close()
