"""System-test harness: real launcher, real processes, the real Linux peer."""

from __future__ import annotations

import itertools
import json
import os
import re
import statistics
import subprocess
import sys
import time

import pytest

from shared import host
from shared.config import load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG = os.path.join(ROOT, "configs", "default.toml")
ROUTER_CONFIG = os.path.join(ROOT, "configs", "router.toml")
_seq = itertools.count()


class Stack:
    """One mkstack instance driven through launcher.py, as a user would."""

    def __init__(self, instance: str, config: str = DEFAULT_CONFIG) -> None:
        self.instance = instance
        self.config = config
        self.cfg = load(config)
        self.addr = str(self.cfg.devices[0].addr.ip)
        self.peer_addr = str(self.cfg.devices[0].peer_addr.ip)

    def launcher(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", self.instance,
                            "-c", self.config, *args], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"launcher {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    def peer(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.launcher("peer", "--", *cmd, check=check, timeout=timeout)

    def peer_popen(self, *cmd: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", self.instance,
                                 "-c", self.config, "peer", "--", *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def status(self) -> dict:
        return json.loads(self.launcher("status", "--json").stdout)

    def stats(self) -> dict:
        return json.loads(self.launcher("stats", "--json").stdout)

    def restarts(self) -> dict[str, int]:
        return {s["name"]: s["restarts"] for s in self.status()["services"]}

    def leftovers(self) -> list[str]:
        return host.leftovers(self.cfg, self.instance)

    def state_of(self, name: str) -> str:
        return next(s["state"] for s in self.status()["services"] if s["name"] == name)

    def wait_running(self, name: str, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while self.state_of(name) != "running":
            assert time.monotonic() < deadline, f"{name} did not come back"
            time.sleep(0.05)

    def kill_when_running(self, victim: str) -> float:
        """SIGKILL ``victim`` once it is back up from any earlier kill; the time of the kill."""
        self.wait_running(victim)
        self.launcher("kill", victim)
        return time.time()


def start_on_mkstack(stack: Stack, *args: str) -> subprocess.Popen:
    """A Python program on mkstack (``launcher.py run``) that prints "ready..." once it is."""
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                          "-c", stack.config, "run", "--", "python", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    assert line.startswith("ready"), line + (p.stdout.read() if p.poll() is not None else "")
    return p


def new_instance() -> str:
    return f"t{os.getpid() % 100000}x{next(_seq)}"


def _running(config: str):
    s = Stack(new_instance(), config)
    try:
        s.launcher("up")
        yield s
    finally:
        s.launcher("down", check=False)
    assert s.leftovers() == []


@pytest.fixture
def stack():
    yield from _running(DEFAULT_CONFIG)


@pytest.fixture
def router():
    """mkstack routing between two peer namespaces (configs/router.toml)."""
    yield from _running(ROUTER_CONFIG)


_RTT = re.compile(r"icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms")
_TS = re.compile(r"^\[([\d.]+)\].*icmp_seq=(\d+)")


def ping_rtts(output: str) -> list[float]:
    return [float(m.group(2)) for m in _RTT.finditer(output)]


def reply_times(output: str) -> list[float]:
    """Arrival timestamps of replies in `ping -D` output."""
    return [float(m.group(1)) for m in map(_TS.match, output.splitlines()) if m]


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.3f} ms, p99 {percentile(xs, 99):.3f} ms, n={len(xs)}"
