"""tcp's events to the socket layer: a turn whose events could not all be sent
(the socket server restarting, or its queue full) is made up by a resync."""

import collections
from types import SimpleNamespace

import msgpack

from services.tcp import RESYNC_RETRY, Tcp


def bare_tcp(now: float) -> Tcp:
    tcp = Tcp.__new__(Tcp)              # no sockets or state files: only a turn's bookkeeping
    tcp.now, tcp.touched, tcp.out, tcp.timers, tcp.by_id = now, {}, [], [], {}
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
