"""How much slower a Python turn runs after its process slept
(python -m tests.bench.coldturn [RUNS]).

One process, pinned to one CPU, does the same small piece of work a service
does per message (decode a msgpack message, a few hundred dict lookups, encode
a reply) many times: back to back, then sleeping 1 ms and 10 ms before each.
Only the CPU time of the work itself is counted (``time.thread_time_ns``), so
the sleep's own wake-up is not in it. On this VM the work took 46-57 us back to
back, 77 us after 1 ms asleep and 159-180 us after 10 ms (2026-11-29); a
similar test that switched to another process between two runs, without
sleeping, found no slowdown: what a layer loses between two messages is the warmth of the caches
it left idle, not the context switch. A small message crosses five or six such
processes one after another, each of them idle in between; PyTCP's one process
pays it once. Prints one JSON line: the median microseconds per gap.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import msgpack

GAPS = (0.0, 0.001, 0.01)
MESSAGE = msgpack.packb([0x301, [[1, 17, [2, 3, 4], 0]], 7, 0])
TABLE = {i: str(i) for i in range(4096)}


def work() -> bytes:
    code, items, a, b = msgpack.unpackb(MESSAGE)
    n = 0
    for i in range(256):
        n += len(TABLE.get(i * 13 % 4096, ""))
    return msgpack.packb([code, items, a + n, b])


def median_us(runs: int, gap: float) -> float:
    took = []
    for _ in range(runs):
        if gap:
            time.sleep(gap)
        t = time.thread_time_ns()
        work()
        took.append(time.thread_time_ns() - t)
    return round(statistics.median(took) / 1000, 1)


def measure(runs: int) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    median_us(200, 0.0)                          # imports and first calls out of the way
    return {f"{gap * 1000:g}ms": median_us(runs if gap < 0.005 else runs // 4, gap) for gap in GAPS}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
