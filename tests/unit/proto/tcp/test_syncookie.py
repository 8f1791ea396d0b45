"""SYN cookies: a cookie checks only for its 4-tuple, SYN and period; the options
a cookie SYN-ACK can keep come back from its ACK; the handshake completes."""

from shared.proto.tcp import seq as S
from shared.proto.tcp import syncookie
from shared.proto.tcp.tcb import Segment, State, Tcb, TcpConfig
from shared.wire.tcp import ACK, SYN, TcpOptions

KEY = bytes(range(32))
TUPLE = (0x0A420002, 80, 0x0A420001, 40000)


def test_cookie_checks_only_for_its_connection_and_time():
    iss = syncookie.make(KEY, *TUPLE, 1000, 1460, now=100.0)
    ack_seq, ack = 1001, S.add(iss, 1)
    assert syncookie.check(KEY, *TUPLE, ack_seq, ack, now=130.0) == 1460
    assert syncookie.check(KEY, *TUPLE, ack_seq, ack, now=100.0 + 64) == 1460      # the next period
    assert syncookie.check(KEY, *TUPLE, ack_seq, ack, now=100.0 + 200) is None     # too old
    assert syncookie.check(KEY, TUPLE[0], 80, TUPLE[2], 40001, ack_seq, ack, now=101.0) is None
    assert syncookie.check(KEY, *TUPLE, ack_seq + 1, ack, now=101.0) is None     # another SYN's
    assert syncookie.check(bytes(32), *TUPLE, ack_seq, ack, now=101.0) is None   # another key
    assert syncookie.check(KEY, *TUPLE, ack_seq, S.add(ack, 1 << 24), now=101.0) is None


def test_an_ipv6_cookie_checks_only_for_its_own_addresses():
    ours, peer = bytes.fromhex("fd66" + "00" * 13 + "02"), bytes.fromhex("fd66" + "00" * 13 + "01")
    iss = syncookie.make(KEY, ours, 80, peer, 40000, 1000, 1440, now=100.0)
    assert syncookie.check(KEY, ours, 80, peer, 40000, 1001, S.add(iss, 1), now=101.0) == 1440
    other = bytes.fromhex("fd66" + "00" * 13 + "03")
    assert syncookie.check(KEY, ours, 80, other, 40000, 1001, S.add(iss, 1), now=101.0) is None
    assert syncookie.ts_offset(KEY, ours, 80, peer, 40000) != syncookie.ts_offset(KEY, ours, 80, other, 40000)


def test_mss_rounds_down_to_the_table():
    for mss, kept in ((1460, 1460), (1459, 1452), (536, 536), (100, 536), (9000, 8960), (None, 536)):
        iss = syncookie.make(KEY, *TUPLE, 5, mss, now=0.0)
        assert syncookie.check(KEY, *TUPLE, 6, S.add(iss, 1), now=1.0) == kept


def test_options_ride_in_the_timestamp_or_are_not_offered():
    with_ts = TcpOptions(mss=1460, wscale=9, sack_ok=True, ts=(777, 0))
    assert syncookie.synack_options(with_ts) == with_ts
    bits = syncookie.ts_bits(with_ts)
    _, _, opts = syncookie.rebuild_syn(11, 1460, TcpOptions(ts=(900, (12345 << 6) | bits)))
    assert (opts.wscale, opts.sack_ok, opts.ts) == (9, True, (900, 0))
    no_ws = TcpOptions(mss=1460, sack_ok=False, ts=(777, 0))
    _, _, opts = syncookie.rebuild_syn(11, 1460, TcpOptions(ts=(900, syncookie.ts_bits(no_ws))))
    assert opts.wscale is None and not opts.sack_ok
    # no timestamps: nowhere to keep window scale and SACK, so the SYN-ACK offers neither
    assert syncookie.synack_options(TcpOptions(mss=1400, wscale=7, sack_ok=True)) == TcpOptions(mss=1400)
    assert syncookie.rebuild_syn(11, 1400, TcpOptions()) == (10, SYN, TcpOptions(mss=1400))


def test_a_cookie_handshake_establishes_the_connection():
    cfg = TcpConfig()
    syn = Segment(5000, 0, SYN, 29200, b"", TcpOptions(mss=1460, wscale=7, sack_ok=True, ts=(111, 0)))
    iss = syncookie.make(KEY, *TUPLE, syn.seq, 1460, now=10.0)
    off = syncookie.ts_offset(KEY, *TUPLE)
    assert off == syncookie.ts_offset(KEY, *TUPLE) != syncookie.ts_offset(KEY, TUPLE[0], 81, *TUPLE[2:])
    t = Tcb.accept(cfg, iss, syn, 10.0, ts_offset=off)
    synack = t.output[0]
    tsval = syncookie.mark_tsval(synack.opts.ts[0], syn.opts)
    assert tsval & 63 == syncookie.ts_bits(syn.opts) and 0 <= synack.opts.ts[0] - tsval < 64
    # the peer's ACK, with data, echoing the marked TSval; nothing of the SYN-ACK's Tcb kept
    ack = Segment(5001, S.add(iss, 1), ACK, 229, b"hello", TcpOptions(ts=(112, tsval)))
    mss = syncookie.check(KEY, *TUPLE, ack.seq, ack.ack, now=10.5)
    sseq, flags, opts = syncookie.rebuild_syn(ack.seq, mss, ack.opts)
    t2 = Tcb.accept(cfg, S.add(ack.ack, -1), Segment(sseq, 0, flags, ack.wnd, b"", opts), 10.5, ts_offset=off)
    t2.output.clear()
    t2.receive(ack, 10.5)
    assert t2.state is State.ESTABLISHED
    assert t2.snd_mss == 1460 and t2.snd_wscale == 7 and t2.sack_ok and t2.ts_ok
    assert t2.snd_wnd == 229 << 7
    assert bytes(t2.delivered) == b"hello"
