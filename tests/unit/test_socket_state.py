"""The socket server's saved table: reserved ids, unanswered tcp requests and the
ring of recently closed connection ids, read back by the next incarnation."""

import os
from types import SimpleNamespace

import pytest

from services.socket_state import GONE_KEPT, ID_BLOCK, SocketState


INSTANCE = f"unit{os.getpid()}"


@pytest.fixture
def state():
    st = SocketState(INSTANCE, sndbuf_max=4096, rcvbuf_max=4096)
    yield st
    st.dir.destroy()


def test_table_reserves_ids_ahead_and_keeps_unanswered_requests(state):
    sock = SimpleNamespace(id=7)
    ss = SimpleNamespace(sock_ids_next=10, reqs_next=3, tcp_reqs={5: (sock, None, "bind", b"\x93\x01")})
    state.save_table(ss)
    again = SocketState(INSTANCE, 4096, 4096)
    table, clients, socks, gone = again.load()
    assert table[0] == 10 + ID_BLOCK and table[1] == 3 + ID_BLOCK      # nothing below was handed out
    assert table[2] == [[5, 7, "bind", b"\x93\x01"]]
    assert (clients, socks, gone) == ([], [], [])


def test_gone_ring_keeps_the_newest_conn_ids_in_order(state):
    n = GONE_KEPT + 100
    for conn in range(1, n + 1):
        state.gone_conn(conn << 40)
    state.save_table(SimpleNamespace(sock_ids_next=1, reqs_next=1, tcp_reqs={}))
    again = SocketState(INSTANCE, 4096, 4096)
    *_, gone = again.load()
    assert gone == [c << 40 for c in range(n - GONE_KEPT + 1, n + 1)]


def test_unreadable_records_are_dropped_not_taken_up(state):
    state.dir.file("s9").put(["not", "a", "socket"])
    state.dir.file("k" + b"x".hex(), slot=1 << 18, rings=()).mm[:64] = os.urandom(64)
    _, clients, socks, _ = state.load()
    assert clients == [] and socks == []
    assert "s9" not in state.dir.keys()
