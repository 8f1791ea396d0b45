"""Chaos soak: python -m tests.bench.soak [--minutes M] [--interval S] [--seed N] [--json FILE].

Brings up an instance and keeps traffic flowing against the Linux peer —
200 MB TCP transfers (--bytes) both ways, one after the other, from programs on mkstack
(each checked by sha256 on both ends), a UDP echo stream and ping — while
`launcher.py chaos` kills services at random. Then reports, per service, the
recovery time of each kill (from the kill to the first sign of every kind of
traffic flowing again: a ping reply, a UDP echo, TCP bytes moving in each
transfer that was moving at the kill) as p50 / p99 / max, and the TCP bytes
lost (must be 0). A kill that falls between two transfers of both directions
is measured on ping and UDP only (counted in `kills_between_transfers`): the
gap there is the start of the next transfer's program, not recovery. Not part
of `make test`.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from shared import config
from shared.ipc import endpoints
from tests.system.conftest import ROOT, Stack, new_instance, percentile, reply_times, start_on_mkstack

APPS = os.path.join(ROOT, "tests", "system", "apps")
XFER = os.path.join(APPS, "tcp_xfer.py")
BULK = 200_000_000
XFER_TIMEOUT = 600        # seconds: a 200 MB transfer takes 2-5 s here, even through a kill a second
STALL = 45                # seconds without a byte moving: a transfer is hung (--stall)
VICTIMS = ("driver", "netdev", "ip", "udp", "tcp", "socket_server")
_KILL = re.compile(r" killed (\S+) \(pid \d+\) at ([\d.]+)")


def transfers(stack: Stack, direction: str, size: int, progress: str, stop: threading.Event, runs: list,
              stall: float, diag: str) -> None:
    """Transfers one after the other until ``stop``. One that moves no byte for ``stall`` s is hung:
    the stack's state is kept in ``diag`` (see capture) before it is killed, and it counts whole as lost.
    The state is kept after a failed one too."""
    env = dict(os.environ, XFER_PROGRESS=progress)
    while not stop.is_set():
        p = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                              "-c", stack.config, "run", "--", "python", XFER, direction, stack.peer_addr,
                              "5001", str(size)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        started = time.time()
        while True:
            try:
                out, err = p.communicate(timeout=1.0)
                if p.returncode != 0:     # what the stack looks like just after: logs, counters
                    err += f"\nthe stack's state after it is in {capture(stack, p.pid, diag_dir(diag, direction))}"
                runs.append((p.returncode, out, err))
                break
            except subprocess.TimeoutExpired:
                quiet = time.time() - max(started, os.path.getmtime(progress))
                if quiet < stall and time.time() - started < XFER_TIMEOUT:
                    continue
                where = capture(stack, p.pid, diag_dir(diag, direction))
                p.kill()
                out, err = p.communicate()
                runs.append((-1, out, f"{err}\nno progress for {quiet:.0f} s; the stack's state is in {where}"))
                print(f"  {direction} transfer hung ({quiet:.0f} s without a byte): state kept in {where}", flush=True)
                break


def diag_dir(diag: str, direction: str) -> str:
    return os.path.join(diag, f"{direction}-{time.strftime('%H%M%S')}")


def capture(stack: Stack, app: int, where: str) -> str:
    """Keep what tells where a hung transfer stuck: sockets, counters, services, every Python
    stack (py-spy, when installed) of the application and of each service, and the run directory."""
    os.makedirs(where, exist_ok=True)
    cmds = {"netstat.txt": ["netstat"], "tcp.json": ["show", "tcp"], "stats.json": ["stats", "--json"],
            "status.json": ["status", "--json"], "peer-ss.txt": ["peer", "--", "ss", "-tinm"]}
    for name, args in cmds.items():
        r = stack.launcher(*args, check=False)
        with open(os.path.join(where, name), "w") as f:
            f.write(r.stdout + r.stderr)
    pids = {"app": app, **{f"app-child-{c}": c for c in children(app)}} if app else {}
    try:
        pids.update({s["name"]: s["pid"] for s in stack.status()["services"] if s["pid"]})
    except (ValueError, KeyError, subprocess.CalledProcessError):
        pass
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    with open(os.path.join(where, "stacks.txt"), "w") as f:
        for name, pid in pids.items():
            f.write(f"=== {name} (pid {pid})\n")
            if os.path.exists(spy):
                r = subprocess.run([spy, "dump", "--locals", "--pid", str(pid)], capture_output=True, text=True,
                                   timeout=30)
                f.write(r.stdout + r.stderr)
            else:
                f.write("py-spy is not installed (pip install py-spy)\n")
    run = endpoints.run_dir(config.load(stack.config).run_dir, stack.instance)
    if os.path.isdir(run):
        for sub in ("", "logs"):           # logs, services.json, saved state: files, not sockets
            for name in os.listdir(os.path.join(run, sub)) if os.path.isdir(os.path.join(run, sub)) else ():
                path = os.path.join(run, sub, name)
                if os.path.isfile(path) and os.path.getsize(path) < 64 << 20:
                    shutil.copy(path, os.path.join(where, name))
    return where


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the application under `launcher run`)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    kids = [int(x) for x in out.split()]
    return kids + [g for k in kids for g in children(k)]


def reports_of(server: subprocess.Popen, want: int, within: float = 10.0) -> str:
    """The peer server's output, once it has reported ``want`` transfers (or ``within`` s
    passed), then it is stopped: it reports a get when the client's FIN reaches it, a
    moment after the client itself is done (stopped at once, the last get looked lost)."""
    out, fd, deadline = b"", server.stdout.fileno(), time.monotonic() + within
    while out.count(b'{"dir"') < want and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            out += chunk
    server.kill()
    return out.decode(errors="replace") + server.communicate(timeout=10)[0]


def times_in(path: str) -> list[float]:
    with open(path) as f:
        return [float(line.split()[0]) for line in f if line.strip()]


def progress_in(path: str) -> list[tuple[float, int]]:
    """tcp_xfer's progress lines: (wall time, bytes so far in that transfer)."""
    with open(path) as f:
        return [(float(t), int(n)) for t, n in (line.split()[:2] for line in f if line.strip())]


