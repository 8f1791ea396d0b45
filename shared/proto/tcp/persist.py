"""A Tcb as plain values and back, so a new tcp process can take a connection up.

The record holds every field of the state machine, the RTT estimator and the
congestion control. The byte queues are not in it: the caller keeps the send
queue and the out-of-order data in rings by sequence number, and the record
names only their extent (``sndq_len``, ``ooo`` as [seq, length] pairs).
Per-turn outputs (segments to send, data to deliver, counters) are empty
between turns and not kept. Timer deadlines are absolute monotonic times, so
they mean the same in the next process.
"""

from __future__ import annotations

import operator

from shared.bytequeue import ByteQueue
from shared.proto.tcp.cc import ALGORITHMS
from shared.proto.tcp.tcb import State, Tcb, TcpConfig, with_opts

VERSION = 1
_SKIP = {"cfg", "output", "delivered", "acked", "urgent", "stats", "sndq", "ooo", "rtt", "cc", "state", "sacked"}
FIELDS = tuple(k for k in vars(Tcb(TcpConfig(), 0, 0.0)) if k not in _SKIP)
_VALUES = operator.itemgetter(*FIELDS)     # from the instance dict: half the time of a comprehension
_SNDQ_SEQ = FIELDS.index("sndq_seq")


def snapshot(t: Tcb, max_ooo: int = 64) -> list:
    """[version, state, fields..., sacked, rtt, cc, sndq_len, ooo]; at most ``max_ooo``
    out-of-order blocks are named (the rest is the peer's to resend, as after reneging)."""
    ooo = [[s, len(b)] for s, b in list(t.ooo.items())[:max_ooo]] if t.ooo else []
    return [VERSION, t.state.value, list(_VALUES(t.__dict__)), [list(b) for b in t.sacked], vars(t.rtt),
            vars(t.cc), len(t.sndq), ooo]


def queues(rec: list) -> tuple[int, int, list]:
    """Where a snapshot's queues are: (sequence of the send queue's first byte, its
    length, [[seq, length], ...] of out-of-order data), to read them from their rings."""
    return rec[2][_SNDQ_SEQ], rec[6], rec[7]


def restore(cfg: TcpConfig, rec: list, sndq: bytes, ooo: dict[int, bytes]) -> Tcb:
    """The Tcb of a snapshot, with its queues' bytes; ValueError if it is not one."""
    if not (isinstance(rec, list) and len(rec) == 8 and rec[0] == VERSION and len(rec[2]) == len(FIELDS)):
        raise ValueError("not a Tcb snapshot of this version")
    _, state, values, sacked, rtt, cc, sndq_len, _ = rec
    if len(sndq) != sndq_len:
        raise ValueError("send queue length does not match the snapshot")
    t = Tcb(cfg, 0, 0.0)
    t.__dict__.update(zip(FIELDS, values))
    t.state = State(state)
    t.sacked = [tuple(b) for b in sacked]
    t.rtt.__dict__.update(rtt)
    t.cfg = with_opts(cfg, t.opts)           # what the connection's socket options changed
    t.cc = ALGORITHMS[t.cfg.cc](t.snd_mss)
    t.cc.__dict__.update(cc)
    t.sndq = ByteQueue(sndq)
    t.ooo = dict(ooo)
    return t
