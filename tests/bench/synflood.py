"""SYN flood against a small server: python -m tests.bench.synflood [--seconds 120] [--rate 5] [--json FILE].

Issue 23's done-when, at its full length (the system test runs 20 s of it):
`python -m http.server` on mkstack (backlog 5), spoofed SYNs from the peer
(tests/system/apps/syn_flood.py, random sources, never completed) at --rate a
second for --seconds, and curl from the peer fetching once a second with a 1 s
limit. Reports how many fetches succeeded, their slowest and median times, and
the SYN-cookie counters. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from tests.system.conftest import ROOT, Stack, new_instance
from tests.system.test_tcp import launcher_popen, wait_line

APPS = os.path.join(ROOT, "tests", "system", "apps")
PORT = 8080


def run(stack: Stack, seconds: int, rate: int) -> dict:
    with tempfile.TemporaryDirectory() as www:
        with open(os.path.join(www, "index.html"), "w") as f:
            f.write("still here\n")
        web = launcher_popen(stack, "run", "--", "python", "-u", "-m", "http.server", str(PORT), "--directory", www)
        flood = None
        took, failed = [], []
        try:
            wait_line(web, "Serving HTTP")
            flood = stack.peer_popen("python3", os.path.join(APPS, "syn_flood.py"), stack.addr, str(PORT),
                                     str(rate), str(seconds))
            time.sleep(2.0)                               # the half-open queue is full by now
            end = time.monotonic() + seconds - 4
            n = 0
            while time.monotonic() < end:
                t = time.monotonic()
                r = stack.peer("curl", "-s", "--max-time", "1", f"http://{stack.addr}:{PORT}/index.html",
                               check=False)
                dt = time.monotonic() - t
                n += 1
                if r.returncode == 0 and r.stdout == "still here\n":
                    took.append(dt)
                else:
                    failed.append(f"fetch {n}: curl exit {r.returncode} after {dt:.2f} s")
                if n % 15 == 0:
                    print(f"  {n} fetches, {len(failed)} failed", file=sys.stderr, flush=True)
                time.sleep(max(0.0, 1.0 - dt))
            flood.communicate(timeout=seconds + 60)
        finally:
            for p in (web, flood):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
    tcp = stack.stats()["tcp"]
    return {"seconds": seconds, "syn_rate": rate, "fetches": len(took) + len(failed), "ok": len(took),
            "failed": failed, "slowest_s": round(max(took), 3) if took else None,
            "median_s": round(statistics.median(took), 3) if took else None,
            **{k: tcp.get(k, 0) for k in ("TcpExtSyncookiesSent", "TcpExtSyncookiesRecv", "TcpExtSyncookiesFailed",
                                          "ListenOverflows")}}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.synflood", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--rate", type=int, default=5, help="spoofed SYNs a second")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    if not 10 <= args.seconds <= 3600 or not 1 <= args.rate <= 10000:
        ap.error("--seconds 10..3600, --rate 1..10000")
    stack = Stack(new_instance())
    stack.launcher("up")
    try:
        r = run(stack, args.seconds, args.rate)
    finally:
        stack.launcher("down", check=False)
    print(f"{args.rate} spoofed SYNs/s for {args.seconds} s at http.server (backlog 5): {r['ok']} of "
          f"{r['fetches']} fetches within 1 s (median {r['median_s']} s, slowest {r['slowest_s']} s); "
          f"cookies sent {r['TcpExtSyncookiesSent']}, accepted {r['TcpExtSyncookiesRecv']}, "
          f"failed {r['TcpExtSyncookiesFailed']}; listen overflows {r['ListenOverflows']}")
    for line in r["failed"]:
        print("  " + line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0 if not r["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
