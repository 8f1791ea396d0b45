import errno

import pytest

from shared.proto.tcp.tcb import State, Tcb, TcpConfig
from shared.wire.tcp import ACK, FIN, PSH, RST, SYN

from .helpers import IRS, ISS, PLAIN, established, seg, take  # noqa: F401

R = IRS + 1       # peer's next sequence number
L = ISS + 1       # ours


def test_in_order_data_is_delivered_and_ack_is_delayed():
    t = established()
    t.receive(seg(R, L, ACK, data=b"hello"), now=1.0)
    assert bytes(t.delivered) == b"hello" and t.rcv_nxt == R + 5
    assert take(t) == []                                # delayed
    assert t.poll_at() == 1.04
    t.poll(1.04)
    [a] = take(t)
    assert (a.seq, a.ack, a.flags) == (L, R + 5, ACK)


def test_every_second_segment_is_acked_at_once():
    t = established()
    t.receive(seg(R, L, ACK, data=b"a" * 1460), now=1)
    t.receive(seg(R + 1460, L, ACK, data=b"b" * 1460), now=1)
    assert [s.ack for s in take(t)] == [R + 2920]


def test_out_of_order_is_held_acked_with_sack_and_released_when_the_gap_fills():
    t = established(TcpConfig(timestamps=False), sack_ok=True, wscale=7)
    t.receive(seg(R + 10, L, ACK, data=b"KLMNO"), now=1)
    [a] = take(t)
    assert a.ack == R and a.opts.sack == ((R + 10, R + 15),)
    assert t.delivered == b""
    t.receive(seg(R, L, ACK, data=b"ABCDEFGHIJ"), now=1)
    assert bytes(t.delivered) == b"ABCDEFGHIJKLMNO"
    [a] = take(t)
    assert a.ack == R + 15 and a.opts.sack == ()


def test_old_duplicate_and_out_of_window_data_are_only_acked():
    t = established()
    t.receive(seg(R, L, ACK, data=b"abc"), now=1)
    take(t)
    t.receive(seg(R, L, ACK, data=b"abc"), now=1)       # duplicate
    t.receive(seg(R + 10_000_000, L, ACK, data=b"x"), now=1)
    assert bytes(t.delivered) == b"abc"
    assert [s.ack for s in take(t)] == [R + 3, R + 3]


def test_overlapping_retransmission_delivers_only_the_new_part():
    t = established()
    t.receive(seg(R, L, ACK, data=b"abc"), now=1)
    t.receive(seg(R + 1, L, ACK, data=b"bcdef"), now=1)
    assert bytes(t.delivered) == b"abcdef"


def test_rst_rules_rfc5961():
    t = established()
    t.receive(seg(R + 100, 0, RST), now=1)              # in window, not exact: challenge
    assert [s.flags for s in take(t)] == [ACK] and t.state is State.ESTABLISHED
    t.receive(seg(R + 10_000_000, 0, RST), now=1)       # out of window: dropped silently
    assert take(t) == []
    t.receive(seg(R, 0, RST), now=1)
    assert t.state is State.CLOSED and t.error == errno.ECONNRESET


def test_syn_in_synchronized_state_gets_a_challenge_ack():
    t = established()
    t.receive(seg(R, 0, SYN), now=1)
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R)] and t.state is State.ESTABLISHED


def test_challenge_and_out_of_window_acks_are_rate_limited_per_connection():
    """RFC 5961 7: a flood of invalid segments gets one ACK per 0.5 s (tcp_invalid_ratelimit), counted."""
    t = established()
    for i in range(100):
        t.receive(seg(R + 100 + i, 0, RST), now=1 + i * 0.001)          # in-window RSTs: challenges
        t.receive(seg(R, 0, SYN), now=1 + i * 0.001)                    # SYNs: challenges
        t.receive(seg(R + 10_000_000, L, ACK), now=1 + i * 0.001)       # out-of-window pure ACKs
    assert len(take(t)) == 1 and t.stats["challenge_acks"] == 1 and t.stats["acks_skipped"] == 299
    t.receive(seg(R, 0, SYN), now=1.6)                                  # the period has passed
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R)] and t.stats["challenge_acks"] == 2
    assert t.state is State.ESTABLISHED


