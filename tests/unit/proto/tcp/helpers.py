"""Script-like helpers for driving a Tcb: send(tcb, seg(...)), expect(tcb, [...])."""

from shared.proto.tcp.tcb import Segment, State, Tcb, TcpConfig
from shared.wire.tcp import ACK, SYN, TcpOptions

PLAIN = TcpConfig(sack=False, timestamps=False, delayed_ack=0.04, cc="reno")
ISS, IRS = 1000, 5000


def seg(seq, ack=0, flags=ACK, wnd=65535, data=b"", **opts):
    return Segment(seq, ack, flags, wnd, data, TcpOptions(**opts))


def take(tcb):
    out, tcb.output = tcb.output, []
    return out


def established(cfg=PLAIN, peer_wnd=65535, peer_mss=1460, **peer_opts):
    """An active opener after the handshake; its output emptied."""
    t = Tcb.connect(cfg, ISS, now=0.0)
    take(t)
    t.receive(seg(IRS, ISS + 1, SYN | ACK, peer_wnd, mss=peer_mss, **peer_opts), now=0.01)
    assert t.state is State.ESTABLISHED
    take(t)
    return t


def flags_of(segs):
    return [s.flags for s in segs]
