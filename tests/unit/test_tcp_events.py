"""tcp's events to the socket layer: a turn whose events could not all be sent
(the socket server restarting, or its queue full) is made up by a resync."""

import collections
from types import SimpleNamespace

import msgpack

from services.tcp import RESYNC_RETRY, Tcp


def bare_tcp(now: float) -> Tcp:
    tcp = Tcp.__new__(Tcp)              # no sockets or state files: only a turn's bookkeeping
    tcp.now, tcp.touched, tcp.out, tcp.timers, tcp.by_id, tcp.rcvd = now, {}, [], [], {}, []
    tcp.events, tcp.held, tcp.resync_token = [], [], 0
    tcp.resync_at = None
    tcp.state = SimpleNamespace(table_dirty=False, write_turn=lambda: None)
    tcp.counters = collections.Counter()
    return tcp


def test_events_the_socket_layer_missed_are_told_again_by_a_resync():
    tcp = bare_tcp(5.0)
    tcp.events = [[7, "eof"]]
    tcp.ss_send = lambda msg: False     # its queue is full
    tcp.end_of_turn()
    assert tcp.events == [] and tcp.resync_at == 5.0 + RESYNC_RETRY
    sent = []
    tcp.ss_send = lambda msg: sent.append(msg) or True
    tcp.on_timer(5.0 + RESYNC_RETRY)
    assert tcp.resync_at is None and tcp.counters["TcpResyncs"] == 1
    assert kinds_in(sent) == ["restart", "eof", "synced"]     # the eof it missed goes with it


def kinds_in(sent: list[bytes]) -> list[str]:
    return [item[1] for msg in sent for item in msgpack.unpackb(msg)[-1]]


def test_no_event_overtakes_a_lost_one_before_the_resync():
    """The data of a turn that could not go, then a turn with the peer's FIN while the
    socket server can take messages again: the eof must not reach it before the resync
    (it would answer a read with end of stream, the data still missing: a soak's get
    read 0 bytes of 2 MB that way)."""
    tcp = bare_tcp(5.0)
    tcp.events = [[7, "data", 0, b"verdict"]]
    tcp.ss_send = lambda msg: False
    tcp.end_of_turn()
    sent = []
    tcp.ss_send = lambda msg: sent.append(msg) or True
    tcp.events = [[7, "eof"], [7, "acked", 10]]
    tcp.end_of_turn()
    assert sent == [] and tcp.resync_at == 5.0 + RESYNC_RETRY
    tcp.on_timer(5.0 + RESYNC_RETRY)
    # (the data comes again from the store, in the snapshot: this bare tcp has no connection)
    assert kinds_in(sent) == ["restart", "eof", "synced"] and tcp.held == []
    tcp.events = [[7, "closed"]]
    tcp.end_of_turn()
    assert kinds_in(sent[-1:]) == ["closed"]                  # after it, events go as before


def test_a_resync_cut_short_never_ends_with_synced():
    """A resync in several messages of which one could not go: nothing after it goes
    (the socket layer, hearing 'synced' past a lost 'sync', would reset that connection);
    the whole resync is sent again later."""
    tcp = bare_tcp(5.0)
    big = b"x" * (300 * 1024)
    calls = []

    def send(msg: bytes) -> bool:
        calls.append(msg)
        return len(calls) != 2           # the second message finds the queue full
    tcp.ss_send = send
    assert tcp.send_events([[1, "data", 0, big], [1, "sync", 0], [2, "data", 0, big], [2, "sync", 0],
                            [0, "synced"]]) == 1
    assert len(calls) == 2 and "synced" not in kinds_in(calls[:1])


def test_a_turn_whose_events_went_out_schedules_nothing():
    tcp = bare_tcp(5.0)
    tcp.events = [[7, "eof"]]
    tcp.ss_send = lambda msg: True
    tcp.end_of_turn()
    assert tcp.resync_at is None


def test_icmp_errors_count_only_if_they_quote_a_segment_in_flight():
    """RFC 5927: a port unreachable aborts a connection in SYN-SENT only if the TCP
    header it quotes carries a sequence number we sent; a forged one is counted."""
    import errno
    import struct

    from services.tcp_conn import Conn
    from shared.proto.tcp.tcb import State, Tcb, TcpConfig
    from shared.wire.icmp import ICMP_DEST_UNREACH, ICMP_PORT_UNREACH

    laddr, raddr = 0x0A420002, 0x0A420001
    tcp = bare_tcp(1.0)
    c = Conn(9, Tcb.connect(TcpConfig(), 77777, 1.0), laddr, 40000, raddr, 80)
    tcp.conns = {c.key: c}

    def error(seq: int) -> list:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, laddr.to_bytes(4, "big"),
                         raddr.to_bytes(4, "big"))
        return [ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0, ip + struct.pack("!HHI", 40000, 80, seq)]

    tcp.tcp_err([error(12345), error(77778)])           # neither is our SYN (ISS 77777)
    assert c.tcb.state is State.SYN_SENT and tcp.counters["TcpExtOutOfWindowIcmps"] == 2
    tcp.tcp_err([error(77777)])
    assert c.tcb.state is State.CLOSED and c.tcb.error == errno.ECONNREFUSED
