"""Small TCP sends posted without waiting (SYS_SEND_POST), against a stand-in socket server.

A post is kept by the library until a later call on the same DEALER is answered; that
call goes fenced with the last post, and a server that did not apply every post up to
it answers SYS_REPLAY with the last one it applied. The library then sends the missing
ones again as calls, in order, and only then the call: the server never sees a call
(a close, say) before the data its thread sent first, and never a byte twice.
"""

import threading
import time

import msgpack
import pytest

from shared.client import mksocket
from shared.ipc.messages import (EV_RESTART, SYS_GETSOCKNAME, SYS_HELLO, SYS_POSTS_PENDING, SYS_REPLAY,
                                 SYS_SEND_POST, SYS_SENDTO)
from tests.unit.standin_server import StandInServer

CID = b"beef"
FD = 3


class Server(StandInServer):
    """Applies posts in order, as the socket server does (after the caller's previous
    one), dropping those in ``lose`` (by their index among posts); ``stream`` is every
    byte applied, posts and send calls alike; ``log`` the requests in arrival order."""

    def __init__(self) -> None:
        self.stream = bytearray()
        self.applied: dict[bytes, int] = {}
        self.lose: set[int] = set()
        self.posts = 0
        self.log: list[tuple[int, object]] = []
        self.notice_on_loss = False
        super().__init__(CID)

    def on_request(self, ident: bytes, request: list) -> None:
        code, req, *args = request
        if ident.endswith(b".ev"):
            if code == SYS_HELLO:
                self.reply(ident, req, {"pid": 1})
            return
        self.log.append((code, self.fence))
        if code == SYS_SEND_POST:
            fd, data, flags, prev = args
            n, self.posts = self.posts, self.posts + 1
            if n not in self.lose and prev in (0, self.applied.get(ident, 0)):
                self.stream += data
                self.applied[ident] = req
            elif self.notice_on_loss:        # as a restarted server tells its clients
                self.router.send_multipart([CID + b".ev", msgpack.packb([EV_RESTART, 4242])])
            return
        own, others = self.fence if isinstance(self.fence, list) else (self.fence, [])
        if own is not None and self.applied.get(ident, 0) < own:
            self.router.send_multipart([ident, msgpack.packb([req, SYS_REPLAY, self.applied.get(ident, 0), None])])
            return
        if any(self.applied.get(other, 0) < last for other, last in others):
            self.router.send_multipart([ident, msgpack.packb([req, SYS_POSTS_PENDING, 0, None])])
            return
        if code == SYS_SENDTO:
            self.stream += args[1]
            self.reply(ident, req, len(args[1]))
            return
        self.reply(ident, req, ["0.0.0.0", 0])


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_posts_are_confirmed_by_the_next_call(server):
    conn = mksocket._Connection(server.endpoint)
    for chunk in (b"ab", b"cd", b"ef"):
        assert conn.post_send(FD, chunk, 0)
    conn.call(SYS_GETSOCKNAME, FD)
    assert bytes(server.stream) == b"abcdef"
    assert server.log[-1][0] == SYS_GETSOCKNAME and server.log[-1][1] is not None      # fenced
    assert conn.local.lease.unconfirmed == []
    conn.call(SYS_GETSOCKNAME, FD)
    assert server.log[-1] == (SYS_GETSOCKNAME, None)    # nothing left to fence


def test_a_missing_post_is_sent_again_before_the_call_and_nothing_twice(server):
    """The second of three posts is lost (as in a socket server killed with it queued); the
    third then is out of order and dropped. The fenced call brings both back, as calls."""
    server.lose = {1}
    conn = mksocket._Connection(server.endpoint)
    for chunk in (b"ab", b"cd", b"ef"):
        assert conn.post_send(FD, chunk, 0)
    conn.call(SYS_GETSOCKNAME, FD)
    assert bytes(server.stream) == b"abcdef"
    codes = [c for c, _ in server.log if c != SYS_HELLO]
    assert codes == [SYS_SEND_POST] * 3 + [SYS_GETSOCKNAME, SYS_SENDTO, SYS_SENDTO, SYS_GETSOCKNAME]
    assert conn.local.lease.unconfirmed == []


def test_a_thread_that_ends_leaves_its_posts_to_the_next_one(server):
    """Its DEALER goes back to the pool with the posts not yet confirmed (closing it could
    lose them to a restart); the next thread's first call fences them."""
    server.lose = {0}
    conn = mksocket._Connection(server.endpoint)
    conn.call(SYS_GETSOCKNAME, FD)

    def poster() -> None:
        assert conn.post_send(FD, b"xy", 0)
    t = threading.Thread(target=poster)
    t.start()
    t.join(5)
    t = threading.Thread(target=lambda: conn.call(SYS_GETSOCKNAME, FD))
    t.start()
    t.join(5)
    assert not t.is_alive() and bytes(server.stream) == b"xy"


