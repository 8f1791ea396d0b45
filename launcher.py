#!/usr/bin/env python3
"""mkstack launcher: the CLI.

``up`` prepares the host side (peer namespace, persistent TAP), starts the
supervisor (services/supervisor.py) as a daemon and waits until every service
answers; the other commands talk to the supervisor and the services.

Why one file: it is the CLI only, one short function per command (17 of them) and
their parser; the supervisor is services/supervisor.py, the demo's programs are in
shared/demo/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(ROOT, "shared", "demo")      # the programs the demo runs
sys.path.insert(0, ROOT)

import zmq  # noqa: E402

from services.supervisor import SHUTDOWN_MARK, start_supervisor  # noqa: E402
from shared import host, mib  # noqa: E402
from shared.capture import RX, PcapWriter, summary  # noqa: E402
from shared.config import Config, ConfigError, check_instance, load  # noqa: E402
from shared.ipc import endpoints  # noqa: E402
from shared.ipc.codec import decode_capture  # noqa: E402
from shared.ipc.control import call  # noqa: E402
from shared.ipc.messages import (CTL_ADDR, CTL_CAPTURE, CTL_FILTER, CTL_IMPAIR, CTL_ROUTE,  # noqa: E402
                                 CTL_SHOW, CTL_STATS, SUP_KILL, SUP_RESTART, SUP_SHUTDOWN, SUP_STATUS)

DEFAULT_CONFIG = os.path.join(ROOT, "configs", "default.toml")


# -- CLI ----------------------------------------------------------------------
def _rundir(cfg: Config, instance: str) -> str:
    return endpoints.run_dir(cfg.run_dir, instance)


def _sup(cfg: Config, instance: str) -> str:
    return endpoints.control(_rundir(cfg, instance), "launcher")


def _status(cfg: Config, instance: str, timeout: float = 2.0) -> dict | None:
    if not os.path.exists(_rundir(cfg, instance)):
        return None
    try:
        return call(_sup(cfg, instance), SUP_STATUS, timeout=timeout)  # type: ignore[return-value]
    except OSError as exc:
        if not isinstance(exc, TimeoutError):
            print(f"launcher.py: supervisor of {instance!r}: {exc}", file=sys.stderr)
        return None


def _print_status(st: dict) -> None:
    print(f"instance {st['instance']} (supervisor pid {st['pid']})")
    print(f"{'SERVICE':<14}{'PID':>8}  {'STATE':<10}{'RESTARTS':>9}{'UPTIME':>10}{'STANDBY':>9}  LAST EXIT")
    for s in st["services"]:
        print(f"{s['name']:<14}{s['pid'] or '-':>8}  {s['state']:<10}{s['restarts']:>9}"
              f"{s['uptime']:>9.1f}s{s.get('standby') or '-':>9}  {s['last_exit'] or '-'}")
    print(f"{'DEVICE':<8}{'ADDRESS':<18}{'MAC':<19}{'PEER NETNS':<22}PEER")
    for d in st["devices"]:
        print(f"{d['name']:<8}{d['addr']:<18}{d['mac']:<19}{d['peer_netns']:<22}{d['peer_addr']}")
        for a in d.get("addr6", []):
            print(f"{'':<8}{a}" + (f"  (peer {d['peer_addr6']})" if a == d["addr6"][0] else ""))
    used = ", ".join(f"{c['used']}/{c['slots']} x {c['slot_size']}B" for c in st["skb"]["classes"])
    print(f"skb slots in use: {used}")


def cmd_up(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    st = _status(cfg, instance)
    if st is not None:
        print(f"mkstack instance {instance!r} is already running")
        _print_status(st)
        return 0
    # a previous run that died uncleanly: clear it before starting over
    host.kill_instance(instance)
    host.remove_instance_files(cfg, instance)
    rundir = _rundir(cfg, instance)
    os.makedirs(cfg.run_dir, mode=0o755, exist_ok=True)
    os.makedirs(rundir, mode=0o700)
    os.chmod(rundir, 0o700)
    public = endpoints.public_dir(rundir)           # the syscall endpoint and hello socket: every user's
    os.makedirs(public, mode=0o755)
    os.chmod(public, 0o755)
    for dev in cfg.devices:
        host.setup_device(dev, instance)
    start_supervisor(cfg, instance)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        st = _status(cfg, instance, timeout=0.5)
        if st and all(s["state"] == "running" for s in st["services"]):
            _print_status(st)
            return 0
        time.sleep(0.1)
    print(f"mkstack: the stack did not come up within {args.timeout:.0f}s; see "
          f"'launcher.py logs NAME' (logs in {rundir}/logs)", file=sys.stderr)
    return 1


def cmd_down(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    rundir = _rundir(cfg, instance)
    if os.path.isdir(rundir):        # no watchdog starts a supervisor while we take it all down
        open(os.path.join(rundir, SHUTDOWN_MARK), "w").close()
    if _status(cfg, instance, timeout=1.0) is not None:
        try:
            call(_sup(cfg, instance), SUP_SHUTDOWN, timeout=2.0)
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while host.instance_pids(instance) and time.monotonic() < deadline:
            time.sleep(0.05)
    host.kill_instance(instance)
    for dev in cfg.devices:
        host.teardown_device(dev, instance)
    host.remove_instance_files(cfg, instance)
    left = host.leftovers(cfg, instance)
    if left:
        print(f"mkstack: could not remove: {', '.join(left)}", file=sys.stderr)
        return 1
    print(f"mkstack instance {instance!r} is down")
    return 0


def _require(cfg: Config, instance: str) -> dict:
    st = _status(cfg, instance)
    if st is None:
        print(f"mkstack instance {instance!r} is not running", file=sys.stderr)
        raise SystemExit(1)
    return st


def cmd_status(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    st = _status(cfg, instance)
    if st is None:
        if args.json:
            print(json.dumps({"instance": instance, "running": False, "services": [], "devices": []}))
        else:
            print(f"mkstack instance {instance!r} is not running")
        return 1
    if args.json:
        print(json.dumps({**st, "running": True}, indent=2))
    else:
        _print_status(st)
    return 0


def _known(st: dict, name: str) -> None:
    names = [s["name"] for s in st["services"]]
    if name not in names:
        print(f"launcher.py: unknown service {name!r} (one of: {', '.join(names)})", file=sys.stderr)
        raise SystemExit(2)


def cmd_kill(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    st = _require(cfg, instance)
    _known(st, args.name)
    sig = args.signal.upper()
    try:
        signum = int(sig) if sig.isdigit() else signal.Signals[sig if sig.startswith("SIG") else f"SIG{sig}"].value
    except (KeyError, ValueError):
        print(f"launcher.py: --signal: unknown signal {args.signal!r}", file=sys.stderr)
        return 2
    r = call(_sup(cfg, instance), SUP_KILL, args.name, int(signum))
    print(f"sent {r['signal']} to {r['name']} (pid {r['pid']})")  # type: ignore[index]
    return 0


def cmd_chaos(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """Fault injection over time: SIGKILL services at random, printing what was killed when."""
    import random
    st = _require(cfg, instance)
    names = [s["name"] for s in st["services"]]
    victims = args.services.split(",") if args.services else names
    for v in victims:
        if v not in names:
            print(f"launcher.py chaos: --services: unknown service {v!r} (one of: {', '.join(names)})",
                  file=sys.stderr)
            return 2
    if args.interval <= 0 or args.duration <= 0:
        print("launcher.py chaos: --interval and --duration must be positive", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    end = time.monotonic() + args.duration
    kills = 0
    recovery: dict[str, list[float]] = {}
    last: tuple[str, int] | None = None
    while True:
        wait = rng.uniform(0.5, 1.5) * args.interval
        if time.monotonic() + wait > end:
            break
        time.sleep(wait)
        if last is not None:
            _recovered(cfg, instance, *last, recovery)
        victim = rng.choice(victims)
        try:
            r = call(_sup(cfg, instance), SUP_KILL, victim, int(signal.SIGKILL))
            kills += 1
            now = time.time()
            print(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now * 1000) % 1000:03d} killed {victim} "
                  f"(pid {r['pid']}) at {now:.3f}", flush=True)  # type: ignore[index]
            last = (victim, r["pid"])  # type: ignore[index]
        except OSError as exc:      # still restarting from the last kill
            print(f"{time.strftime('%H:%M:%S')} {victim}: {exc.strerror or exc}", flush=True)
            last = None
    if last is not None:
        time.sleep(0.5)
        _recovered(cfg, instance, *last, recovery)
    print(f"chaos: {kills} kills in {args.duration:.0f}s (seed {args.seed})")
    print("recovery, kill to the first message through the new incarnation (ms; no figure: no traffic reached it)")
    print(f"  {'service':<14}{'kills':>6}{'p50':>8}{'p99':>8}{'max':>8}")
    for name, xs in sorted(recovery.items()):
        xs.sort()
        pct = [xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] for q in (0.5, 0.99)] if xs else []
        row = "".join(f"{x:>8.1f}" for x in [*pct, xs[-1]]) if xs else f"{'-':>8}" * 3
        print(f"  {name:<14}{len(xs):>6}{row}")
    return 0


def _recovered(cfg: Config, instance: str, victim: str, pid: int, out: dict[str, list[float]]) -> None:
    """The supervisor's part of a restart (skb reclaim, promotion) and the new
    incarnation's own (promotion to its first message), if it took one yet."""
    out.setdefault(victim, [])
    try:
        st = call(_sup(cfg, instance), SUP_STATUS, timeout=1.0)
        svc = next(x for x in st["services"] if x["name"] == victim)  # type: ignore[index]
        if svc["pid"] in (None, pid):
            return                       # not back yet: counted as a kill without a figure
        ctl = endpoints.control(_rundir(cfg, instance), victim)
        phases = call(ctl, CTL_STATS, timeout=1.0)["start_phases"]  # type: ignore[index]
    except (OSError, KeyError, StopIteration, TypeError):
        return
    if "first_msg_ms" in phases:
        ls = svc.get("last_start", {})
        out[victim].append(ls.get("reclaim_ms", 0) + ls.get("spawn_ms", 0) + phases["first_msg_ms"])


