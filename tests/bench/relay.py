"""The ZeroMQ relay floor: a ring of bare pyzmq processes passing one 64-byte
message round and round (python -m tests.bench.relay HOPS [SECONDS [GAP]]).

Each process PULLs on its own ipc:// endpoint and PUSHes to the next one's, as
mkstack's layers do; process 0 times each lap. A lap of HOPS processes is the
least a small-message round trip through that many layer hops can cost on this
machine, before any protocol work. Prints one JSON line: hops, laps, and the
median and p99 lap in microseconds.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time

MSG = bytes(64)


def _relay(path: str, i: int, hops: int) -> None:
    import zmq                                   # a context per process, made after the fork
    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.bind(f"ipc://{path}/{i}")
    out = ctx.socket(zmq.PUSH)
    out.connect(f"ipc://{path}/{(i + 1) % hops}")
    while True:
        msg = inbox.recv()
        if msg == b"stop":
            out.send(msg)
            return
        out.send(msg)


def ring(hops: int, seconds: float, gap: float = 0.0) -> dict:
    """Laps back to back, or ``gap`` seconds apart (every process idle in between, as
    the layers are between ping's packets): on this VM a process that slept a few ms
    runs its next turn several times slower (tests/bench/coldturn.py)."""
    import zmq
    with tempfile.TemporaryDirectory(prefix="mkrelay-") as path:
        ctx_method = mp.get_context("fork")
        procs = [ctx_method.Process(target=_relay, args=(path, i, hops), daemon=True) for i in range(1, hops)]
        for p in procs:
            p.start()
        ctx = zmq.Context()
        inbox = ctx.socket(zmq.PULL)
        inbox.bind(f"ipc://{path}/0")
        out = ctx.socket(zmq.PUSH)
        out.connect(f"ipc://{path}/{1 % hops}")
        laps: list[float] = []
        end = time.monotonic() + seconds
        for _ in range(50):                      # warm up: every connection made
            out.send(MSG)
            inbox.recv()
        while time.monotonic() < end:
            if gap:
                time.sleep(gap)
            t = time.perf_counter_ns()
            out.send(MSG)
            inbox.recv()
            laps.append((time.perf_counter_ns() - t) / 1000)
        out.send(b"stop")
        inbox.recv()
        for p in procs:
            p.join(2)
            if p.is_alive():
                p.kill()
        ctx.destroy(0)
    laps.sort()
    return {"hops": hops, "laps": len(laps), "median_us": round(statistics.median(laps), 1),
            "p99_us": round(laps[min(len(laps) - 1, int(len(laps) * 0.99))], 1)}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    gap = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    print(json.dumps(ring(n, secs, gap)))