def tcp_moving_after(progress: list[tuple[float, int]], at: float) -> float | None:
    """The first progress line after ``at`` of a transfer that was moving at ``at``
    (the lines either side belong to one transfer: the count grew). None when
    ``at`` fell between two transfers: the next one's start is a new program
    (~0.3 s of interpreter and launcher), which no kill causes or can shorten."""
    i = bisect.bisect_right(progress, (at, float("inf")))
    if i == 0 or i == len(progress) or progress[i][1] <= progress[i - 1][1]:
        return None
    return progress[i][0]


def first_after(times: list[float], t: float) -> float | None:
    return next((x for x in times if x > t), None)


def bytes_lost(runs: list, hashes: set[str], size: int, unseen: list) -> int:
    """A transfer that failed or whose hash the other end did not see counts whole;
    one that ended well here but that the other end never reported goes in ``unseen``."""
    lost = 0
    for rc, out, _ in runs:
        try:
            r = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            r = {}
        if rc != 0 or r.get("bytes") != size or r.get("sha256") not in hashes:
            lost += size - (r.get("bytes", 0) if r.get("sha256") in hashes else 0)
            if rc == 0:
                unseen.append(f"{r.get('dir')}: ended well here ({r.get('bytes')} bytes, sha256 "
                              f"{str(r.get('sha256'))[:16]}), never reported by the peer's server")
    return lost


