"""tcp's events to the socket layer: a turn whose events could not all be sent
(the socket server restarting, or its queue full) is made up by a resync."""

import collections
from types import SimpleNamespace

import msgpack

from services.tcp import RESYNC_RETRY, Tcp


def bare_tcp(now: float) -> Tcp:
    tcp = Tcp.__new__(Tcp)              # no sockets or state files: only a turn's bookkeeping
    tcp.now, tcp.touched, tcp.out, tcp.timers, tcp.by_id, tcp.rcvd = now, {}, [], [], {}, []
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
    kinds = [item[1] for msg in sent for item in msgpack.unpackb(msg)[-1]]
    assert kinds == ["restart", "synced"]


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
