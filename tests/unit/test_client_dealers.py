"""The client library's DEALERs, one per calling thread, against a stand-in socket server.

A server that starts a thread per connection made a new DEALER, and so a new
ZeroMQ connection and a new call record in the socket server, for every
connection. A thread that ends now leaves its DEALER to the next new thread,
unless a send it posted has not been answered for: that one is closed with
linger, as before, so the post still arrives.
"""

import threading

import pytest

from shared.client import mksocket
from shared.ipc.messages import SYS_GETSOCKNAME, SYS_HELLO, SYS_SENDTO_NOWAIT
from tests.unit.standin_server import StandInServer

CID = b"d00d"


class Server(StandInServer):
    """Issues CID and answers every call at once; ``seen`` lists (DEALER identity,
    code) of every request, posts included, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, int]] = []
        super().__init__(CID)

    def on_request(self, ident: bytes, request: list) -> None:
        code, req, *_ = request
        if ident.endswith(b".ev"):
            if code == SYS_HELLO:
                self.reply(ident, req, {"pid": 1})
            return
        self.seen.append((ident, code))
        if code != SYS_SENDTO_NOWAIT:
            self.reply(ident, req, ["0.0.0.0", 0])

    def idents(self, code: int) -> list[bytes]:
        return [i for i, c in self.seen if c == code]


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def in_thread(fn) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join(5)
    assert not t.is_alive()


def test_threads_one_after_another_share_one_dealer(server):
    conn = mksocket._Connection(server.endpoint)
    conn.call(SYS_GETSOCKNAME, 3)                       # the main thread keeps its own
    for _ in range(20):
        in_thread(lambda: conn.call(SYS_GETSOCKNAME, 3))
    idents = server.idents(SYS_GETSOCKNAME)
    assert len(idents) == 21
    assert len(set(idents)) == 2                        # not one per thread
    assert len(set(idents[1:])) == 1 and idents[0] not in idents[1:]


def test_threads_alive_at_once_never_share_a_dealer(server):
    conn = mksocket._Connection(server.endpoint)
    in_thread(lambda: conn.call(SYS_GETSOCKNAME, 3))    # leaves a DEALER in the pool
    go = threading.Barrier(4)

    def worker() -> None:
        go.wait()
        conn.call(SYS_GETSOCKNAME, 3)
        go.wait()                                       # all four alive until all four called
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(set(server.idents(SYS_GETSOCKNAME)[1:])) == 4


def test_a_dealer_with_an_unanswered_post_is_not_reused(server):
    conn = mksocket._Connection(server.endpoint)
    in_thread(lambda: conn.post(SYS_SENDTO_NOWAIT, 3, b"x"))
    in_thread(lambda: conn.call(SYS_GETSOCKNAME, 3))
    posted, = server.idents(SYS_SENDTO_NOWAIT)          # the post arrived
    called, = server.idents(SYS_GETSOCKNAME)
    assert posted != called                             # ...on a DEALER nobody took over

    def post_then_call() -> None:
        conn.post(SYS_SENDTO_NOWAIT, 3, b"y")
        conn.call(SYS_GETSOCKNAME, 3)                   # answered: the post is known to have arrived
    in_thread(post_then_call)
    in_thread(lambda: conn.call(SYS_GETSOCKNAME, 3))
    calls = server.idents(SYS_GETSOCKNAME)
    assert calls[2] == calls[1]                         # that one is reused


def test_close_stops_the_events_thread_and_every_dealer(server):
    conn = mksocket._Connection(server.endpoint)
    conn.call(SYS_GETSOCKNAME, 3)
    in_thread(lambda: conn.call(SYS_GETSOCKNAME, 3))   # a pooled DEALER too
    assert conn.events_thread.is_alive() and conn.idle
    conn.close()
    assert not conn.events_thread.is_alive()
    assert conn.ctx.closed and all(s.closed for s in conn.sockets)
    conn.close()                                        # twice: nothing more to do
