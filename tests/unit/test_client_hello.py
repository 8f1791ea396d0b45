"""The client library's first calls, against a stand-in socket server that loses some.

A process's SYS_HELLOs (its calling thread's and its event channel's) go out
before the socket server can tell it of a restart, so one lost with a server
killed meanwhile must be asked again: a soak found a new program waiting for
its first socket() forever that way.
"""

import threading

import pytest

from shared.client import mksocket
from shared.ipc.messages import SYS_HELLO
from tests.unit.standin_server import StandInServer

CID = b"c0ffee"


class LossyServer(StandInServer):
    """Issues CID; on the syscall ROUTER, drops the first ``lose`` SYS_HELLOs of each
    caller (as a server killed before reading them would) and answers the rest; the
    event channel's hellos are counted in ``events``."""

    def __init__(self, lose: int) -> None:
        self.lose, self.seen, self.events = lose, {}, 0
        super().__init__(CID)

    def on_request(self, ident: bytes, request: list) -> None:
        code, req, pid, events = request
        assert code == SYS_HELLO
        self.seen[ident] = self.seen.get(ident, 0) + 1
        if self.seen[ident] <= self.lose:
            return
        self.events += bool(events)
        self.reply(ident, req, {"pid": 1})


@pytest.fixture
def lossy():
    servers = []

    def make(lose: int) -> LossyServer:
        servers.append(LossyServer(lose))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def connect_within(endpoint: str, seconds: float) -> "mksocket._Connection | None":
    got: list = []
    t = threading.Thread(target=lambda: got.append(mksocket._Connection(endpoint)), daemon=True)
    t.start()
    t.join(seconds)
    return got[0] if got else None


def test_hellos_lost_with_a_dying_server_are_asked_again(lossy):
    server = lossy(lose=2)
    conn = connect_within(server.endpoint, 5.0)
    assert conn is not None, "the first hello was waited for forever"
    assert conn.cid == CID
    assert conn.events_ready.is_set() and server.events >= 1    # the event channel got through too
    assert all(n == 3 for n in server.seen.values())            # asked again until answered, no more


def test_a_server_that_never_answers_is_an_error_not_a_hang(lossy, monkeypatch):
    monkeypatch.setattr(mksocket, "HELLO_WAIT_S", 0.6)
    server = lossy(lose=1_000_000)
    failed: list = []

    def connect() -> None:
        try:
            mksocket._Connection(server.endpoint)
        except OSError as exc:
            failed.append(exc)
    t = threading.Thread(target=connect, daemon=True)
    t.start()
    t.join(5.0)
    assert failed and "did not answer" in str(failed[0])
