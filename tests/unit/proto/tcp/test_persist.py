"""A Tcb saved mid-connection and restored is the same connection: it carries on."""

import pytest

from shared.proto.tcp import persist
from shared.proto.tcp.tcb import State, TcpConfig
from tests.unit.proto.tcp.helpers import IRS, ISS, established, seg, take

CFG = TcpConfig(sack=True, timestamps=False, cc="cubic")


def roundtrip(t, cfg=CFG):
    rec = persist.snapshot(t)
    sndq = bytes(t.sndq)
    ooo = dict(t.ooo)
    return persist.restore(cfg, rec, sndq, ooo)


def test_every_field_survives_and_the_restored_tcb_retransmits_the_same_bytes():
    t = established(CFG, sack_ok=True)
    t.send(b"a" * 3000 + b"b" * 3000, now=0.1)
    sent = take(t)
    t.receive(seg(IRS + 1, ISS + 1 + 1460, data=b"x" * 100), now=0.2)          # partial ack + data
    t.receive(seg(IRS + 1 + 300, ISS + 1 + 1460, data=b"y" * 50), now=0.21)   # out of order
    take(t)
    r = roundtrip(t)
    assert r.state is State.ESTABLISHED
    for k in persist.FIELDS:
        assert getattr(r, k) == getattr(t, k), k
    assert (r.rtt.srtt, r.rtt.rto, r.cc.cwnd, r.cc.ssthresh) == (t.rtt.srtt, t.rtt.rto, t.cc.cwnd, t.cc.ssthresh)
    assert r.sndq == t.sndq and r.ooo == t.ooo and r.sacked == t.sacked
    # the retransmission timer fires in the restored one as in the original
    at = t.poll_at()
    assert r.poll_at() == at
    t.poll(at + 0.001)
    r.poll(at + 0.001)
    a, b = take(t), take(r)
    assert [(s.seq, s.data) for s in a] == [(s.seq, s.data) for s in b]
    stream = b"a" * 3000 + b"b" * 3000
    assert a and a[0].seq == ISS + 1 + 1460                      # from the first unacknowledged byte
    assert a[0].data == stream[1460:1460 + len(a[0].data)] and a[0].data
    assert sent[0].seq == ISS + 1


def test_restored_receiver_fills_the_gap_and_delivers_in_order():
    t = established(CFG, sack_ok=True)
    t.receive(seg(IRS + 1 + 10, ISS + 1, data=b"later"), now=0.1)
    r = roundtrip(t)
    r.receive(seg(IRS + 1, ISS + 1, data=b"0123456789"), now=0.2)
    assert bytes(r.delivered) == b"0123456789later"
    assert r.rcv_total == t.rcv_total + 15


def test_snapshot_refuses_what_is_not_one():
    t = established(CFG)
    rec = persist.snapshot(t)
    with pytest.raises(ValueError):
        persist.restore(CFG, rec[:5], b"", {})
    with pytest.raises(ValueError):
        persist.restore(CFG, rec, b"extra bytes", {})         # the queue does not match its length
    bad = list(rec)
    bad[0] = 99
    with pytest.raises(ValueError):
        persist.restore(CFG, bad, b"", {})


def test_out_of_order_blocks_named_in_the_record_are_capped():
    t = established(CFG, sack_ok=True)
    for i in range(10):
        t.receive(seg(IRS + 1 + 100 * (i + 1), ISS + 1, data=b"z" * 10), now=0.1)
    assert len(persist.snapshot(t, max_ooo=4)[7]) == 4
    assert len(persist.snapshot(t)[7]) == 10
