from shared.proto.tcp.tcb import reset_for
from shared.wire.tcp import ACK, RST, SYN

from .helpers import seg


def test_segment_with_ack_gets_rst_at_its_ack():
    r = reset_for(seg(100, 777, ACK, data=b"x"))
    assert (r.seq, r.flags) == (777, RST)


def test_segment_without_ack_gets_rst_ack_covering_it():
    r = reset_for(seg(100, 0, SYN))
    assert (r.seq, r.ack, r.flags) == (0, 101, RST | ACK)
    r = reset_for(seg(100, 0, 0, data=b"abc"))
    assert r.ack == 103


def test_rst_is_never_answered():
    assert reset_for(seg(1, 2, RST | ACK)) is None