def test_a_restart_brings_back_the_posts_of_a_thread_that_makes_no_call(server):
    """A thread that posted and then waits on something else (a queue, a kernel select)
    would hold a post lost with the old server until its next call: on the restart
    notice the library makes a fenced call on its DEALER for it."""
    server.lose, server.notice_on_loss = {0}, True
    conn = mksocket._Connection(server.endpoint)
    idle = threading.Event()

    def poster() -> None:
        assert conn.post_send(FD, b"xy", 0)
        idle.wait(10)                    # alive, and no call
    t = threading.Thread(target=poster)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while bytes(server.stream) != b"xy" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bytes(server.stream) == b"xy"
        codes = [c for c, _ in server.log]
        assert codes[codes.index(SYS_SEND_POST):] == [SYS_SEND_POST, SYS_HELLO, SYS_SENDTO, SYS_HELLO]
    finally:
        idle.set()
        t.join(5)


def test_posts_stop_at_the_window(server):
    """Past POST_WINDOW bytes (or POST_COUNT posts) not yet confirmed, a send is a call."""
    conn = mksocket._Connection(server.endpoint)
    chunk = bytes(mksocket.POST_MAX)
    n = 0
    while conn.post_send(FD, chunk, 0):
        n += 1
    assert n == mksocket.POST_WINDOW // mksocket.POST_MAX
    conn.call(SYS_GETSOCKNAME, FD)             # answered after the posts: all applied, confirmed
    assert len(server.stream) == n * len(chunk) and conn.post_send(FD, chunk, 0)
    conn.call(SYS_GETSOCKNAME, FD)             # none left unconfirmed at exit


def test_exit_waits_for_posts_a_bounded_time(server):
    """At exit the main thread's last posts are made sure of, but a socket server that does
    not answer (gone, or restarting slowly) holds the exit for EXIT_FLUSH_MS at most."""
    server.lose = {0}
    conn = mksocket._Connection(server.endpoint)
    assert conn.post_send(FD, b"late", 0)
    server.close()
    t0 = time.monotonic()
    conn._flush_posts()
    assert time.monotonic() - t0 < mksocket.EXIT_FLUSH_MS / 1000 + 0.5


def test_a_call_on_a_socket_waits_for_another_threads_posts_on_it(server):
    """Each thread's posts travel on its own DEALER, and another thread's call may overtake
    them (a thread sends, then another shuts the socket down, as the kernel orders). The call
    is fenced by them too; here the poster's first post was lost and the poster waits on
    something else: the caller has the poster's DEALER replay it, then its own call goes. And
    while the poster's posts are unconfirmed, other threads' sends on that socket are calls."""
    server.lose = {0}
    conn = mksocket._Connection(server.endpoint)
    conn.call(SYS_GETSOCKNAME, FD)
    posted, idle = threading.Event(), threading.Event()

    def poster() -> None:
        assert conn.post_send(FD, b"ab", 0) and conn.post_send(FD, b"cd", 0)
        posted.set()
        idle.wait(10)                    # alive, and no call
    t = threading.Thread(target=poster)
    t.start()
    try:
        assert posted.wait(5)
        assert not conn.post_send(FD, b"no", 0)       # another thread's posts on FD come first
        conn.call(SYS_GETSOCKNAME, FD)
        assert bytes(server.stream) == b"abcd"
        codes = [c for c, _ in server.log if c != SYS_HELLO]
        # the main thread's call waited (answered SYS_POSTS_PENDING), the poster's DEALER replayed
        # both posts as calls, and then the call went through
        # (the call may overtake the posts themselves, and be asked again meanwhile)
        assert codes.count(SYS_SEND_POST) == 2 and codes[-3:] == [SYS_SENDTO, SYS_SENDTO, SYS_GETSOCKNAME]
        assert conn.fd_posts == {}                    # all confirmed: the main thread may post on FD now
        assert conn.post_send(FD, b"ef", 0)
        conn.call(SYS_GETSOCKNAME, FD)
        assert bytes(server.stream) == b"abcdef"
    finally:
        idle.set()
        t.join(5)


def test_a_lost_post_is_not_replayed_on_a_socket_that_took_its_number(server):
    """Posts name the fd and the socket: if the socket was closed and its number went to a
    new socket before a lost post is replayed, the bytes are dropped (as a send on a closed
    socket), never sent on the new connection."""
    from types import SimpleNamespace
    server.lose = {0}
    conn = mksocket._Connection(server.endpoint)
    assert conn.post_send(FD, b"old", 0, 7) and conn.post_send(FD, b"gone", 0, 7)
    conn.notifiers[FD] = SimpleNamespace(sock_id=8)      # FD is another socket's now
    conn.call(SYS_GETSOCKNAME, FD)
    assert bytes(server.stream) == b"" and SYS_SENDTO not in [c for c, _ in server.log]
    assert conn.local.lease.unconfirmed == [] and conn.fd_posts == {}
