import errno

from shared.proto.tcp.tcb import State, TcpConfig
from shared.wire.tcp import ACK, FIN, RST

from .helpers import IRS, ISS, established, seg, take

R, L = IRS + 1, ISS + 1


def test_active_close_fin_wait_1_2_time_wait():
    t = established()
    t.close(now=1)
    [f] = take(t)
    assert (f.seq, f.flags) == (L, ACK | FIN) and t.state is State.FIN_WAIT_1
    t.receive(seg(R, L + 1, ACK), now=1.1)
    assert t.state is State.FIN_WAIT_2
    t.receive(seg(R, L + 1, ACK, data=b"late"), now=1.2)     # half-close: they may still send
    assert bytes(t.delivered) == b"late"
    t.receive(seg(R + 4, L + 1, ACK | FIN), now=1.3)
    assert t.state is State.TIME_WAIT and take(t)[-1].ack == R + 5
    t.receive(seg(R + 4, L + 1, ACK | FIN), now=20)          # their FIN again: ACK, 2MSL restarts
    assert take(t)[-1].ack == R + 5 and t.tw_at == 80
    t.poll(80)
    assert t.state is State.CLOSED


def test_fin_rides_on_the_last_data_segment():
    t = established()
    t.send(b"tail", now=1)
    take(t)
    t.receive(seg(R, L + 4, ACK), now=1.1)
    t.send(b"more", now=1.2)
    t.close(now=1.2)
    out = take(t)
    assert [(s.data, s.flags & FIN) for s in out] == [(b"more", 0), (b"", FIN)] or \
        [(s.data, bool(s.flags & FIN)) for s in out] == [(b"more", True)]


def test_passive_close_close_wait_last_ack():
    t = established()
    t.receive(seg(R, L, ACK | FIN), now=1)
    assert t.state is State.CLOSE_WAIT and t.eof
    take(t)
    t.send(b"reply", now=1.1)                                # still allowed in CLOSE-WAIT
    t.close(now=1.1)
    out = take(t)
    assert out[-1].flags & FIN and t.state is State.LAST_ACK
    t.receive(seg(R + 1, L + 6, ACK), now=1.2)
    assert t.state is State.CLOSED and t.error is None


def test_the_ack_of_a_fin_rides_on_the_fin_of_a_prompt_close():
    """Linux (tcp_fin) delays the ACK of the FIN that starts a passive close: a server
    that closes on EOF sends one FIN|ACK, and the close takes three segments, not four.
    Without a close the ACK goes when the delayed-ACK timer fires; in FIN-WAIT (our FIN
    sent first) it goes at once, and so it does with delayed ACKs off."""
    t = established()
    t.receive(seg(R, L, ACK | FIN), now=1)
    assert t.state is State.CLOSE_WAIT and take(t) == []
    t.close(now=1.01)
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK | FIN, R + 1)] and t.dack_at is None
    t = established()
    t.receive(seg(R, L, ACK | FIN), now=1)
    t.poll(t.poll_at())
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R + 1)]
    t = established()
    t.close(now=1)
    take(t)
    t.receive(seg(R, L, ACK | FIN), now=1.1)
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R + 1)] and t.state is State.CLOSING
    import dataclasses

    from .helpers import PLAIN
    t = established(cfg=dataclasses.replace(PLAIN, delayed_ack=0))
    t.receive(seg(R, L, ACK | FIN), now=1)
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R + 1)]


def test_simultaneous_close_closing_then_time_wait():
    t = established()
    t.close(now=1)
    take(t)
    t.receive(seg(R, L, ACK | FIN), now=1.1)                 # their FIN crosses ours
    assert t.state is State.CLOSING
    t.receive(seg(R + 1, L + 1, ACK), now=1.2)
    assert t.state is State.TIME_WAIT


def test_fin_ack_together_goes_straight_to_time_wait():
    t = established()
    t.close(now=1)
    take(t)
    t.receive(seg(R, L + 1, ACK | FIN), now=1.1)
    assert t.state is State.TIME_WAIT


def test_lost_fin_is_retransmitted():
    t = established()
    t.close(now=1)
    take(t)
    t.poll(t.poll_at())
    assert [s.flags & FIN for s in take(t)] == [FIN]


def test_out_of_order_fin_waits_for_the_data():
    t = established()
    t.receive(seg(R + 3, L, ACK | FIN), now=1)
    assert not t.eof and t.state is State.ESTABLISHED
    t.receive(seg(R, L, ACK, data=b"abc"), now=1.1)
    assert t.eof and t.state is State.CLOSE_WAIT and bytes(t.delivered) == b"abc"


