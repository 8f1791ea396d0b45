import errno

from shared.proto.tcp.tcb import State, Tcb, TcpConfig
from shared.wire.tcp import ACK, RST, SYN

from .helpers import IRS, ISS, PLAIN, seg, take


def test_synack_offers_only_what_the_syn_offered():
    t = Tcb.accept(TcpConfig(), ISS, seg(IRS, 0, SYN, 64240, mss=1460, sack_ok=True), now=0)
    [s] = take(t)
    assert (s.seq, s.ack, s.flags) == (ISS, IRS + 1, SYN | ACK)
    assert s.opts.sack_ok and s.opts.wscale is None and s.opts.ts is None
    full = Tcb.accept(TcpConfig(), ISS, seg(IRS, 0, SYN, mss=1460, sack_ok=True, wscale=7, ts=(1, 0)), now=0)
    [s] = take(full)
    assert s.opts.wscale == 7 and s.opts.ts[1] == 1


def test_ack_establishes():
    t = Tcb.accept(PLAIN, ISS, seg(IRS, 0, SYN, mss=1000), now=0)
    take(t)
    t.receive(seg(IRS + 1, ISS + 1, ACK, 4000), now=0.01)
    assert t.state is State.ESTABLISHED and t.snd_wnd == 4000 and t.snd_mss == 1000


def test_bad_ack_gets_rst_and_lost_synack_is_resent():
    t = Tcb.accept(PLAIN, ISS, seg(IRS, 0, SYN), now=0)
    take(t)
    t.receive(seg(IRS + 1, ISS + 9, ACK), now=0.01)
    assert [(s.seq, s.flags) for s in take(t)] == [(ISS + 9, RST)]
    t.receive(seg(IRS, 0, SYN), now=0.02)           # the peer retransmits its SYN
    assert take(t)[0].flags == SYN | ACK
    t.poll(t.poll_at())                             # and our timer resends it too
    assert take(t)[0].flags == SYN | ACK


def test_rst_returns_passive_open_to_listen_silently():
    t = Tcb.accept(PLAIN, ISS, seg(IRS, 0, SYN), now=0)
    t.receive(seg(IRS + 1, 0, RST), now=0.01)
    assert t.state is State.CLOSED and t.error is None


def test_rst_after_simultaneous_open_refuses():
    t = Tcb.connect(PLAIN, ISS, now=0)
    t.receive(seg(IRS, 0, SYN), now=0.01)
    t.receive(seg(IRS + 1, 0, RST), now=0.02)
    assert t.error == errno.ECONNREFUSED
