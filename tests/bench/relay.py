"""The ZeroMQ relay floor: a ring of bare pyzmq processes passing one 64-byte
message round and round (python -m tests.bench.relay HOPS [SECONDS [GAP]] [--eventfd]).

Each process PULLs on its own ipc:// endpoint and PUSHes to the next one's, as
mkstack's layers do; process 0 times each lap. A lap of HOPS processes is the
least a small-message round trip through that many layer hops can cost on this
machine, before any protocol work. Prints one JSON line: hops, laps, and the
median and p99 lap in microseconds.

``--eventfd``: the same ring without ZeroMQ, for comparison: each process waits
on its own eventfd, copies the message from its slot of a shared mapping to the
next one's and writes the next one's eventfd (no I/O threads: one wake-up a hop).
"""

from __future__ import annotations

import json
import mmap
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from typing import Callable

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

        def lap() -> None:
            out.send(MSG)
            inbox.recv()
        result = _timed(hops, lap, seconds, gap)
        out.send(b"stop")
        inbox.recv()
        _join(procs)
        ctx.destroy(0)
    return result


def _timed(hops: int, lap: Callable[[], None], seconds: float, gap: float) -> dict:
    for _ in range(50):                      # warm up: every connection made
        lap()
    laps: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if gap:
            time.sleep(gap)
        t = time.perf_counter_ns()
        lap()
        laps.append((time.perf_counter_ns() - t) / 1000)
    laps.sort()
    return {"hops": hops, "laps": len(laps), "median_us": round(statistics.median(laps), 1),
            "p99_us": round(laps[min(len(laps) - 1, int(len(laps) * 0.99))], 1)}


def _join(procs: list) -> None:
    for p in procs:
        p.join(2)
        if p.is_alive():
            p.kill()


def _efd_relay(shm: mmap.mmap, efds: list[int], i: int) -> None:
    hops = len(efds)
    nxt = (i + 1) % hops
    while True:
        os.eventfd_read(efds[i])
        msg = shm[i * 64:(i + 1) * 64]
        shm[nxt * 64:(nxt + 1) * 64] = msg
        os.eventfd_write(efds[nxt], 1)
        if msg[0]:                           # the stop message, passed on
            return


def eventfd_ring(hops: int, seconds: float, gap: float = 0.0) -> dict:
    """The ring with an eventfd and a shared 64-byte slot per process instead of ZeroMQ."""
    shm = mmap.mmap(-1, 64 * hops)
    efds = [os.eventfd(0) for _ in range(hops)]
    ctx_method = mp.get_context("fork")
    procs = [ctx_method.Process(target=_efd_relay, args=(shm, efds, i), daemon=True) for i in range(1, hops)]
    for p in procs:
        p.start()
    first = 1 % hops

    def lap(msg: bytes = MSG) -> None:
        shm[first * 64:(first + 1) * 64] = msg
        os.eventfd_write(efds[first], 1)
        os.eventfd_read(efds[0])
    try:
        return _timed(hops, lap, seconds, gap)
    finally:
        lap(b"\1" + MSG[1:])
        _join(procs)
        for fd in efds:
            os.close(fd)
        shm.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--eventfd"]
    n = int(args[0]) if args else 4
    secs = float(args[1]) if len(args) > 1 else 2.0
    gap = float(args[2]) if len(args) > 2 else 0.0
    print(json.dumps((eventfd_ring if "--eventfd" in sys.argv else ring)(n, secs, gap)))