def test_retransmitted_data_is_acked_every_time_despite_the_limit():
    # Linux too: a segment with data is no ACK loop, and its ACK may be the one the peer lost
    t = established()
    t.receive(seg(R, L, ACK, data=b"abc"), now=1)
    take(t)
    for _ in range(5):
        t.receive(seg(R, L, ACK, data=b"abc"), now=1)
    assert [s.ack for s in take(t)] == [R + 3] * 5


def test_ack_for_unsent_data_is_answered_and_dropped():
    t = established()
    t.receive(seg(R, L + 500, ACK, data=b"zz"), now=1)
    assert t.delivered == b"" and [s.ack for s in take(t)] == [R]


def test_send_respects_mss_and_the_peer_window():
    t = established(peer_wnd=3000, peer_mss=1000)
    t.send(b"x" * 5000, now=1)
    out = take(t)
    assert [len(s.data) for s in out] == [1000, 1000, 1000]
    t.receive(seg(R, L + 3000, ACK, wnd=3000), now=1.1)
    assert t.acked == 3000
    assert [len(s.data) for s in take(t)] == [1000, 1000]
    assert take(t) == []


def test_window_scaling_applies_to_the_peer_window():
    t = established(TcpConfig(timestamps=False, sack=False), wscale=4, peer_wnd=100)
    t.receive(seg(R, L, ACK, wnd=100), now=1)
    assert t.snd_wnd == 1600


def test_our_window_follows_the_socket_layer_and_reopens():
    t = Tcb.connect(PLAIN, ISS, now=0, rcv_space=3000)
    assert take(t)[0].wnd == 3000
    t.receive(seg(IRS, ISS + 1, SYN | ACK, mss=1460), now=0.01)
    take(t)
    t.receive(seg(R, L, ACK, data=b"a" * 1460), now=1)
    t.receive(seg(R + 1460, L, ACK, data=b"b" * 1460), now=1)
    [a] = take(t)
    assert a.wnd == 80                                  # what the socket layer can still take
    t.receive(seg(R + 2920, L, ACK, data=b"c" * 200), now=1)
    assert bytes(t.delivered).endswith(b"c" * 80)       # beyond the window is not accepted
    t.read_credit(3000, now=2)                          # the app read it all: window update
    [u] = take(t)
    assert u.wnd == 3000


def test_nagle_holds_small_segments_while_data_is_in_flight():
    t = established()
    t.send(b"a", now=1)
    t.send(b"b", now=1)
    assert [s.data for s in take(t)] == [b"a"]
    t.receive(seg(R, L + 1, ACK), now=1.1)
    assert [s.data for s in take(t)] == [b"b"]
    t.nodelay = True
    t.send(b"c", now=1.2)
    t.send(b"d", now=1.2)
    assert [s.data for s in take(t)] == [b"c", b"d"]


def test_rto_retransmits_backs_off_and_finally_times_out():
    t = established(TcpConfig(timestamps=False, sack=False, retries2=3, cc="reno"))
    t.send(b"x" * 100, now=1)
    take(t)
    times = []
    while t.state is State.ESTABLISHED:
        now = t.poll_at()
        t.poll(now)
        for s in take(t):
            assert s.seq == L and s.data == b"x" * 100
            times.append(round(now - 1, 2))
    assert times == [1.0, 3.0, 7.0]
    assert t.error == errno.ETIMEDOUT


def test_rtt_sampling_sets_rto_and_karn_ignores_retransmissions():
    t = established()
    t.send(b"x" * 10, now=1)
    take(t)
    t.receive(seg(R, L + 10, ACK), now=1.1)
    assert t.rtt.srtt == pytest.approx(0.1) and t.rtt.rto == pytest.approx(0.3)
    t.send(b"y" * 10, now=2)
    take(t)
    t.poll(2 + t.rtt.rto)                                # retransmitted
    t.receive(seg(R, L + 20, ACK), now=5)
    assert abs(t.rtt.srtt - 0.1) < 1e-9                 # no sample from the retransmitted one


def test_three_dupacks_fast_retransmit():
    t = established(peer_mss=1000)
    t.nodelay = True
    t.send(b"z" * 5000, now=1)
    assert len(take(t)) == 5
    for _ in range(3):
        t.receive(seg(R, L, ACK), now=1.1)
    out = take(t)
    assert [(s.seq, len(s.data)) for s in out][:1] == [(L, 1000)]
    assert t.in_recovery and t.stats["fast_retrans"] == 1
    t.receive(seg(R, L + 5000, ACK), now=1.2)            # full ACK ends recovery
    assert not t.in_recovery and t.acked == 5000