def test_an_orphan_leaves_fin_wait_2_after_fin_timeout():
    """A peer that never sends its FIN cannot hold a closed socket's connection for
    ever (Linux: tcp_fin_timeout); a socket still open (shutdown only) waits."""
    t = established()
    t.close(now=1)
    t.orphan(now=1)
    take(t)
    t.receive(seg(R, L + 1, ACK), now=2)
    assert t.state is State.FIN_WAIT_2 and t.poll_at() == 2 + t.cfg.fin_timeout
    t.poll(2 + t.cfg.fin_timeout - 0.1)
    assert t.state is State.FIN_WAIT_2
    t.poll(2 + t.cfg.fin_timeout)
    assert t.state is State.CLOSED and t.stats["fin_wait2_timeouts"] == 1 and take(t) == []
    # orphaned after reaching FIN-WAIT-2: the clock starts then
    t = established()
    t.close(now=1)
    take(t)
    t.receive(seg(R, L + 1, ACK), now=2)
    assert t.poll_at() is None                     # not orphaned: half-close may last
    t.orphan(now=30)
    t.poll(30 + t.cfg.fin_timeout)
    assert t.state is State.CLOSED


def test_a_rst_does_not_end_time_wait():
    """RFC 1337 (TIME-WAIT assassination): an in-window RST leaves TIME-WAIT to run
    its 2 MSL; with rfc1337 off (Linux's default) it closes the connection."""
    import dataclasses

    from .helpers import PLAIN
    for rfc1337, after in ((True, State.TIME_WAIT), (False, State.CLOSED)):
        t = established(cfg=dataclasses.replace(PLAIN, rfc1337=rfc1337))
        t.close(now=1)
        take(t)
        t.receive(seg(R, L + 1, ACK | FIN), now=1.1)
        assert t.state is State.TIME_WAIT
        take(t)
        t.receive(seg(R + 1, 0, RST), now=2)
        assert t.state is after and take(t) == []


def test_a_reset_in_close_wait_is_epipe_as_linux_reports_it():
    """The peer closed, we wrote, it answered with a reset: the writer hears EPIPE
    (tcp_reset's CLOSE_WAIT case), not ECONNRESET."""
    t = established()
    t.receive(seg(R, L, ACK | FIN), now=1)
    t.send(b"into the void", now=1.1)
    take(t)
    t.receive(seg(R + 1, 0, RST), now=1.2)
    assert t.state is State.CLOSED and t.error == errno.EPIPE


def _in_time_wait(cfg=None, **peer_opts):
    from .helpers import PLAIN
    t = established(cfg=cfg or PLAIN, **peer_opts)
    t.close(now=1)
    t.receive(seg(R, L + 1, ACK | FIN, ts=(500, 1) if peer_opts.get("ts") else None), now=1.1)
    assert t.state is State.TIME_WAIT
    take(t)
    return t


def test_a_new_syn_ends_time_wait_only_when_it_cannot_be_an_old_duplicate():
    """RFC 6191: with timestamps, a SYN whose TSval is newer than the last one seen;
    without (RFC 1122 4.2.2.13), a SYN beyond the old connection's sequence space."""
    from shared.proto.tcp.tcb import TcpConfig
    from shared.wire.tcp import SYN
    t = _in_time_wait()
    assert not t.new_syn_ends_time_wait(seg(R, 0, SYN))                 # not beyond RCV.NXT (R + 1)
    assert t.new_syn_ends_time_wait(seg(R + 100_000, 0, SYN))
    assert not t.new_syn_ends_time_wait(seg(R + 100_000, 0, SYN | ACK))
    assert not t.new_syn_ends_time_wait(seg(R + 100_000, 0, SYN | RST))
    ts = _in_time_wait(TcpConfig(sack=False, delayed_ack=0.04, cc="reno"), ts=(400, 0))
    assert ts.ts_ok and ts.ts_recent == 500
    assert ts.new_syn_ends_time_wait(seg(R - 5, 0, SYN, ts=(501, 0)))   # newer clock: yes, whatever its seq
    assert not ts.new_syn_ends_time_wait(seg(R + 100_000, 0, SYN, ts=(500, 0)))
    # otherwise it is challenged, and TIME-WAIT runs on
    ts.receive(seg(R + 100_000, 0, SYN, ts=(500, 0)), now=2)
    assert [s.flags for s in take(ts)] == [ACK] and ts.state is State.TIME_WAIT
    ts.end_time_wait()
    assert ts.state is State.CLOSED and ts.poll_at() is None


def test_data_with_a_fin_gets_one_ack_in_every_state():
    """The ACK of data that carries a FIN is the FIN's ACK: one segment, as Linux's tcp_fin
    sends (the data path ACKed it first, and then the FIN again: two ACKs, R+4 then R+5)."""
    t = established()
    t.close(now=1)
    take(t)
    t.receive(seg(R, L + 1, ACK), now=1.1)
    assert t.state is State.FIN_WAIT_2
    t.receive(seg(R, L + 1, ACK | FIN, data=b"bye"), now=1.2)
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R + 4)] and t.state is State.TIME_WAIT
    # without delayed ACKs, in ESTABLISHED: one ACK at once
    t = established(TcpConfig(delayed_ack=0))
    t.receive(seg(R, L, ACK | FIN, data=b"bye"), now=1)
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R + 4)] and t.state is State.CLOSE_WAIT
    # a second segment unacknowledged wants its ACK at once: the FIN's goes with it, not later
    t = established()
    t.receive(seg(R, L, ACK, data=b"a" * 100), now=1)
    t.receive(seg(R + 100, L, ACK | FIN, data=b"b" * 100), now=1)
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R + 201)] and t.dack_at is None
