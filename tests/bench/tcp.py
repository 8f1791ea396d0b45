"""TCP benchmark: bulk throughput each way, 1-byte request/response, connections/s,
through mkstack and, in the same run, on the kernel (python -m tests.bench.tcp).

Baseline: the same server program with the kernel's sockets in the peer
namespace, the client beside it (kernel loopback, same Python programs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.system.conftest import ROOT, Stack, new_instance

APPS = os.path.join(ROOT, "tests", "system", "apps")


def run(stack: Stack, server: list[str], client: list[str], seconds: float) -> dict:
    p = subprocess.Popen(server, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout.readline().startswith("ready")
        out = subprocess.run(client, capture_output=True, text=True, timeout=seconds * 4 + 30).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        p.kill()
        p.wait()


def main() -> int:
    stack = Stack(new_instance())
    base = [sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance, "-c", stack.config]
    serve, load = os.path.join(APPS, "tcp_serve.py"), os.path.join(APPS, "tcp_load.py")
    try:
        stack.launcher("up")
        rows = []
        for mode in ("sink", "rr", "crr"):
            # kernel -> mkstack: server on mkstack, client in the peer namespace
            ours = run(stack, [*base, "run", "--", "python", serve, "0.0.0.0", "7200"],
                       [*base, "peer", "--", "python3", load, stack.addr, "7200", mode, "4"], 4)
            kern = run(stack, [*base, "peer", "--", "python3", serve, stack.peer_addr, "7201"],
                       [*base, "peer", "--", "python3", load, stack.peer_addr, "7201", mode, "4"], 4)
            rows.append((f"{mode} kernel->mkstack", ours, kern))
        # mkstack -> kernel bulk: client on mkstack
        ours = run(stack, [*base, "peer", "--", "python3", serve, stack.peer_addr, "7202"],
                   [*base, "run", "--", "python", load, stack.peer_addr, "7202", "sink", "4"], 4)
        rows.append(("sink mkstack->kernel", ours, rows[0][2]))
        print(f"{'workload':<22}{'mkstack':>14}{'kernel':>14}{'ratio':>8}")
        for name, o, k in rows:
            key = "mb_per_s" if o["mode"] == "sink" else "per_s"
            unit = "MB/s" if key == "mb_per_s" else "/s"
            print(f"{name:<22}{o[key]:>10} {unit:<4}{k[key]:>9} {unit:<4}{o[key] / k[key]:>7.3f}"
                  + (f"   rtt {o['rtt_us_median']} us vs {k['rtt_us_median']} us" if o["rtt_us_median"] else ""))
        return 0
    finally:
        stack.launcher("down", check=False)


if __name__ == "__main__":
    sys.exit(main())