def test_sack_scoreboard_retransmits_only_the_holes():
    t = established(TcpConfig(timestamps=False, cc="reno"), sack_ok=True, peer_mss=1000)
    t.send(b"q" * 6000, now=1)
    take(t)
    # segments 2 and 4 lost; the peer SACKs 3, 5, 6
    t.receive(seg(R, L + 1000, ACK), now=1.1)
    t.receive(seg(R, L + 1000, ACK, sack=((L + 2000, L + 3000),)), now=1.1)
    t.receive(seg(R, L + 1000, ACK, sack=((L + 2000, L + 3000), (L + 4000, L + 5000))), now=1.1)
    t.receive(seg(R, L + 1000, ACK, sack=((L + 2000, L + 3000), (L + 4000, L + 6000))), now=1.1)
    resent = [(s.seq - L, len(s.data)) for s in take(t) if s.data]
    assert (1000, 1000) in resent and (3000, 1000) in resent
    assert all(off not in (2000, 4000, 5000) for off, _ in resent)


def test_zero_window_probe():
    t = established(peer_wnd=0)
    t.send(b"data", now=1)
    assert take(t) == []
    assert t.persist_at is not None
    t.poll(t.persist_at)
    [p] = take(t)
    assert p.data == b"d"                              # one byte beyond the window
    t.receive(seg(R, L + 1, ACK, wnd=5000), now=3)    # the probe byte is taken, the window opens
    assert [s.data for s in take(t)] == [b"ata"]


def test_small_window_with_nothing_in_flight_is_probed_not_waited_on():
    """A window below one MSS and below half the largest offered (its update lost):
    sender SWS avoidance holds the data, and the persist timer sends what fits."""
    t = established(peer_wnd=60000)
    t.send(b"x" * 60000, now=1)
    sent = sum(len(s.data) for s in take(t))
    t.receive(seg(R, L + sent, ACK, wnd=1000), now=2)    # all acked, the window nearly shut
    assert take(t) == [] and t.flight == 0
    assert t.persist_at is not None                      # before: no timer at all, stuck for good
    t.poll(t.persist_at)
    [p] = take(t)
    assert p.seq == L + sent and len(p.data) == 1000 and t.rto_at is not None


def test_paws_drops_old_timestamps():
    t = established(TcpConfig(sack=False), ts=(1000, 0))
    t.receive(seg(R, L, ACK, data=b"new", ts=(1001, 0)), now=1)
    t.receive(seg(R + 3, L, ACK, data=b"old", ts=(900, 0)), now=1)
    assert bytes(t.delivered) == b"new"
    assert t.ts_recent == 1001


def test_data_with_psh_and_timestamps_echo():
    t = established(TcpConfig(sack=False), ts=(77, 0))
    t.send(b"hi", now=2)
    [s] = take(t)
    assert s.flags == ACK | PSH and s.opts.ts == (t.ts_val(2), 77)


def test_abort_sends_rst():
    t = established()
    t.abort(now=1)
    assert [s.flags for s in take(t)] == [RST] and t.state is State.CLOSED


def test_fin_with_data():
    t = established()
    t.receive(seg(R, L, ACK | FIN, data=b"bye"), now=1)
    assert bytes(t.delivered) == b"bye" and t.eof and t.state is State.CLOSE_WAIT
    assert take(t) == [] and t.poll_at() == 1 + t.cfg.delayed_ack    # delayed, as Linux's
    t.poll(t.poll_at())
    assert [(s.flags, s.ack) for s in take(t)] == [(ACK, R + 4)]


def test_keepalive_probes_then_times_out():
    t = established(TcpConfig(sack=False, timestamps=False, keepalive_time=10, keepalive_intvl=1,
                              keepalive_probes=3))
    t.set_keepalive(True, now=0.01)
    probes = 0
    while t.state is State.ESTABLISHED and t.poll_at() is not None:
        t.poll(t.poll_at())
        probes += sum(1 for s in take(t) if s.seq == L - 1)
    assert probes == 3 and t.error == errno.ETIMEDOUT


def test_segments_leave_room_for_the_timestamp_option():
    t = established(TcpConfig(sack=False), ts=(1, 0), peer_mss=1460)
    t.nodelay = True
    t.send(b"x" * 3000, now=1)
    sizes = [len(s.data) for s in take(t)]
    assert sizes == [1448, 1448, 104]          # 1460 - 12 bytes of timestamps, as Linux