def cmd_restart(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    st = _require(cfg, instance)
    _known(st, args.name)
    r = call(_sup(cfg, instance), SUP_RESTART, args.name, timeout=10)
    print(f"restarted {r['name']} (pid {r['pid']})")  # type: ignore[index]
    return 0


def cmd_logs(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    rundir = _rundir(cfg, instance)
    name = args.name
    path = os.path.join(rundir, "launcher.log" if name == "launcher" else f"logs/{name}.log")
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except FileNotFoundError:
        print(f"launcher.py: no log for {name!r} in instance {instance!r}", file=sys.stderr)
        return 1
    sys.stdout.writelines(lines[-args.lines:])
    return 0


def cmd_peer(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("launcher.py peer: give a command after --", file=sys.stderr)
        return 2
    dev = cfg.device(args.dev) if args.dev else cfg.devices[0]
    ns = dev.netns(instance)
    if not host.netns_exists(ns):
        print(f"launcher.py peer: namespace {ns} does not exist (is the instance up?)", file=sys.stderr)
        return 1
    os.execvp("ip", ["ip", "netns", "exec", ns, *cmd])
    return 1  # not reached


def cmd_run(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """Run a program with the stdlib socket module replaced by mkstack's client library."""
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        print("launcher.py run: give a command after --", file=sys.stderr)
        return 2
    if os.geteuid() == 0:
        _require(cfg, instance)
    elif not os.path.exists(endpoints.hello(_rundir(cfg, instance))):
        # the control plane is root's; any user can see whether the public endpoints are there
        print(f"mkstack instance {instance!r} is not running", file=sys.stderr)
        return 1
    env = dict(os.environ)
    site = os.path.join(ROOT, "shared", "client", "site")
    # the client library needs pyzmq and msgpack: the venv's python first on PATH,
    # and its packages importable by any python of the same version
    packages = os.path.dirname(os.path.dirname(zmq.__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, ROOT, packages, env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "/usr/bin:/bin")))
    env["MKSTACK_ENDPOINT"] = endpoints.syscalls(_rundir(cfg, instance))
    env["MKSTACK_IFACES"] = ",".join(["1:lo", *(f"{d.ifindex}:{d.name}" for d in cfg.devices)])
    try:
        os.execvpe(cmd[0], cmd, env)
    except OSError as exc:
        print(f"launcher.py run: {cmd[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    return 1  # not reached


def cmd_netstat(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    _require(cfg, instance)
    rows = call(endpoints.control(_rundir(cfg, instance), "socket_server"), CTL_SHOW, "sockets")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'Proto':<6}{'Recv-Q':>7}{'Send-Q':>7}  {'Local Address':<22}{'Foreign Address':<22}{'State':<8}PID/fd")
    for r in rows:  # type: ignore[union-attr]
        print(f"{r['proto']:<6}{r['recv_q']:>7}{r['send_q']:>7}  {r['local']:<22}{r['remote']:<22}"
              f"{r['state']:<8}{r['pid']}/{r['fd']}")
    return 0


def cmd_impair(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """Fault injection on the wire: netdev drops a device's frames at random."""
    _require(cfg, instance)
    for v, name in ((args.rx_loss, "--rx-loss"), (args.tx_loss, "--tx-loss")):
        if not 0 <= v < 1:
            print(f"launcher.py impair: {name}: {v} must be in [0, 1)", file=sys.stderr)
            return 2
    r = call(endpoints.control(_rundir(cfg, instance), "netdev"), CTL_IMPAIR, args.dev,
             float(args.rx_loss), float(args.tx_loss), int(args.seed))
    print(f"{r['dev']}: dropping {r['rx_loss']:.1%} of received and "  # type: ignore[index]
          f"{r['tx_loss']:.1%} of sent frames")  # type: ignore[index]
    return 0


def cmd_route(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """route [show] | route add DST [via GW] [dev DEV] | route del DST [dev DEV] (as `ip route`)."""
    _require(cfg, instance)
    rundir = _rundir(cfg, instance)
    words = args.words or ["show"]
    if words[0] == "show":
        _print_routes(call(endpoints.control(rundir, "ip"), CTL_SHOW, "routes"))  # type: ignore[arg-type]
        return 0
    if words[0] not in ("add", "del") or len(words) < 2:
        print("launcher.py route: add|del DST [via GW] [dev DEV], or show", file=sys.stderr)
        return 2
    opts = dict(zip(words[2::2], words[3::2]))
    if len(words) % 2 or set(opts) - {"via", "dev"}:
        print(f"launcher.py route: cannot parse {' '.join(words[2:])!r} (want via GW, dev DEV)", file=sys.stderr)
        return 2
    # ip first (it decides and keeps the table); tcp and the socket server choose sources from their copy
    for svc in ("ip", "tcp", "socket_server"):
        try:
            call(endpoints.control(rundir, svc), CTL_ROUTE, words[0], words[1], opts.get("via"), opts.get("dev"))
        except OSError as exc:
            print(f"launcher.py route: {svc}: {exc.strerror or exc}", file=sys.stderr)
            if svc == "ip":
                return 2
    return 0


def _print_routes(rows: list[dict]) -> None:
    for r in rows:
        via = f" via {r['via']}" if r["via"] else ""
        src = f" src {r['src']}" if r["src"] else ""          # IPv6 routes: the source follows the gateway
        print(f"{r['dst']}{via} dev {r['dev']}{src}" + (f" metric {r['metric']}" if r["metric"] else ""))


def cmd_addr(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """addr [show] | addr add|del ADDR/PLEN dev DEV (as `ip addr`)."""
    _require(cfg, instance)
    rundir = _rundir(cfg, instance)
    words = args.words or ["show"]
    if words[0] != "show":
        if words[0] not in ("add", "del") or len(words) != 4 or words[2] != "dev":
            print("launcher.py addr: add|del ADDR/PLEN dev DEV, or show", file=sys.stderr)
            return 2
        # ip first (it answers ARP for it); the others accept it as a local address
        for svc in ("ip", "udp", "tcp", "socket_server"):
            try:
                call(endpoints.control(rundir, svc), CTL_ADDR, words[0], words[1], words[3])
            except OSError as exc:
                print(f"launcher.py addr: {svc}: {exc.strerror or exc}", file=sys.stderr)
                if svc == "ip":
                    return 2
        return 0
    rows = call(endpoints.control(rundir, "ip"), CTL_SHOW, "addrs")
    for r in rows:  # type: ignore[union-attr]
        print(f"{r['dev']:<8} inet {r['addr']}")
    return 0


def cmd_filter(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """filter add CHAIN [match ...] -j VERDICT | del CHAIN N | list [--json] | flush."""
    _require(cfg, instance)
    ctl = endpoints.control(_rundir(cfg, instance), "ip")
    words = list(args.words)
    as_json = "--json" in words
    if as_json:
        words.remove("--json")
    try:
        result = call(ctl, CTL_FILTER, args.op, words)
    except OSError as exc:
        print(f"launcher.py filter: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if args.op != "list" or as_json:
        print(json.dumps(result, indent=2) if as_json else json.dumps(result))
        return 0
    print(f"{'CHAIN':<12} {'NUM':>3} {'PKTS':>8} {'BYTES':>10}  RULE")
    for r in result:  # type: ignore[union-attr]
        print(f"{r['chain']:<12} {r['num']:>3} {r['packets']:>8} {r['bytes']:>10}  {r['rule']}")
    return 0


CAPTURE_LEASE = 3.0     # seconds netdev keeps tapping a device unless the capture renews it


def cmd_capture(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """Tap a device in netdev: one line per frame, or a pcap file with -w."""
    _require(cfg, instance)
    rundir = _rundir(cfg, instance)
    ctl = endpoints.control(rundir, "netdev")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoints.capture(rundir))
    time.sleep(0.2)          # let the subscription reach netdev before it publishes
    ifindex = call(ctl, CTL_CAPTURE, args.dev, CAPTURE_LEASE)["ifindex"]  # type: ignore[index]
    out = open(args.write, "wb") if args.write else None
    writer = PcapWriter(out) if out else None
    n, now = 0, time.monotonic()
    renew, report = now + 1, now + 1
    deadline = now + args.timeout if args.timeout else None
    # SIGINT ends the capture through a flag: a KeyboardInterrupt raised inside a zmq call
    # can be lost there (the capture then ran on, seen once in a loaded test run)
    stop: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print(f"capturing on {args.dev}" + (f" into {args.write}" if out else ""), file=sys.stderr, flush=True)
    try:
        while not stop and not (args.count and n >= args.count) and not (deadline and now >= deadline):
            if sub.poll(100):
                ifx, direction, ts, frame = decode_capture(sub.recv())
                if ifx == ifindex:
                    n += 1
                    if writer:
                        writer.write(ts, frame)
                    else:
                        stamp = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
                        print(f"{stamp} {args.dev} {'In ' if direction == RX else 'Out'} {summary(frame)}",
                              flush=True)
            now = time.monotonic()
            if now >= renew:
                renew = now + 1
                call(ctl, CTL_CAPTURE, args.dev, CAPTURE_LEASE)   # a restarted netdev gets it again
            if out and now >= report:
                report = now + 1
                print(f"{n} packets", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        try:
            call(ctl, CTL_CAPTURE, args.dev, 0.0)
        except OSError:
            pass
        if out:
            out.close()
        sub.close(0)
    print(f"{n} packets captured", file=sys.stderr)
    return 0


SHOW_FROM = {"devices": "netdev", "neigh": "ip", "routes": "ip", "addrs": "ip", "protocols": "ip", "ports": "udp",
             "tcp": "tcp"}   # which service answers each `show`


def cmd_show(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    _require(cfg, instance)
    rundir = _rundir(cfg, instance)
    svc = SHOW_FROM[args.what]
    rows = call(endpoints.control(rundir, svc), CTL_SHOW, args.what)
    print(json.dumps(rows, indent=2))
    return 0


def cmd_stats(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """The stack's counters: one nstat-style MIB table (non-zero rows; --all for every
    one), per-service detail with --services; --json gives both."""
    st = _require(cfg, instance)
    rundir = _rundir(cfg, instance)
    out = {}
    for s in st["services"]:
        try:
            out[s["name"]] = call(endpoints.control(rundir, s["name"]), CTL_STATS, timeout=1.0)
        except OSError as exc:
            out[s["name"]] = {"error": str(exc)}
    snmp = mib.collect(out)
    if args.json:
        print(json.dumps({**out, "snmp": snmp}, indent=2))
        return 0
    print(f"#mkstack {instance}")
    for name, value in snmp.items():
        if value or args.all:
            print(f"{name:<32}{value:>12}")
    if not args.services:
        return 0
    for name, counters in out.items():
        print(f"[{name}]")
        for k, v in sorted(counters.items()):
            if isinstance(v, dict):
                for dev, dv in sorted(v.items()):
                    for ck, cv in (sorted(dv.items()) if isinstance(dv, dict) else [("", dv)]):
                        print(f"  {k}.{dev}.{ck:<{max(1, 34 - len(k) - len(dev))}} {cv}")
            else:
                print(f"  {k:<36} {v}")
    return 0


def cmd_demo(cfg: Config, instance: str, args: argparse.Namespace) -> int:
    """Bring the stack up, show it working against the Linux peer, bring it down."""
    ns_args = [sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", instance, "-c", cfg.path]
    rc = subprocess.call([*ns_args, "up"])
    if rc:
        return rc
    try:
        dev = cfg.devices[0]
        steps = [
            ("the Linux kernel pings mkstack",
             ["peer", "--", "ping", "-c", "5", "-i", "0.2", str(dev.addr.ip)]),
            ("mkstack survives a killed ip layer: kill, then ping again",
             ["kill", "ip"]),
            (None, ["peer", "--", "ping", "-c", "3", "-i", "0.5", "-W", "2", str(dev.addr.ip)]),
            ("the kernel's ARP entry for mkstack", ["peer", "--", "ip", "neigh", "show", "dev", dev.name]),
            ("status after the fault", ["status"]),
        ]
        echo = subprocess.Popen([*ns_args, "run", "--", "python", os.path.join(DEMO, "udp_echo_server.py")],
                                stdout=subprocess.PIPE, text=True)
        web = subprocess.Popen([*ns_args, "run", "--", "python", "-u", "-m", "http.server", "8080", "--directory",
                                os.path.join(ROOT, "configs")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        steps += [
            ("an unmodified 'python -m http.server' runs on mkstack; curl in the Linux peer fetches from it",
             ["peer", "--", "curl", "-sS", "-m", "20", "-o", "/dev/null", "-w",
              "HTTP %{http_code}, %{size_download} bytes in %{time_total} s\n",
              f"http://{dev.addr.ip}:8080/default.toml"]),
            ("an unmodified UDP echo server runs on mkstack ('launcher.py run'); a Linux client talks to it",
             ["peer", "--", "python3", os.path.join(DEMO, "udp_echo_client.py"), str(dev.addr.ip)]),
            ("the stack's sockets", ["netstat"]),
        ]
        for title, step in steps:
            if title:
                print(f"\n== {title}")
            shown = " ".join(os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in step)
            print(f"$ launcher.py {shown}", flush=True)
            if step[0] == "kill":
                time.sleep(0.2)
            rc = subprocess.call([*ns_args, *step])
            if step[0] == "kill":
                continue
            if step[0] == "status":
                print("[mkstack app]", echo.stdout.readline().strip())   # bound: the client may start
                print("[mkstack app]", web.stdout.readline().strip())
            if rc and step[0] == "peer" and step[2] in ("ping", "python3", "curl"):
                print(f"mkstack demo: {' '.join(step[2:4])} failed", file=sys.stderr)
                return rc
        for p in (echo, web):
            p.kill()
            p.wait()
        return 0
    finally:
        print("\n$ launcher.py down", flush=True)
        subprocess.call([*ns_args, "down"])


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="launcher.py", description="Start, supervise and inspect mkstack.")
    ap.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)")
    ap.add_argument("--instance", default="default", help="instance name; runs side by side (default: default)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("up", help="create the peer namespace and TAP, start every service")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the stack to answer")
    p.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop everything and remove all traces of the instance").set_defaults(fn=cmd_down)
    p = sub.add_parser("status", help="services, devices and skb usage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("kill", help="fault injection: signal a service (default SIGKILL)")
    p.add_argument("name")
    p.add_argument("--signal", default="KILL", help="signal name or number (default: KILL)")
    p.set_defaults(fn=cmd_kill)
    p = sub.add_parser("chaos", help="fault injection: SIGKILL services at random for a while")
    p.add_argument("--services", help="comma-separated victims (default: all services)")
    p.add_argument("--interval", type=float, default=2.0, help="mean seconds between kills (default 2)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(fn=cmd_chaos)
    p = sub.add_parser("restart", help="stop a service and start it again")
    p.add_argument("name")
    p.set_defaults(fn=cmd_restart)
    p = sub.add_parser("logs", help="print the log of a service (or 'launcher')")
    p.add_argument("name")
    p.add_argument("-n", "--lines", type=int, default=50)
    p.set_defaults(fn=cmd_logs)
    p = sub.add_parser("peer", help="run a command in the peer namespace: peer -- CMD ...")
    p.add_argument("--dev", help="device whose peer namespace to use (default: the first)")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_peer)
    p = sub.add_parser("show", help="a service table as JSON")
    p.add_argument("what", choices=list(SHOW_FROM))
    p.set_defaults(fn=cmd_show)
    p = sub.add_parser("impair", help="fault injection: drop a device's frames at random")
    p.add_argument("dev")
    p.add_argument("--rx-loss", type=float, default=0.0, help="probability of dropping a received frame")
    p.add_argument("--tx-loss", type=float, default=0.0, help="probability of dropping a sent frame")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_impair)
    p = sub.add_parser("route", help="show or change routes: route [show] | add|del DST [via GW] [dev DEV]")
    p.add_argument("words", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_route)
    p = sub.add_parser("addr", help="show or change addresses: addr [show] | add|del ADDR/PLEN dev DEV")
    p.add_argument("words", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_addr)
    p = sub.add_parser("filter", help="netfilter rules: add CHAIN [-p P] [-s NET] [-d NET] [--sport N] "
                       "[--dport N] [-i DEV] [-o DEV] -j ACCEPT|DROP|REJECT | del CHAIN N | list | flush")
    p.add_argument("op", choices=["add", "del", "list", "flush"])
    p.add_argument("words", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_filter)
    p = sub.add_parser("capture", help="tap a device: one line per frame, or a pcap file")
    p.add_argument("dev")
    p.add_argument("-w", "--write", metavar="FILE.pcap", help="write a pcap file (tshark -r reads it)")
    p.add_argument("-c", "--count", type=int, default=0, help="stop after this many frames")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after this many seconds")
    p.set_defaults(fn=cmd_capture)
    p = sub.add_parser("run", help="run a program on mkstack: run -- python prog.py (socket module replaced)")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("netstat", help="the sockets of the stack, like ss -a")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_netstat)
    p = sub.add_parser("stats", help="SNMP counters (nstat style) and each service's own")
    p.add_argument("--json", action="store_true", help="every service's counters and the 'snmp' table")
    p.add_argument("-a", "--all", action="store_true", help="zero counters too")
    p.add_argument("--services", action="store_true", help="each service's own counters too")
    p.set_defaults(fn=cmd_stats)
    sub.add_parser("demo", help="up, ping from the Linux peer, kill a layer, ping again, down").set_defaults(
        fn=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        instance = check_instance(args.instance)
        cfg = load(os.path.abspath(args.config))
    except ConfigError as exc:
        print(f"launcher.py: config: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() != 0 and args.fn is not cmd_run:
        # the control plane (supervisor, services, namespaces, shared memory) is root's alone;
        # every user may run programs on the stack
        print(f"launcher.py {args.command}: permission denied: only root controls mkstack "
              f"(any user may 'launcher.py run')", file=sys.stderr)
        return 1
    return args.fn(cfg, instance, args)


if __name__ == "__main__":
    sys.exit(main())
