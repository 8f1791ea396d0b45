import errno

from shared.proto.tcp.tcb import State, Tcb, TcpConfig
from shared.wire.tcp import ACK, RST, SYN

from .helpers import IRS, ISS, PLAIN, seg, take


def test_syn_carries_our_options():
    t = Tcb.connect(TcpConfig(), ISS, now=5.0, ts_offset=7)
    [s] = take(t)
    assert (s.seq, s.flags) == (ISS, SYN)
    assert s.opts.mss == 1460 and s.opts.wscale == 7 and s.opts.sack_ok and s.opts.ts == (5007, 0)


def test_synack_establishes_and_negotiates():
    t = Tcb.connect(TcpConfig(), ISS, now=0)
    take(t)
    t.receive(seg(IRS, ISS + 1, SYN | ACK, 1000, mss=1200, wscale=3, sack_ok=True, ts=(99, 0)), now=0.05)
    assert t.state is State.ESTABLISHED
    [a] = take(t)
    assert (a.seq, a.ack, a.flags) == (ISS + 1, IRS + 1, ACK) and a.opts.ts[1] == 99
    assert t.snd_mss == 1200 and t.snd_wscale == 3 and t.sack_ok and t.ts_ok


def test_peer_without_options_gets_none():
    t = Tcb.connect(TcpConfig(), ISS, now=0)
    take(t)
    t.receive(seg(IRS, ISS + 1, SYN | ACK, 1000), now=0.05)
    assert t.snd_mss == 536 and t.snd_wscale == 0 and t.rcv_wscale == 0 and not t.sack_ok and not t.ts_ok


def test_unacceptable_ack_is_answered_with_rst():
    t = Tcb.connect(PLAIN, ISS, now=0)
    take(t)
    t.receive(seg(IRS, ISS + 50, SYN | ACK), now=0.01)
    assert [(s.seq, s.flags) for s in take(t)] == [(ISS + 50, RST)]
    assert t.state is State.SYN_SENT


def test_rst_with_good_ack_refuses_rst_without_ack_is_ignored():
    t = Tcb.connect(PLAIN, ISS, now=0)
    t.receive(seg(0, ISS + 1, RST), now=0.01)           # no ACK bit: ignored
    assert t.state is State.SYN_SENT
    t.receive(seg(0, ISS + 1, RST | ACK), now=0.01)
    assert t.state is State.CLOSED and t.error == errno.ECONNREFUSED


def test_simultaneous_open():
    t = Tcb.connect(PLAIN, ISS, now=0)
    take(t)
    t.receive(seg(IRS, 0, SYN), now=0.01)
    assert t.state is State.SYN_RCVD
    [s] = take(t)
    assert (s.seq, s.ack, s.flags) == (ISS, IRS + 1, SYN | ACK)
    t.receive(seg(IRS + 1, ISS + 1, ACK), now=0.02)
    assert t.state is State.ESTABLISHED


def test_syn_is_retransmitted_with_backoff_then_times_out():
    t = Tcb.connect(TcpConfig(syn_retries=3), ISS, now=0)
    take(t)
    times = []
    now = 0.0
    while t.state is State.SYN_SENT:
        now = t.poll_at()
        t.poll(now)
        if t.output:
            times.append(round(now, 3))
            assert take(t)[0].flags == SYN
    assert times == [1.0, 3.0, 7.0]
    assert t.error == errno.ETIMEDOUT and now == 15.0