def test_tso_sends_whole_mss_multiples_up_to_64k_and_retransmits_one_mss():
    t = established(TcpConfig(sack=False, timestamps=False, cc="reno", tso=True), peer_wnd=65535, wscale=7)
    t.cc.cwnd = 200_000
    t.send(b"d" * 150_000, now=1)
    segs = take(t)
    mss = t.seg_size()
    assert len(segs[0].data) == (65535 - 120) // mss * mss      # one TSO segment, cut by the device
    assert all(len(s.data) % mss == 0 for s in segs[:-1]) and all(len(s.data) <= 65535 for s in segs)
    t.poll(t.rto_at)                                               # the RTO: one MSS goes again, not 64 KB
    [r] = [s for s in take(t) if s.data]
    assert r.seq == L and len(r.data) == mss


def test_out_of_order_queue_is_bounded_and_merges_overlaps():
    """A peer cannot park one entry per tiny or overlapping segment: overlapping and
    touching segments merge into one block, disjoint ones stop at ooo_max_blocks
    (counted, the peer resends), and the stream still arrives byte-exact."""
    stream = bytes(range(256)) * 40                       # 10,240 bytes, the first 100 held back
    t = established(TcpConfig(timestamps=False, rcv_wscale=7), sack_ok=True, wscale=7)
    # overlapping segments at every start: one block, whatever the order
    for i in range(100, 2000, 7):
        t.receive(seg(R + i, L, ACK, data=stream[i:i + 50]), now=1)
    assert len(t.ooo) == 1
    # 5,000 one-byte islands beyond a gap: no more than the bound kept
    for i in range(3000, 10000, 2):
        t.receive(seg(R + i, L, ACK, data=stream[i:i + 1]), now=1)
    assert len(t.ooo) <= t.cfg.ooo_max_blocks + 1 and t.stats["ooo_dropped"] > 0
    # the sender fills everything in; what was kept and what comes again agree
    for i in range(0, len(stream), 1000):
        t.receive(seg(R + i, L, ACK, data=stream[i:i + 1000]), now=2)
    assert bytes(t.delivered) == stream and t.ooo == {}


def test_a_restart_below_probes_the_tail_and_a_hole_before_it_is_resent_at_once():
    """Segments that died inside a restarted layer: the tail goes again at once; the
    peer's SACK of it shows the hole, which SACK recovery resends without a timeout."""
    t = established(TcpConfig(timestamps=False, cc="reno", tso=True), sack_ok=True, wscale=7, peer_wnd=65535)
    t.cc.cwnd = 400_000
    mss = t.seg_size()
    t.send(b"d" * (3 * 64 * mss), now=1)
    sent = take(t)
    end = sent[-1].seq + len(sent[-1].data)
    assert t.probe_after_restart(now=1.01)
    probe = [s for s in take(t) if s.data]
    assert probe and probe[-1].seq + len(probe[-1].data) == end        # the tail of the flight
    assert sum(len(s.data) for s in probe) <= 65535 and t.stats["tail_probes"] == 1
    # the first segment arrived, the rest died below; the probe arrived: ACK of the first, SACK of the tail
    first_end = sent[0].seq + len(sent[0].data)
    t.receive(seg(R, first_end, ACK, wnd=65535, sack=((probe[0].seq, end),)), now=1.02)
    resent = [s for s in take(t) if s.data]
    assert resent and resent[0].seq == first_end                      # the hole, now: no RTO
    assert t.stats["rto"] == 0


def test_a_restart_below_with_a_small_flight_sends_all_of_it_again():
    t = established(TcpConfig(sack=False, timestamps=False, cc="reno", tso=False), peer_wnd=65535)
    t.send(b"ab" * 1460, now=1)                        # two segments
    sent = [s for s in take(t) if s.data]
    assert t.probe_after_restart(now=1.01)
    again = [s for s in take(t) if s.data]
    assert [(s.seq, bytes(s.data)) for s in again] == [(s.seq, bytes(s.data)) for s in sent]
    t.receive(seg(R, L + 2920, ACK), now=1.02)
    assert t.flight == 0 and not t.probe_after_restart(now=1.03)      # nothing in flight: nothing sent
    assert take(t) == []
