"""The socket server's saved table: reserved ids, unanswered tcp requests and the
ring of recently closed connection ids, read back by the next incarnation."""

import os
from types import SimpleNamespace

import pytest

from services.socket.records import CLIENT_SLOT, GONE_KEPT, ID_BLOCK, PENDING, REPLIED, TABLE, SocketState


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
    state.dir.write_turn()
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
    state.dir.write_turn()
    again = SocketState(INSTANCE, 4096, 4096)
    *_, gone = again.load()
    assert gone == [c << 40 for c in range(n - GONE_KEPT + 1, n + 1)]


def test_unreadable_records_are_dropped_not_taken_up(state):
    state.dir.file("s9").put(["not", "a", "socket"])
    state.dir.file("k" + b"x".hex(), slot=CLIENT_SLOT, rings=()).mm[:64] = os.urandom(64)
    _, clients, socks, _ = state.load()
    assert clients == [] and socks == []
    assert "s9" not in state.dir.keys()


class _Client(SimpleNamespace):
    __hash__ = object.__hash__


def _server(cid):
    client = _Client(cid=cid, pid=42, start=7, events=cid + b".ev", calls={}, posts={})
    return client, SimpleNamespace(clients={cid: client}, socks={}, sock_ids_next=1, reqs_next=1, tcp_reqs={},
                                   lingering={})


def _call(ident, req, done):
    return SimpleNamespace(ident=ident, req=req, code=9, fields=[req, 3], done=done, rx=None,
                           reply=b"frame" if done else None)


def test_each_thread_keeps_its_own_last_call_and_a_forgotten_one_is_removed(state):
    cid = b"c" * 16
    client, ss = _server(cid)
    state.touch_client(client)
    for t in range(3):
        call = _call(cid + b".%d" % t, 100 + t, done=t == 0)
        client.calls[call.ident] = call
        state.touch_call(client, call)
    state.commit(ss)
    files = len(state.dir.keys())
    # the next call of thread 0 rewrites its record alone; thread 2 is forgotten
    call = _call(cid + b".0", 200, done=False)
    client.calls[call.ident] = call
    state.touch_call(client, call)
    del client.calls[cid + b".2"]
    state.forget_call(client, cid + b".2")
    state.commit(ss)
    assert len(state.dir.keys()) == files - 1
    _, clients, _, _ = SocketState(INSTANCE, 4096, 4096).load()
    assert [tuple(c[:4]) for c in clients] == [(cid, 42, 7, cid + b".ev")]
    assert sorted((e.ident, e.req, e.how, e.payload) for e in clients[0].calls) == [
        (cid + b".0", 200, PENDING, None), (cid + b".1", 101, PENDING, None)]
    assert state.dir.file("t" + (cid + b".0").hex()).get()[1] == 200
    # the client goes: its record and every thread's with it
    del ss.clients[cid]
    state.touch_client(client)
    state.commit(ss)
    _, clients, _, _ = SocketState(INSTANCE, 4096, 4096).load()
    assert clients == [] and not [k for k in state.dir.keys() if k[0] in "kt" and k != TABLE]


def test_each_thread_keeps_its_last_post_applied_until_its_client_goes(state):
    """What a fenced call is checked against after a restart (SYS_SEND_POST): each
    thread's last post applied, saved with the turn that applied it."""
    cid = b"p" * 16
    client, ss = _server(cid)
    state.touch_client(client)
    for t, req in ((0, 10), (1, 11)):
        client.posts[cid + b".%d" % t] = req
        state.touch_post(client, cid + b".%d" % t)
    state.commit(ss)
    client.posts[cid + b".0"] = 30           # thread 0 posts again; thread 1's record goes
    state.touch_post(client, cid + b".0")
    del client.posts[cid + b".1"]
    state.touch_post(client, cid + b".1")
    state.commit(ss)
    _, clients, _, _ = SocketState(INSTANCE, 4096, 4096).load()
    assert clients[0].posts == [[cid + b".0", 30]]
    del ss.clients[cid]
    state.touch_client(client)
    state.commit(ss)
    _, clients, _, _ = SocketState(INSTANCE, 4096, 4096).load()
    assert clients == [] and not [k for k in state.dir.keys() if k[0] in "ktp" and k != TABLE]


def test_a_thread_record_whose_client_is_gone_is_dropped(state):
    cid = b"d" * 16
    client, ss = _server(cid)
    call = _call(cid + b".0", 5, done=True)
    client.calls[call.ident] = call
    state.touch_call(client, call)           # the client record itself was never saved
    state.commit(ss)
    _, clients, _, _ = state.load()
    assert clients == [] and not [k for k in state.dir.keys() if k[0] == "t" and k != TABLE]


def test_a_kept_reply_comes_back_with_its_call(state):
    cid = b"e" * 16
    client, ss = _server(cid)
    state.touch_client(client)
    call = _call(cid + b".0", 5, done=True)
    client.calls[call.ident] = call
    state.touch_call(client, call)
    state.commit(ss)
    _, clients, _, _ = SocketState(INSTANCE, 4096, 4096).load()
    assert clients[0].calls == [(cid + b".0", 5, 9, 3, REPLIED, b"frame")]


def test_records_of_another_format_are_skipped_and_counted(state):
    """A record whose fields have other types (an older or damaged format) is never
    half taken up: skipped, removed, counted; the good ones beside it load."""
    from services.socket.records import SOCK_FIELDS
    good = [b"c1", [1] * len(SOCK_FIELDS), [], 0, 0, 0, False]
    good[1][SOCK_FIELDS.index("st")] = "connected"
    good[1][SOCK_FIELDS.index("tcpopts")] = {}
    bad_type = [b"c1", list(good[1]), [], 0, 0, 0, False]
    bad_type[1][SOCK_FIELDS.index("rcvbuf")] = "212992"          # a string where a size was
    bad_holders = [b"c1", list(good[1]), [[b"c2", "3"]], 0, 0, 0, False]
    bad_unix = list(good) + ["/tmp/s", None, 0, [[0, ["x"]]]]
    for key, rec in (("s1", good), ("s2", bad_type), ("s3", bad_holders), ("s4", bad_unix)):
        state.dir.file(key).put(rec)
    state.dir.file("k" + b"c1".hex(), slot=CLIENT_SLOT, rings=()).put([b"c1", "not a pid", "123", None])
    _, clients, socks, _ = state.load()
    assert [(r.cid, list(r.fields.values()), r.holders, *r[3:7]) for r in socks] == [tuple(good)] and clients == []
    assert state.skipped == 4 and sorted(k for k in state.dir.keys() if k[0] in "sk") == ["s1"]


def test_loading_keeps_the_table_for_the_next_restart(state):
    """The table's key starts with "t" as a thread's call record does; a load took it
    for a damaged call and removed it, so a second kill before the next table write
    lost the reserved ids and tcp's unanswered requests."""
    state.save_table(SimpleNamespace(sock_ids_next=10, reqs_next=3, tcp_reqs={}))
    state.dir.write_turn()
    first = SocketState(INSTANCE, 4096, 4096).load()[0]
    assert SocketState(INSTANCE, 4096, 4096).load()[0] == first and first[0] == 10 + ID_BLOCK