def soak(minutes: float, interval: float, seed: int, victims: tuple[str, ...] = VICTIMS,
         stall: float = STALL, size: int = BULK) -> dict:
    stack = Stack(new_instance())
    tmp = tempfile.mkdtemp(prefix="mkstack-soak-")
    logs = {k: os.path.join(tmp, k) for k in ("udp", "get", "put")}
    for path in logs.values():
        open(path, "w").close()
    stack.launcher("up")
    stop = threading.Event()
    runs: dict[str, list] = {"put": [], "get": []}
    procs: list[subprocess.Popen] = []
    try:
        server = stack.peer_popen("python3", XFER, "serve", "5001")
        procs.append(server)
        assert "listening" in server.stdout.readline()
        procs.append(start_on_mkstack(stack, os.path.join(APPS, "udp_echo.py"), "0.0.0.0", "9999"))
        udp = stack.peer_popen("python3", os.path.join(APPS, "udp_stream.py"), stack.addr, "9999", "100000", "50",
                               logs["udp"])
        # ping prints a line per reply: to a file, or it blocks once a pipe is full
        ping_log = open(os.path.join(tmp, "ping"), "w")
        ping = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                                 "-c", stack.config, "peer", "--", "ping", "-D", "-i", "0.02", "-W", "1", stack.addr],
                                stdout=ping_log, stderr=subprocess.STDOUT)
        procs += [udp, ping]
        workers = [threading.Thread(target=transfers, args=(stack, d, size, logs[d], stop, runs[d], stall, tmp))
                   for d in runs]
        for w in workers:
            w.start()
        time.sleep(2.0)
        print(f"chaos over {', '.join(victims)} for {minutes:g} min, a kill every ~{interval:g} s (seed {seed})",
              flush=True)
        chaos = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                                  "-c", stack.config, "chaos", "--services", ",".join(victims), "--interval",
                                  str(interval), "--duration", str(minutes * 60), "--seed", str(seed)],
                                 stdout=subprocess.PIPE, text=True)
        kills = []
        report: list[str] = []         # chaos's own table: kill to the first message through the layer
        for line in chaos.stdout:
            m = _KILL.search(line)
            if m:
                kills.append((m.group(1), float(m.group(2))))
                if len(kills) % 10 == 0:
                    print(f"  {len(kills)} kills so far", flush=True)
            elif report or line.startswith("recovery,"):
                report.append(line.rstrip())
        chaos.wait()
        time.sleep(3.0)
        stop.set()
        for w in workers:
            w.join(timeout=600)
        for p in (udp, ping):
            p.send_signal(signal.SIGINT)
        ping.wait(timeout=30)
        ping_log.close()
        with open(ping_log.name) as f:
            ping_out = f.read()
        udp.communicate(timeout=30)
        want = sum(rc == 0 for rc, _, _ in runs["put"] + runs["get"])
        served = reports_of(server, want)
        if served.count('{"dir"') < want:    # a transfer's end never reached the peer: how things stand
            capture(stack, 0, diag_dir(tmp, "end"))
        skb_used = [c["used"] for c in stack.status()["skb"]["classes"]]
        restarts = stack.restarts()
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        stack.launcher("down", check=False)
    moving = [progress_in(logs[d]) for d in ("get", "put")]
    streams = {"ping": reply_times(ping_out), "udp": times_in(logs["udp"]),
               "tcp": sorted(t for progress in moving for t, _ in progress)}
    per: dict[str, list[float]] = {}
    unrecovered = []
    between = 0                    # kills while no transfer was moving: TCP not measured for them
    slowest = []                   # (recovery, victim, kill time, the stream that came back last)
    for victim, at in kills:
        firsts = {name: first_after(ts, at) for name, ts in streams.items() if name != "tcp"}
        tcp = [t for t in (tcp_moving_after(p, at) for p in moving) if t is not None]
        if tcp:
            firsts["tcp"] = max(tcp)   # every transfer that was moving moved again
        elif first_after(streams["tcp"], at) is None:
            firsts["tcp"] = None
        else:
            between += 1
        missing = [name for name, t in firsts.items() if t is None]
        if missing:
            unrecovered.append(f"{victim} at {at:.3f}: no {', '.join(missing)} after it")
            continue
        last = max(firsts, key=firsts.get)
        per.setdefault(victim, []).append(firsts[last] - at)
        slowest.append((round(firsts[last] - at, 3), victim, round(at, 3), last))
    failures = [f"{d}: exit {rc}: {out.strip()[-300:]} {err.strip()[-700:]}" for d in runs
                for rc, out, err in runs[d] if rc != 0]
    lines = [json.loads(x) for x in served.splitlines() if x.startswith('{"dir"')]
    unseen: list[str] = []
    lost = (bytes_lost(runs["put"], {r["sha256"] for r in lines if r["dir"] == "stored"}, size, unseen)
            + bytes_lost(runs["get"], {r["sha256"] for r in lines if r["dir"] == "served"}, size, unseen))
    failures += unseen
    moved = sum(size for rc, _, _ in runs["put"] + runs["get"] if rc == 0)
    return {"minutes": minutes, "interval": interval, "seed": seed, "victims": list(victims), "bytes": size,
            "kills": len(kills),
            "unrecovered": unrecovered,
            "kills_between_transfers": between,
            "chaos_report": report, "slowest": sorted(slowest, reverse=True)[:15],
            "kill_times": [[v, round(at, 3)] for v, at in kills],
            "restarts": restarts, "transfers": {d: len(r) for d, r in runs.items()}, "bytes_moved": moved,
            "bytes_lost": lost, "skb_used_after": skb_used, "failures": failures, "logs": tmp,
            "streams": {name: [round(ts[0], 3), round(ts[-1], 3), len(ts)] if ts else []
                        for name, ts in streams.items()},
            "recovery_s": {v: {"n": len(xs), "p50": round(statistics.median(xs), 3),
                               "p99": round(percentile(xs, 99), 3), "max": round(max(xs), 3)}
                           for v, xs in sorted(per.items())}}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=2.0, help="mean seconds between kills")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--services", default=",".join(VICTIMS), help="comma-separated victims (default: all six)")
    ap.add_argument("--bytes", type=int, default=BULK, metavar="N",
                    help="bytes per transfer (small ones: many more transfer starts and ends under the kills)")
    ap.add_argument("--stall", type=float, default=STALL, metavar="S",
                    help="a transfer that moves no byte for S s is hung: the stack's state is kept, it is killed")
    ap.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    ap.add_argument("--readme", metavar="FILE", help="write the figures into FILE's soak block (README.md)")
    args = ap.parse_args()
    if args.minutes <= 0 or args.interval <= 0 or args.stall <= 0 or args.bytes <= 0:
        ap.error("--minutes, --interval, --stall and --bytes must be positive")
    victims = tuple(v for v in args.services.split(",") if v)
    unknown = set(victims) - set(VICTIMS)
    if unknown or not victims:
        ap.error(f"--services: not a service: {', '.join(sorted(unknown)) or '(none given)'}")
    r = soak(args.minutes, args.interval, args.seed, victims, args.stall, args.bytes)
    print(f"\n{r['kills']} kills in {r['minutes']:g} min; {sum(r['transfers'].values())} transfers of "
          f"{r['bytes'] / 1e6:g} MB, {r['bytes_moved'] / 1e9:.1f} GB moved, bytes lost: {r['bytes_lost']}; "
          f"skb slots in use after: {r['skb_used_after']}; kills between transfers (TCP not measured): "
          f"{r['kills_between_transfers']}")
    print(f"{'service':<14}{'kills':>6}{'p50 s':>9}{'p99 s':>9}{'max s':>9}")
    for v, s in r["recovery_s"].items():
        print(f"{v:<14}{s['n']:>6}{s['p50']:>9.3f}{s['p99']:>9.3f}{s['max']:>9.3f}")
    print("slowest recoveries (s, service, kill time, the traffic that came back last):",
          "; ".join(f"{t} {v} @{at} {last}" for t, v, at, last in r["slowest"][:8]))
    for line in r["unrecovered"]:
        print(f"unrecovered: {line}")
    for line in r["failures"]:
        print(f"failed transfer: {line}")
    print("\n".join(r["chaos_report"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    if args.readme:
        write_readme(args.readme, r)
    return 0 if r["bytes_lost"] == 0 and not r["unrecovered"] else 1


README_MARK = ("<!-- soak: written by python -m tests.bench.soak --readme -->", "<!-- /soak -->")


def write_readme(path: str, r: dict) -> None:
    """Replace the block between README_MARK in ``path`` with this run's figures."""
    unrecovered = f"; kills after which some traffic never came back: {len(r['unrecovered'])}" \
        if r["unrecovered"] else ""
    over = "all six services" if len(r["victims"]) == len(VICTIMS) else ", ".join(r["victims"])
    rows = [f"`make soak` of {time.strftime('%Y-%m-%d')}: {r['minutes']:g} min, a kill every ~{r['interval']:g} s "
            f"over {over} (seed {r['seed']}): {r['kills']} kills, "
            f"{sum(r['transfers'].values())} transfers of {r['bytes'] / 1e6:g} MB ({r['bytes_moved'] / 1e9:.1f} GB), "
            f"**{r['bytes_lost']} bytes lost**, skb slots in use after: {r['skb_used_after']}{unrecovered}; "
            f"{r['kills_between_transfers']} kills fell between transfers in both directions (TCP not measured).",
            "", "| service | kills | recovery p50 | p99 | max (kill to ping, UDP echo and every moving TCP transfer "
                "all flowing again, s) |",
            "|---|---|---|---|---|"]
    rows += [f"| {v} | {x['n']} | {x['p50']:.3f} | {x['p99']:.3f} | {x['max']:.3f} |"
             for v, x in r["recovery_s"].items()]
    if r["chaos_report"]:
        rows += ["", "```", *r["chaos_report"], "```"]
    with open(path) as f:
        text = f.read()
    start, end = text.find(README_MARK[0]), text.find(README_MARK[1])
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no {README_MARK[0]} ... {README_MARK[1]} block to write into")
    with open(path, "w") as f:
        f.write(text[:start + len(README_MARK[0])] + "\n" + "\n".join(rows) + "\n" + text[end:])


if __name__ == "__main__":
    sys.exit(main())
