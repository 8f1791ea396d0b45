"""tcp's saved connections: the record and the out-of-order data in the RX ring,
read back by the next incarnation."""

import os

import pytest

from services.tcp_conn import Conn
from services.tcp_store import TcpStore
from shared.wire.tcp import ACK
from tests.unit.proto.tcp.helpers import IRS, ISS, PLAIN, established, seg

INSTANCE = f"unittcp{os.getpid()}"
R, L = IRS + 1, ISS + 1


@pytest.fixture
def state():
    st = TcpStore(INSTANCE, 1 << 16, 1 << 16)
    yield st
    st.dir.destroy()


def test_out_of_order_data_grown_from_the_same_sequence_is_saved_whole(state):
    c = Conn(5, established(PLAIN), 1, 2, 3, 4)
    c.tcb.receive(seg(R + 1000, L, ACK, data=b"a" * 500), now=1)
    state.save(c, None)
    state.write_turn()
    # the peer sends the same range again, coalesced with what followed (GRO does this)
    c.tcb.receive(seg(R + 1000, L, ACK, data=b"a" * 500 + b"b" * 700), now=1)
    state.save(c, None)
    state.write_turn()
    [(head, t)], bad = TcpStore(INSTANCE, 1 << 16, 1 << 16).load_conns(PLAIN)
    assert bad == 0 and t.ooo == {R + 1000: b"a" * 500 + b"b" * 700}


def test_out_of_order_blocks_grown_and_merged_come_back_whole(state):
    c = Conn(6, established(PLAIN), 1, 2, 3, 4)
    saves = [(R + 100, b"c" * 300), (R + 400, b"d" * 200),       # grows the block at R + 100
             (R + 900, b"f" * 100), (R + 600, b"e" * 300)]       # a second block, then the bridge
    for sq, data in saves:
        c.tcb.receive(seg(sq, L, ACK, data=data), now=1)
        state.save(c, None)
        state.write_turn()
    assert list(c.tcb.ooo) == [R + 100]
    [(head, t)], bad = TcpStore(INSTANCE, 1 << 16, 1 << 16).load_conns(PLAIN)
    assert bad == 0 and t.ooo == {R + 100: b"c" * 300 + b"d" * 200 + b"e" * 300 + b"f" * 100}


def test_data_to_deliver_again_is_only_what_the_ring_has(state):
    """A resync in the middle of a turn: this turn's data is not in the ring yet (it
    goes out at the end of the turn) and must not be read from there."""
    c = Conn(6, established(PLAIN), 1, 2, 3, 4)
    c.tcb.receive(seg(R, L, ACK, data=b"A" * 100), now=1)
    state.rx_delivered(c, c.tcb.delivered)          # what the end of the turn does
    c.tcb.delivered.clear()
    c.tcb.receive(seg(R + 100, L, ACK, data=b"B" * 50), now=1)
    assert state.undelivered(c) == b"A" * 100
    c.consumed = 40
    assert state.undelivered(c) == b"A" * 60
