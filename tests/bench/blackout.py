"""Recovery blackout: python -m tests.bench.blackout [--kills N] [--gap S] [--services a,b] [--json FILE].

From the Linux peer, a UDP echo and a 1-byte TCP echo (servers on mkstack) are
asked every 2 ms (tests/system/apps/probe2ms.py) while each service is SIGKILLed
N times, S seconds apart. For each kill: the silence, the longest time without
an echo of either kind around it (from the last echo before the kill to the
first after it). Reports the worst silence per service and every kill's figure.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import statistics
import sys
import tempfile
import time

from tests.system.conftest import ROOT, Stack, new_instance, start_on_mkstack

APPS = os.path.join(ROOT, "tests", "system", "apps")
VICTIMS = ("driver", "netdev", "ip", "udp", "tcp", "socket_server")
UDP_PORT, TCP_PORT = 9999, 7007
PHASES = ("reclaim_ms", "spawn_ms", "init_ms", "first_msg_ms", "ready_ms")


def silence(times: list[float], at: float) -> float | None:
    """Seconds from the last arrival before ``at`` to the first one after it."""
    i = bisect.bisect_right(times, at)
    if i == 0 or i == len(times):
        return None
    return times[i] - times[i - 1]


def probe(stack: Stack, victims: list[str], kills: int, gap: float) -> dict:
    """Kill each of ``victims`` ``kills`` times under the probe; silences in seconds."""
    udp = start_on_mkstack(stack, os.path.join(APPS, "udp_echo.py"), "0.0.0.0", str(UDP_PORT))
    tcp = start_on_mkstack(stack, os.path.join(APPS, "tcp_echo_server.py"), "0.0.0.0", str(TCP_PORT))
    seconds = len(victims) * kills * (gap + 5) + 60      # ended by SIGINT; this bounds it
    fd, result = tempfile.mkstemp(prefix="mkstack-probe-", suffix=".json")
    os.close(fd)
    prober = stack.peer_popen("python3", os.path.join(APPS, "probe2ms.py"), stack.addr, str(UDP_PORT),
                              str(TCP_PORT), str(seconds), result)
    plan: list[tuple[str, float]] = []
    phases: dict[str, list[dict]] = {}
    try:
        assert "probing" in prober.stdout.readline()
        time.sleep(gap)
        for victim in victims:
            for _ in range(kills):
                plan.append((victim, stack.kill_when_running(victim)))
                time.sleep(gap)
                svc = next(x for x in stack.status()["services"] if x["name"] == victim)
                phases.setdefault(victim, []).append({**svc["last_start"],
                                                      **stack.stats()[victim].get("start_phases", {})})
        prober.send_signal(signal.SIGINT)
        prober.communicate(timeout=30)
        with open(result) as f:
            got = json.load(f)
    finally:
        os.unlink(result)
        for p in (prober, udp, tcp):
            if p.poll() is None:
                p.kill()
                p.wait()
    per: dict[str, list[float | None]] = {}
    kinds: dict[str, list] = {}
    for victim, at in plan:
        gaps = [silence(got[kind], at) for kind in ("udp", "tcp")]
        per.setdefault(victim, []).append(None if None in gaps else max(gaps))  # type: ignore[type-var]
        kinds.setdefault(victim, []).append([None if g is None else round(1000 * g, 1) for g in gaps])
    steady = [b - a for kind in ("udp", "tcp") for a, b in zip(got[kind], got[kind][1:])]
    steady.sort()
    return {"sent": got["sent"], "ended": got["ended"], "udp_tcp_ms": kinds, "phases": phases,
            "udp_echoes": len(got["udp"]), "tcp_echoes": len(got["tcp"]),
            "steady_gap_p50_ms": round(1000 * steady[len(steady) // 2], 2) if steady else None,
            "silence_ms": {v: [None if x is None else round(1000 * x, 1) for x in xs] for v, xs in per.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.blackout", description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=3, help="kills per service")
    ap.add_argument("--gap", type=float, default=3.0, help="seconds between kills")
    ap.add_argument("--services", default=",".join(VICTIMS))
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    victims = args.services.split(",")
    bad = [v for v in victims if v not in VICTIMS]
    if bad or args.kills < 1 or args.gap <= 0:
        ap.error(f"--services from {', '.join(VICTIMS)}; --kills >= 1; --gap > 0")
    stack = Stack(new_instance())
    stack.launcher("up")
    try:
        r = probe(stack, victims, args.kills, args.gap)
    finally:
        stack.launcher("down", check=False)
    print(f"{r['sent']} probes; {r['udp_echoes']} UDP and {r['tcp_echoes']} TCP echoes; "
          f"steady gap {r['steady_gap_p50_ms']} ms; the probe ended: {r['ended']}")
    print(f"{'service':<14}{'worst ms':>9}  each kill (ms)")
    for v, xs in r["silence_ms"].items():
        known = [x for x in xs if x is not None]
        worst = f"{max(known):.0f}" if len(known) == len(xs) else "none"
        print(f"{v:<14}{worst:>9}  {', '.join('-' if x is None else f'{x:.0f}' for x in xs)}")
    print("start phases, median ms (supervisor: skb reclaim, promotion; the new incarnation from its "
          "promotion: init done, first message, ready)")
    for v, ps in r["phases"].items():
        med = {k: statistics.median(p[k] for p in ps if k in p) for k in PHASES if any(k in p for p in ps)}
        kinds = sorted({p.get("start", "?") for p in ps})
        print(f"  {v:<14}" + "  ".join(f"{k} {x:.1f}" for k, x in med.items()) + f"  ({'/'.join(kinds)})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
