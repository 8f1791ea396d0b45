"""UDP benchmark: echo round trip and pipelined echoes/s through mkstack, beside
the same workload on the kernel in the same run (python -m tests.bench.udp).

Baseline: the echo server with the kernel's sockets inside the peer namespace,
the client beside it (kernel loopback path, same Python programs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.system.conftest import ROOT, Stack, new_instance

APPS = os.path.join(ROOT, "tests", "system", "apps")


def measure(stack: Stack, addr: str, server_cmd: list[str], size: int, seconds: float) -> dict:
    server = subprocess.Popen(server_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout.readline().startswith("ready")
        out = stack.peer("python3", os.path.join(APPS, "udp_window.py"), addr, "9999", str(size),
                         str(seconds), "16").stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        server.kill()
        server.wait()


def main() -> int:
    stack = Stack(new_instance())
    launcher = [sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance, "-c", stack.config]
    echo = os.path.join(APPS, "udp_echo.py")
    try:
        stack.launcher("up")
        rows = []
        for size in (64, 1400):
            ours = measure(stack, stack.addr, [*launcher, "run", "--", "python", echo, "0.0.0.0", "9999"], size, 3)
            kern = measure(stack, stack.peer_addr, [*launcher, "peer", "--", "python3", echo, stack.peer_addr,
                                                    "9999"], size, 3)
            rows.append((size, ours, kern))
        print(f"{'size':>5} {'mkstack echoes/s':>17} {'kernel echoes/s':>16} {'ratio':>6} "
              f"{'mkstack rtt us':>15} {'kernel rtt us':>14}")
        for size, o, k in rows:
            print(f"{size:>5} {o['echoes_per_s']:>17} {k['echoes_per_s']:>16} "
                  f"{o['echoes_per_s'] / k['echoes_per_s']:>6.3f} {o['rtt_us_median']:>15} {k['rtt_us_median']:>14}")
        return 0
    finally:
        stack.launcher("down", check=False)


if __name__ == "__main__":
    sys.exit(main())
