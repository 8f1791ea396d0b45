"""What the benchmarks read about processes: a program's JSON result line, and the
memory and CPU time of an instance's services (from /proc)."""

from __future__ import annotations

import json
import os

from tests.system.conftest import Stack


def json_line(out: str) -> dict:
    """The last line of a program's output, which the bench programs print as JSON."""
    return json.loads(out.strip().splitlines()[-1])


def service_pids(stack: Stack) -> list[int]:
    return [s["pid"] for s in stack.status()["services"] if s["pid"]]


def service_rss(stack: Stack) -> float:
    """MB of RSS over all the instance's services."""
    total = 0
    for pid in service_pids(stack):
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return round(total / 1024, 1)


def service_cpu(stack: Stack) -> float:
    """CPU seconds all the instance's services have used so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in service_pids(stack):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total
