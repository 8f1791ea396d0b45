"""Two TCP engines talk through a simulated link with a manual clock: loss,
duplication and reordering in both directions; every byte must arrive once,
in order, and both ends must close cleanly."""

import heapq
import random

import pytest

from shared.proto.tcp.tcb import State, Tcb, TcpConfig
from shared.wire.tcp import SYN

SNDBUF = 256 * 1024


class Link:
    def __init__(self, rng, loss=0.0, dup=0.0, reorder=0.0, delay=0.005):
        self.rng, self.loss, self.dup, self.reorder, self.delay = rng, loss, dup, reorder, delay
        self.q = []
        self.n = 0
        self.dropped = 0

    def put(self, seg, to, now):
        if self.rng.random() < self.loss:
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            d = self.delay + (self.rng.random() * 0.02 if self.rng.random() < self.reorder else 0)
            self.n += 1
            heapq.heappush(self.q, (now + d, self.n, to, seg))


def transfer(cfg, seed, up=300_000, down=100_000, **link):
    rng = random.Random(seed)
    net = Link(rng, **link)
    a = Tcb.connect(cfg, rng.randrange(1 << 32), now=0.0, ts_offset=rng.randrange(1 << 32))
    b = None
    send = {"a": rng.randbytes(up), "b": rng.randbytes(down)}
    sent = {"a": 0, "b": 0}
    got = {"a": bytearray(), "b": bytearray()}
    closed = {"a": False, "b": False}
    now = 0.0
    for _ in range(400_000):
        ends = {"a": a, "b": b}
        for name, t in ends.items():
            if t is None:
                continue
            other = "b" if name == "a" else "a"
            for seg in t.output:
                net.put(seg, other, now)
            t.output.clear()
            if t.delivered:                          # the application reads everything at once
                got[name] += t.delivered
                n = len(t.delivered)
                t.delivered.clear()
                t.read_credit(n, now)
            if t.state in (State.ESTABLISHED, State.CLOSE_WAIT) and sent[name] < len(send[name]):
                room = SNDBUF - len(t.sndq)
                chunk = send[name][sent[name]:sent[name] + min(room, 32768)]
                if chunk:
                    t.send(chunk, now)
                    sent[name] += len(chunk)
            if sent[name] == len(send[name]) and not closed[name] and t.state in (State.ESTABLISHED,
                                                                                   State.CLOSE_WAIT):
                t.close(now)
                closed[name] = True
        if b is not None and a.state in (State.CLOSED, State.TIME_WAIT) and b.state in (State.CLOSED,
                                                                                         State.TIME_WAIT):
            break
        times = [t for t in (a.poll_at(), b.poll_at() if b else None) if t is not None]
        if net.q:
            times.append(net.q[0][0])
        if not times:
            break
        now = max(now, min(times))
        while net.q and net.q[0][0] <= now:
            _, _, to, seg = heapq.heappop(net.q)
            if to == "b":
                if b is None:
                    if seg.flags & SYN:
                        b = Tcb.accept(cfg, rng.randrange(1 << 32), seg, now, ts_offset=rng.randrange(1 << 32))
                    continue
                b.receive(seg, now)
            else:
                a.receive(seg, now)
        for t in (a, b):
            if t is not None and t.poll_at() is not None and t.poll_at() <= now:
                t.poll(now)
    return a, b, send, got, net, now


CONFIGS = {
    "full": TcpConfig(),
    "reno-no-options": TcpConfig(sack=False, timestamps=False, rcv_wscale=0, cc="reno"),
    "sack-only": TcpConfig(timestamps=False, cc="reno"),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("link", [
    {},
    {"loss": 0.03},
    {"loss": 0.10, "reorder": 0.2},
    {"dup": 0.1, "reorder": 0.3},
], ids=["clean", "loss3", "loss10-reorder", "dup-reorder"])
def test_bulk_both_ways_is_byte_exact(name, link):
    for seed in (1, 2):
        a, b, send, got, net, now = transfer(CONFIGS[name], seed, **link)
        assert bytes(got["b"]) == send["a"], (name, link, seed, len(got["b"]))
        assert bytes(got["a"]) == send["b"], (name, link, seed, len(got["a"]))
        assert a.error is None and b.error is None
        assert {a.state, b.state} <= {State.CLOSED, State.TIME_WAIT}
        if link.get("loss"):
            assert net.dropped > 0 and a.stats["retrans"] + b.stats["retrans"] > 0


def test_clean_link_needs_no_retransmission_and_goes_fast():
    a, b, send, got, net, now = transfer(CONFIGS["full"], 3, up=2_000_000, down=0)
    assert bytes(got["b"]) == send["a"]
    assert a.stats["retrans"] == 0 and a.stats["rto"] == 0
    # 2 MB over a 10 ms RTT link: slow start then a full window; well under 2 s of simulated time
    assert now < 2.0, now
