"""Small messages: python -m tests.bench.small [--quick] [--peers pytcp] [--json FILE].

Each workload runs one message at a time from the Linux peer, with the client
programs of PyTCP's anchor (../shared/anchors/pytcp: ping, linux_peer.py rr,
connrate, udp) against the anchor's plain stdlib echo servers run on mkstack
through `launcher.py run`. Beside each figure stand, measured in the same run:
  - the floor: a ring of bare pyzmq processes with the workload's hop count
    (tests/bench/relay.py: 4 for ping; 10 for an echo through driver, netdev,
    ip, udp/tcp, socket_server, the application and back); for ping also the
    4-hop ring with its laps 10 ms apart, as ping's packets are (a process that
    slept that long runs its next turn several times slower on this VM), and
  - PyTCP (with --peers pytcp: the anchor's bench_pytcp.sh with its quick knobs).
Under load (UDP echoes with 64 in flight, TCP request/response over 32
connections) the rows give the CPU seconds of all services per message.
Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack

from tests.bench import relay
from tests.bench.procs import json_line, service_cpu
from tests.system.conftest import ROOT, Stack, new_instance, ping_rtts

ANCHOR = os.path.realpath(os.path.join(ROOT, "..", "shared", "anchors", "pytcp"))
APPS = os.path.join(ROOT, "tests", "system", "apps")
UDP_PORT, TCP_PORT = 7601, 7602
LOAD_UDP_WINDOW, LOAD_TCP_CONNS = 64, 32
PING_GAP = 0.01         # ping -i 0.01: every layer sleeps 10 ms between two echoes


def progress(what: str) -> None:
    print(f"[small] {what}", file=sys.stderr, flush=True)


class Servers:
    """The anchor's echo servers, running on mkstack until the block ends."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Servers":
        base = [sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", self.stack.instance,
                "-c", self.stack.config, "run", "--", "python"]
        for prog, port in (("udp_echo.py", UDP_PORT), ("tcp_echo.py", TCP_PORT)):
            p = subprocess.Popen([*base, os.path.join(ANCHOR, prog), str(port)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            self.procs.append(p)
            line = p.stderr.readline()
            if "READY" not in line:
                raise RuntimeError(f"{prog} on mkstack did not start: {line}{p.stderr.read()}")
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def peer_json(stack: Stack, *args: str, timeout: float = 300) -> dict:
    return json_line(stack.peer("python3", *args, timeout=timeout).stdout)


def one_at_a_time(stack: Stack, quick: bool) -> dict:
    n_ping, n_rr, n_conn, n_udp = (100, 300, 60, 300) if quick else (200, 2000, 300, 2000)
    peer = os.path.join(ANCHOR, "linux_peer.py")
    out = {}
    progress("ping, one at a time")
    out["ping_ms"] = statistics.median(ping_rtts(stack.peer("ping", "-c", str(n_ping), "-i", str(PING_GAP), "-n",
                                                            stack.addr).stdout))
    progress("TCP 1-byte request/response, one at a time")
    out["rr"] = peer_json(stack, peer, "rr", "--dst", stack.addr, "--port", str(TCP_PORT), "--n", str(n_rr))
    progress("TCP connect + request + close, one at a time")
    out["conn"] = peer_json(stack, peer, "connrate", "--dst", stack.addr, "--port", str(TCP_PORT),
                            "--n", str(n_conn))
    progress("UDP 64 B echoes, one at a time")
    out["udp"] = peer_json(stack, peer, "udp", "--dst", stack.addr, "--port", str(UDP_PORT), "--n", str(n_udp),
                           "--size", "64")
    return out


def under_load(stack: Stack, quick: bool) -> dict:
    secs = 3.0 if quick else 6.0
    out = {}
    progress(f"UDP 64 B echoes, {LOAD_UDP_WINDOW} in flight")
    cpu0 = service_cpu(stack)
    r = peer_json(stack, os.path.join(APPS, "udp_window.py"), stack.addr, str(UDP_PORT), "64", str(secs),
                  str(LOAD_UDP_WINDOW))
    out["udp"] = {"per_s": r["echoes_per_s"], "cpu_us": (service_cpu(stack) - cpu0) / max(1, r["echoes"]) * 1e6}
    progress(f"TCP request/response over {LOAD_TCP_CONNS} connections")
    cpu0 = service_cpu(stack)
    r = peer_json(stack, os.path.join(APPS, "tcp_rr_many.py"), stack.addr, str(TCP_PORT), str(LOAD_TCP_CONNS),
                  str(secs))
    out["rr"] = {"per_s": r["rt_per_s"], "cpu_us": (service_cpu(stack) - cpu0) / max(1, r["round_trips"]) * 1e6}
    return out


def floors(quick: bool) -> dict:
    """What the rows stand against, measured before the stack comes up: the relay ring's
    lap by hop count (4, 10), the 4-hop lap spaced as ping's packets ("4_spaced"), and,
    printed under the table, coldturn.py's figures ("cold_turn_us") and the same rings
    without ZeroMQ ("eventfd_us": what another transport between the layers could cost)."""
    secs = 1.5 if quick else 3.0
    out = {}
    for hops in (4, 10):
        progress(f"ZeroMQ relay floor, {hops} hops")
        out[hops] = relay.ring(hops, secs)["median_us"]
    progress(f"ZeroMQ relay floor, 4 hops, laps {PING_GAP * 1000:.0f} ms apart as ping's")
    out["4_spaced"] = relay.ring(4, 2 * secs, PING_GAP)["median_us"]
    progress("the same rings over eventfds and shared memory, no ZeroMQ")
    out["eventfd_us"] = {"4": relay.eventfd_ring(4, secs)["median_us"],
                         "4_spaced": relay.eventfd_ring(4, 2 * secs, PING_GAP)["median_us"],
                         "10": relay.eventfd_ring(10, secs)["median_us"]}
    progress("a Python turn, back to back and after sleeping (tests/bench/coldturn.py)")
    p = subprocess.run([sys.executable, "-m", "tests.bench.coldturn"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, check=True)
    out["cold_turn_us"] = json_line(p.stdout)
    return out


def pytcp(quick: bool) -> dict:
    """The anchor's own run (its quick knobs unless a full run is asked for): its medians."""
    progress("PyTCP: ../shared/anchors/pytcp/bench_pytcp.sh (about a minute with the quick knobs)")
    env = dict(os.environ)
    env.update({"RUNS": "1", "BYTES": "2000000", "LOSS_CAP": "10", "PING_N": "100", "RR_N": "500",
                "CONN_N": "60", "UDP_N": "500"} if quick else
               {"RUNS": "1", "BYTES": "2000000", "LOSS_CAP": "10", "PING_N": "200", "RR_N": "2000",
                "CONN_N": "300", "UDP_N": "2000"})
    p = subprocess.run(["bash", os.path.join(ANCHOR, "bench_pytcp.sh")], capture_output=True, text=True, env=env,
                       timeout=900)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("JSON ")), None)
    if line is None:
        raise RuntimeError(f"bench_pytcp.sh gave no JSON line (rc {p.returncode}): {p.stderr[-2000:]}")
    m = json.loads(line[5:])["metrics"]

    def med(key: str) -> float | None:
        return (m.get(key) or {}).get("median")
    return {"ping_ms": med("ping_direct_median_ms") or med("ping_pytcp_median_ms"),
            "rr_us": med("rr_rtt_median_us"), "conn_per_s": med("conn_per_s"), "udp_per_s": med("udp64_per_s"),
            "udp_us": med("udp64_rtt_median_us")}


def rows(m: dict, load: dict, floor: dict, py: dict | None, calls: float | None = None) -> list[dict]:
    """The table: one row per workload, the floor (same hop count) and PyTCP beside it."""
    py = py or {}
    r = [
        {"workload": "ping median, one at a time", "unit": "us", "mkstack": m["ping_ms"] * 1000,
         "floor": floor[4], "pytcp": py["ping_ms"] * 1000 if py.get("ping_ms") else None, "better": "lower"},
        {"workload": f"  against a floor {PING_GAP * 1000:.0f} ms apart", "unit": "us", "mkstack": m["ping_ms"] * 1000,
         "floor": floor["4_spaced"], "pytcp": None, "better": "lower"},
        {"workload": "TCP 1-byte request/response median", "unit": "us", "mkstack": m["rr"]["rtt_us_median"],
         "floor": floor[10], "pytcp": py.get("rr_us"), "better": "lower"},
        {"workload": "TCP connect + request + close", "unit": "/s", "mkstack": m["conn"]["conn_per_s"],
         "floor": None, "pytcp": py.get("conn_per_s"), "better": "higher"},
        {"workload": "UDP 64 B echo median", "unit": "us", "mkstack": m["udp"]["rtt_us_median"],
         "floor": floor[10], "pytcp": py.get("udp_us"), "better": "lower"},
        {"workload": "UDP 64 B echoes, one at a time", "unit": "/s", "mkstack": m["udp"]["rt_per_s"],
         "floor": 1e6 / floor[10], "pytcp": py.get("udp_per_s"), "better": "higher"},
        {"workload": f"UDP 64 B echoes, {LOAD_UDP_WINDOW} in flight", "unit": "/s", "mkstack": load["udp"]["per_s"],
         "floor": None, "pytcp": None, "better": "higher"},
        {"workload": "  CPU of all services per echo", "unit": "us", "mkstack": load["udp"]["cpu_us"],
         "floor": None, "pytcp": None, "better": "lower"},
        {"workload": f"TCP request/response, {LOAD_TCP_CONNS} connections", "unit": "/s",
         "mkstack": load["rr"]["per_s"], "floor": None, "pytcp": None, "better": "higher"},
        {"workload": "  CPU of all services per round trip", "unit": "us", "mkstack": load["rr"]["cpu_us"],
         "floor": None, "pytcp": None, "better": "lower"},
    ]
    if calls is not None:
        r.append({"workload": "socket calls (getsockname)", "unit": "/s", "mkstack": calls, "floor": None,
                  "pytcp": None, "better": "higher"})
    return r


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _ratio(r: dict, other: str) -> str:
    """How many times better than ``other`` (above 1: mkstack ahead); for the floor,
    how many floors the figure costs."""
    a, b = r["mkstack"], r[other]
    if a is None or not b:
        return "-"
    if other == "floor":
        return f"{(a / b if r['better'] == 'lower' else b / a):.2f}"
    return f"{(b / a if r['better'] == 'lower' else a / b):.2f}x"


def print_table(table: list[dict], floor: dict | None = None) -> None:
    print(f"{'small messages':<44}{'unit':>5}{'mkstack':>10}{'floor':>9}{'PyTCP':>9}{'/floor':>8}{'vs PyTCP':>10}")
    for r in table:
        print(f"{r['workload']:<44}{r['unit']:>5}{_fmt(r['mkstack']):>10}{_fmt(r['floor']):>9}"
              f"{_fmt(r['pytcp']):>9}{_ratio(r, 'floor'):>8}{_ratio(r, 'pytcp'):>10}")
    cold = (floor or {}).get("cold_turn_us")
    if cold:
        print("the same Python turn (us), back to back / after 1 ms asleep / after 10 ms: "
              + " / ".join(str(cold[k]) for k in ("0ms", "1ms", "10ms")))
    efd = (floor or {}).get("eventfd_us")
    if efd:
        print(f"the floor's rings without ZeroMQ (eventfd + shared memory, us): 4 hops {efd['4']} "
              f"({efd['4_spaced']} {PING_GAP * 1000:.0f} ms apart), 10 hops {efd['10']}")


def run(stack: Stack, quick: bool) -> tuple[dict, dict]:
    with Servers(stack):
        time.sleep(0.5)
        return one_at_a_time(stack, quick), under_load(stack, quick)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.small")
    ap.add_argument("--quick", action="store_true", help="fewer round trips (about a minute)")
    ap.add_argument("--peers", default="", help="'pytcp': also run PyTCP's anchor in the same run")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the benchmarks create namespaces and TAPs: run as root")
    t0 = time.monotonic()
    floor = floors(args.quick)
    with ExitStack() as es:
        stack = Stack(new_instance())
        es.callback(stack.launcher, "down", check=False)
        progress("mkstack: up")
        stack.launcher("up")
        m, load = run(stack, args.quick)
    py = pytcp(args.quick) if "pytcp" in args.peers.split(",") else None
    table = rows(m, load, floor, py)
    print_table(table, floor)
    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, kernel {os.uname().release}; "
          f"{time.monotonic() - t0:.0f} s; python -m tests.bench.small{' --quick' if args.quick else ''}"
          f"{' --peers ' + args.peers if args.peers else ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d"), "rows": table, "cold_turn_us": floor.get("cold_turn_us"),
                       "eventfd_floor_us": floor.get("eventfd_us")}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
