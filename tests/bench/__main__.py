"""The benchmark harness: python -m tests.bench [--quick] [--peers pytcp] [--json FILE] [--plot FILE].

Brings up an mkstack instance and two baselines, runs every workload for a
bounded time, tears everything down, and prints one table in which each
mkstack figure stands beside the same workload on
  - the Python limit: one bare Python process on a TAP (tests/bench/pylimit.py)
    that only reads frames and writes them back or sinks them, and
  - the kernel: two network namespaces joined by a veth pair,
both measured in the same run, with the ratios; then the small-message table
(tests/bench/small.py: each row beside a bare ZeroMQ relay of its hop count and,
with --peers pytcp, beside PyTCP, all measured in the same run). Not part of
`make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from typing import Iterator

from tests.bench import small
from tests.bench.procs import json_line, service_cpu, service_rss
from tests.system.conftest import ROOT, Stack, new_instance, ping_rtts

APPS = os.path.join(ROOT, "tests", "system", "apps")
TCP_SERVE, TCP_LOAD = os.path.join(APPS, "tcp_serve.py"), os.path.join(APPS, "tcp_load.py")
HOLD_SERVER, HOLD_CLIENT = os.path.join(APPS, "hold_server.py"), os.path.join(APPS, "hold_client.py")
HOLD_WINDOW = 64            # connections being opened at once by the holding client
BENCH = os.path.dirname(os.path.abspath(__file__))
PY_MAC, PY_IP, PY_PEER = "02:6d:6b:77:00:02", "10.77.0.2", "10.77.0.1"
K_A, K_B = "10.78.0.1", "10.78.0.2"


def sh(*cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=timeout)


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


@contextmanager
def pylimit_ns(tag: str) -> Iterator[str]:
    """A namespace whose TAP the Python-limit process drives; the kernel side is 10.77.0.1."""
    ns = f"mkb-py-{tag}"
    try:
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "tuntap", "add", "dev", "tapb0", "mode", "tap")
        sh("ip", "-n", ns, "addr", "add", f"{PY_PEER}/24", "dev", "tapb0")
        sh("ip", "-n", ns, "link", "set", "tapb0", "up")
        sh("ip", "-n", ns, "neigh", "replace", PY_IP, "lladdr", PY_MAC, "dev", "tapb0")
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


@contextmanager
def kernel_pair(tag: str) -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair: 10.78.0.1 (client side) and 10.78.0.2."""
    a, b = f"mkb-ka-{tag}", f"mkb-kb-{tag}"
    try:
        for ns in (a, b):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", a, "link", "add", "vka", "type", "veth", "peer", "name", "vkb", "netns", b)
        for ns, dev, addr in ((a, "vka", K_A), (b, "vkb", K_B)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in (a, b):
            sh("ip", "netns", "del", ns, check=False)


def served(server: list[str], client: list[str], timeout: float) -> dict:
    """Start a server that prints 'ready', run the client, return its JSON line."""
    p = subprocess.Popen(server, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = p.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"server did not start: {line}{p.stdout.read() if p.poll() is not None else ''}")
        return json_line(sh(*client, timeout=timeout).stdout)
    finally:
        p.kill()
        p.wait()


def held(server: list[str], client: list[str], timeout: float, while_held=lambda: None) -> tuple[dict, dict, object]:
    """Open many connections and hold them: the client's and the server's JSON
    lines, and what ``while_held`` returns while all of them are still open."""
    srv = subprocess.Popen(server, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cli = None
    try:
        line = srv.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"server did not start: {line}")
        cli = subprocess.Popen(client, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        deadline = time.monotonic() + timeout
        out = {}
        for name, p in (("client", cli), ("server", srv)):
            text = ""
            while not text.startswith("{"):
                if time.monotonic() > deadline or p.poll() is not None and not text:
                    raise RuntimeError(f"{name} gave no result: {text}")
                text = p.stdout.readline()
            out[name] = json.loads(text)
        return out["client"], out["server"], while_held()
    finally:
        for p in (cli, srv):
            if p is not None:
                p.kill()
                p.wait()


class Bench:
    def __init__(self, quick: bool) -> None:
        self.t = 1.5 if quick else 4.0
        self.hold_n = 10000
        self.pings = 100 if quick else 300
        self.rows: list[dict] = []
        self.tag = str(os.getpid())
        self.step = 0

    def progress(self, what: str) -> None:
        self.step += 1
        print(f"[{self.step:2d}] {what}", file=sys.stderr, flush=True)

    def add(self, name: str, unit: str, ours: float | None, pylimit: float | None = None,
            kernel: float | None = None, better: str = "higher") -> None:
        self.rows.append({"workload": name, "unit": unit, "mkstack": ours, "python_limit": pylimit,
                          "kernel": kernel, "better": better})

    # -- the Python limit -------------------------------------------------------------------
    def pylimit(self, mode: str, ns: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(in_ns(ns, sys.executable, os.path.join(BENCH, "pylimit.py"), "tapb0", PY_MAC, PY_IP,
                                      mode, str(self.t), *extra),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def pylimit_runs(self, ns: str) -> dict:
        out = {}
        blast = ("import socket, sys, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                 f"end = time.monotonic() + {self.t}\nb = bytes(1472)\n"
                 f"while time.monotonic() < end:\n    for _ in range(64):\n        s.sendto(b, ('{PY_IP}', 9))\n")
        self.progress("Python limit: sink frames from the kernel")
        p = self.pylimit("sink", ns)
        p.stdout.readline()
        sh(*in_ns(ns, sys.executable, "-c", blast), check=False, timeout=self.t + 30)
        out["sink"] = json_line(p.communicate(timeout=self.t + 30)[0])
        self.progress("Python limit: write frames to the kernel")
        mac = sh("ip", "-n", ns, "-j", "link", "show", "tapb0").stdout
        peer_mac = json.loads(mac)[0]["address"]
        p = self.pylimit("source", ns, peer_mac, PY_PEER)
        out["source"] = json_line(p.communicate(timeout=self.t + 30)[0])
        self.progress("Python limit: ping responder")
        p = self.pylimit("echo", ns)
        p.stdout.readline()
        rtts = ping_rtts(sh(*in_ns(ns, "ping", "-c", str(self.pings), "-i", "0.005", "-n",
                                   PY_IP), check=False, timeout=120).stdout)
        p.communicate(timeout=self.t + 30)
        out["rtt"] = rtts
        return out

    # -- the kernel over veth ---------------------------------------------------------------
    def kernel_runs(self, a: str, b: str) -> dict:
        out = {}
        for mode in ("sink", "rr", "crr"):
            self.progress(f"kernel: tcp {mode}")
            out[mode] = served(in_ns(b, sys.executable, TCP_SERVE, K_B, "7300"),
                               in_ns(a, sys.executable, TCP_LOAD, K_B, "7300", mode, str(self.t)), self.t * 4 + 30)
        self.progress("kernel: tcp bulk with 1% loss each way")
        for ns in (a, b):
            sh(*in_ns(ns, "iptables", "-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability",
                      "0.01", "-j", "DROP"))
        out["lossy"] = served(in_ns(b, sys.executable, TCP_SERVE, K_B, "7301"),
                              in_ns(a, sys.executable, TCP_LOAD, K_B, "7301", "sink", str(self.t)), self.t * 4 + 30)
        for ns in (a, b):
            sh(*in_ns(ns, "iptables", "-F", "INPUT"))
        self.progress("kernel: ping")
        out["rtt"] = ping_rtts(sh(*in_ns(a, "ping", "-c", str(self.pings), "-i", "0.005", "-n", K_B)).stdout)
        echo, window = os.path.join(APPS, "udp_echo.py"), os.path.join(APPS, "udp_window.py")
        for size in (64, 1400):
            self.progress(f"kernel: udp echoes of {size} bytes")
            out[f"udp{size}"] = served(in_ns(b, sys.executable, echo, K_B, "9999"),
                                       in_ns(a, sys.executable, window, K_B, "9999", str(size), str(self.t), "16"),
                                       self.t * 4 + 30)
        self.progress("kernel: socket calls")
        out["calls"] = json_line(sh(sys.executable, "-c", CALLS.format(t=self.t)).stdout)
        self.progress(f"kernel: {self.hold_n:,} idle tcp connections")
        out["hold"], _, _ = held(in_ns(b, sys.executable, HOLD_SERVER, "7400", str(self.hold_n)),
                                 in_ns(a, sys.executable, HOLD_CLIENT, K_B, "7400", str(self.hold_n),
                                       str(HOLD_WINDOW)), 300)
        return out

    # -- mkstack ------------------------------------------------------------------------------
    def mkstack_runs(self, stack: Stack) -> dict:
        out = {}
        run, peer = launcher_cmds(stack)
        self.progress("mkstack: idle memory")
        out["rss_idle"] = service_rss(stack)
        out["sink"], out["cpu_per_gb"] = self.bulk_in(stack, "mkstack", 7200)
        out["rss_load"] = service_rss(stack)
        for mode in ("rr", "crr"):
            self.progress(f"mkstack: tcp {mode} (kernel client -> mkstack server)")
            out[mode] = served([*run, TCP_SERVE, "0.0.0.0", "7200"],
                               [*peer, TCP_LOAD, stack.addr, "7200", mode, str(self.t)],
                               self.t * 4 + 60)
        out["sink_out"] = self.bulk_out(stack, "mkstack", 7201)
        self.progress("mkstack: tcp bulk with 1% loss each way")
        stack.launcher("impair", "tap0", "--rx-loss", "0.01", "--tx-loss", "0.01", "--seed", "7")
        out["lossy"] = served([*run, TCP_SERVE, "0.0.0.0", "7202"],
                              [*peer, TCP_LOAD, stack.addr, "7202", "sink", str(self.t)],
                              self.t * 6 + 60)
        stack.launcher("impair", "tap0")
        self.progress("mkstack: ping")
        out["rtt"] = ping_rtts(stack.peer("ping", "-c", str(self.pings), "-i", "0.005", "-n", stack.addr).stdout)
        echo, window = os.path.join(APPS, "udp_echo.py"), os.path.join(APPS, "udp_window.py")
        for size in (64, 1400):
            self.progress(f"mkstack: udp echoes of {size} bytes")
            out[f"udp{size}"] = served([*run, echo, "0.0.0.0", "9999"],
                                       [*peer, window, stack.addr, "9999", str(size), str(self.t), "16"],
                                       self.t * 4 + 60)
        self.progress("mkstack: socket calls")
        out["calls"] = json_line(stack.launcher("run", "--", "python", "-c", CALLS.format(t=self.t)).stdout)
        self.progress("mkstack: small messages against the anchor's echo servers")
        out["small"], out["small_load"] = small.run(stack, self.t < 2)
        self.progress(f"mkstack: {self.hold_n:,} idle tcp connections (kernel client -> mkstack server)")
        out["hold"], out["hold_server"], out["rss_hold"] = held(
            [*run, HOLD_SERVER, "7400", str(self.hold_n)],
            [*peer, HOLD_CLIENT, stack.addr, "7400", str(self.hold_n), str(HOLD_WINDOW)], 600,
            lambda: service_rss(stack))
        return out

    def frame_runs(self, stack: Stack) -> dict:
        """Bulk each way again, frame at a time: [driver] offload = false (the TCP window as before, 208 KB)."""
        out = {}
        out["sink"], out["cpu_per_gb"] = self.bulk_in(stack, "mkstack frame at a time", 7210)
        out["sink_out"] = self.bulk_out(stack, "mkstack frame at a time", 7211)
        return out

    def bulk_in(self, stack: Stack, label: str, port: int) -> tuple[dict, float]:
        """TCP bulk kernel -> mkstack, and the services' CPU seconds per GB received."""
        run, peer = launcher_cmds(stack)
        self.progress(f"{label}: tcp bulk kernel -> mkstack")
        cpu0 = service_cpu(stack)
        r = served([*run, TCP_SERVE, "0.0.0.0", str(port)], [*peer, TCP_LOAD, stack.addr, str(port), "sink",
                                                               str(self.t)], self.t * 4 + 60)
        return r, (service_cpu(stack) - cpu0) / max(1e-9, r["per_s"] * self.t / 1e9)

    def bulk_out(self, stack: Stack, label: str, port: int) -> dict:
        run, peer = launcher_cmds(stack)
        self.progress(f"{label}: tcp bulk mkstack -> kernel")
        return served([*peer, TCP_SERVE, stack.peer_addr, str(port)],
                      [*run, TCP_LOAD, stack.peer_addr, str(port), "sink", str(self.t)], self.t * 4 + 60)

    def table(self, py: dict, k: dict, m: dict) -> None:
        p50 = statistics.median
        self.add("TCP bulk kernel->mkstack", "MB/s", m["sink"]["mb_per_s"], py["sink"]["mb_per_s"],
                 k["sink"]["mb_per_s"])
        self.add("TCP bulk mkstack->kernel", "MB/s", m["sink_out"]["mb_per_s"], py["source"]["mb_per_s"],
                 k["sink"]["mb_per_s"])
        o = m["frames"]
        self.add("TCP bulk kernel->mkstack, offload off", "MB/s", o["sink"]["mb_per_s"], py["sink"]["mb_per_s"],
                 k["sink"]["mb_per_s"])
        self.add("TCP bulk mkstack->kernel, offload off", "MB/s", o["sink_out"]["mb_per_s"],
                 py["source"]["mb_per_s"], k["sink"]["mb_per_s"])
        self.add("TCP bulk, 1% loss each way", "MB/s", m["lossy"]["mb_per_s"], None, k["lossy"]["mb_per_s"])
        self.add("ping RTT median", "ms", p50(m["rtt"]), p50(py["rtt"]), p50(k["rtt"]), "lower")
        self.add("ping RTT p99", "ms", pct(m["rtt"], 99), pct(py["rtt"], 99), pct(k["rtt"], 99), "lower")
        self.add("TCP 1-byte request/response", "us", m["rr"]["rtt_us_median"], None, k["rr"]["rtt_us_median"],
                 "lower")
        self.add("UDP echoes, 64 B", "/s", m["udp64"]["echoes_per_s"], None, k["udp64"]["echoes_per_s"])
        self.add("UDP echoes, 1400 B", "/s", m["udp1400"]["echoes_per_s"], None, k["udp1400"]["echoes_per_s"])
        self.add("TCP connect+request+close", "/s", m["crr"]["per_s"], None, k["crr"]["per_s"])
        self.add("socket calls (getsockname)", "/s", m["calls"]["per_s"], None, k["calls"]["per_s"])
        h, kh = m["hold"], k["hold"]
        self.add(f"idle TCP connections held (of {self.hold_n:,})", "",
                 min(h["answered"], m["hold_server"]["answered"]), None, kh["answered"])
        self.add(f"TCP connections opened, {HOLD_WINDOW} at once", "/s", h["per_s"], None, kh["per_s"])
        self.add(f"RSS of all services, {self.hold_n:,} connections", "MB", m["rss_hold"], None, None, "lower")
        self.add("RSS of all services, idle", "MB", m["rss_idle"], None, None, "lower")
        self.add("RSS of all services, under load", "MB", m["rss_load"], None, None, "lower")
        self.add("CPU per GB received", "s", round(m["cpu_per_gb"], 1), None, None, "lower")
        self.add("CPU per GB received, offload off", "s", round(o["cpu_per_gb"], 1), None, None, "lower")

    def print_table(self) -> None:
        print(f"{'workload':<36}{'unit':>5}{'mkstack':>11}{'py limit':>11}{'kernel':>12}{'/py limit':>11}"
              f"{'/kernel':>10}")
        for r in self.rows:
            print(f"{r['workload']:<36}{r['unit']:>5}{fmt(r['mkstack']):>11}{fmt(r['python_limit']):>11}"
                  f"{fmt(r['kernel']):>12}{ratio(r['mkstack'], r['python_limit']):>11}"
                  f"{ratio(r['mkstack'], r['kernel']):>10}")


CALLS = ("import json, socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nn = 0\n"
         "end = time.monotonic() + {t}\nwhile time.monotonic() < end:\n    s.getsockname()\n    n += 1\n"
         "print(json.dumps({{'per_s': round(n / {t})}}))\n")


def launcher_cmds(stack: Stack) -> tuple[list[str], list[str]]:
    """Command prefixes: a Python program on the instance, and one in its peer namespace."""
    base = [sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance, "-c", stack.config]
    return [*base, "run", "--", "python"], [*base, "peer", "--", "python3"]


def frames_config(path: str) -> str:
    """The default config with the offloads off and the TCP buffers of before (208 KB), frame at a time."""
    with open(os.path.join(ROOT, "configs", "default.toml")) as f:
        text = f.read()
    for old, new in (("offload = true", "offload = false"), ("rmem = 4194304 ", "rmem = 212992 "),
                     ("wmem = 4194304 ", "wmem = 212992 ")):
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    return path


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p / 100))] if s else 0.0


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def plot(rows: list[dict], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: .venv/bin/pip install -r requirements-bench.txt") from None
    bars = [r for r in rows if r["unit"] in ("MB/s", "/s") and r["mkstack"] is not None]
    fig, axes = plt.subplots(1, len(bars), figsize=(2.2 * len(bars), 4))
    for ax, r in zip(axes, bars):
        names = ["mkstack", "py limit", "kernel"]
        vals = [r["mkstack"], r["python_limit"] or 0, r["kernel"] or 0]
        ax.bar(names, vals, color=["#3a7", "#888", "#47c"])
        ax.set_yscale("log")
        ax.set_ylim(bottom=1)
        for i, v in enumerate(vals):
            if v:
                ax.text(i, v, fmt(v), ha="center", va="bottom", fontsize=7)
        ax.set_title(f"{r['workload']}\n({r['unit']})", fontsize=8)
        ax.tick_params(axis="x", labelsize=7, rotation=45)
    fig.suptitle(f"mkstack beside the Python limit and the kernel ({time.strftime('%Y-%m-%d')}, log scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench")
    ap.add_argument("--quick", action="store_true", help="shorter runs (about a minute and a half in all)")
    ap.add_argument("--json", metavar="FILE", help="write the table as JSON")
    ap.add_argument("--peers", default="", help="'pytcp': also run PyTCP's anchor (../shared/anchors/pytcp)")
    ap.add_argument("--plot", metavar="FILE.png", help="draw the throughput rows against both baselines")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the benchmarks create namespaces and TAPs: run as root")
    b = Bench(args.quick)
    t0 = time.monotonic()
    floor = small.floors(args.quick)
    with ExitStack() as es:
        py_ns = es.enter_context(pylimit_ns(b.tag))
        py = b.pylimit_runs(py_ns)
        ka, kb = es.enter_context(kernel_pair(b.tag))
        k = b.kernel_runs(ka, kb)
        stack = Stack(new_instance())
        es.callback(stack.launcher, "down", check=False)
        b.progress("mkstack: up")
        stack.launcher("up")
        m = b.mkstack_runs(stack)
        stack.launcher("down", check=False)
        cfg_dir = es.enter_context(tempfile.TemporaryDirectory())
        frames = Stack(new_instance(), frames_config(os.path.join(cfg_dir, "frames.toml")))
        es.callback(frames.launcher, "down", check=False)
        b.progress("mkstack frame at a time: up")
        frames.launcher("up")
        m["frames"] = b.frame_runs(frames)
    pytcp = small.pytcp(args.quick) if "pytcp" in args.peers.split(",") else None
    b.table(py, k, m)
    b.print_table()
    print()
    small_rows = small.rows(m["small"], m["small_load"], floor, pytcp, m["calls"]["per_s"])
    small.print_table(small_rows, floor)
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, kernel {os.uname().release}, Python "
          f"{sys.version.split()[0]}; {time.monotonic() - t0:.0f} s; python -m tests.bench"
          f"{' --quick' if args.quick else ''}{' --peers ' + args.peers if args.peers else ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "rows": b.rows,
                       "small": small_rows, "cold_turn_us": floor.get("cold_turn_us"),
                       "eventfd_floor_us": floor.get("eventfd_us")}, f, indent=2)
    if args.plot:
        plot(b.rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
