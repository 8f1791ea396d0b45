"""Kill any layer, lose nothing: bulk TCP both ways, a UDP echo stream and ping
keep going while every service, the socket server included, is SIGKILLed again and again."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

from tests.system.conftest import ROOT, reply_times, start_on_mkstack

APPS = os.path.join(ROOT, "tests", "system", "apps")
XFER = os.path.join(APPS, "tcp_xfer.py")
VICTIMS = ("driver", "netdev", "ip", "udp", "tcp", "socket_server")
KILLS_EACH = 3
BULK = 100_000_000


def transfers(stack, direction: str, stop: threading.Event, results: list) -> None:
    """BULK-byte transfers one after the other, from a program on mkstack, until ``stop``."""
    while not stop.is_set():
        p = subprocess.run([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                            "-c", stack.config, "run", "--", "python", XFER, direction, stack.peer_addr, "5001",
                            str(BULK)], capture_output=True, text=True, timeout=300)
        results.append((p.returncode, p.stdout, p.stderr))
        if p.returncode:
            return


def test_sigkill_of_every_service_loses_nothing(stack, tmp_path):
    rng = random.Random(int(os.environ.get("MKSTACK_CHAOS_SEED", "5")))
    server = stack.peer_popen("python3", XFER, "serve", "5001")
    assert "listening" in server.stdout.readline()
    echo = start_on_mkstack(stack, os.path.join(APPS, "udp_echo.py"), "0.0.0.0", "9999")
    udp = stack.peer_popen("python3", os.path.join(APPS, "udp_stream.py"), stack.addr, "9999", "600", "20")
    # a line per reply: to a file, as a full pipe (64 KB, ~70 s of them) would stop ping
    ping_log = open(tmp_path / "ping", "w")
    ping = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                             "-c", stack.config, "peer", "--", "ping", "-D", "-i", "0.1", "-W", "1", stack.addr],
                            stdout=ping_log, stderr=subprocess.STDOUT)
    stop = threading.Event()
    results: dict[str, list] = {"put": [], "get": []}
    workers = [threading.Thread(target=transfers, args=(stack, d, stop, results[d])) for d in results]
    try:
        for w in workers:
            w.start()
        time.sleep(1.0)
        plan = list(VICTIMS) * KILLS_EACH
        rng.shuffle(plan)
        kills = []
        for victim in plan:
            time.sleep(rng.uniform(0.2, 0.8))
            kills.append((victim, stack.kill_when_running(victim)))
        stop.set()
        for w in workers:
            w.join(timeout=300)
        time.sleep(2.0)
    finally:
        stop.set()
        for p in (udp, ping):
            p.send_signal(signal.SIGINT)
        udp_out, _ = udp.communicate(timeout=30)
        ping.wait(timeout=30)
        ping_log.close()
        server.kill()
        served = server.communicate(timeout=10)[0]
        echo.kill()
        echo.wait()
    print(f"\n{len(kills)} kills: " + ", ".join(v for v, _ in kills))
    # every TCP transfer completed, byte-exact, both ways
    for direction, runs in results.items():
        assert runs, f"no {direction} transfer ran"
        for rc, out, err in runs:
            assert rc == 0, f"{direction} failed: {out}\n{err[-3000:]}"
    lines = [json.loads(line) for line in served.splitlines() if line.startswith('{"dir"')]
    stored = {r["sha256"] for r in lines if r["dir"] == "stored"}
    sent = {r["sha256"] for r in lines if r["dir"] == "served"}
    for rc, out, _ in results["put"]:
        r = json.loads(out.splitlines()[-1])
        assert r["bytes"] == BULK and r["sha256"] in stored           # the server hashed what we sent
    for rc, out, _ in results["get"]:
        r = json.loads(out.splitlines()[-1])
        assert r["bytes"] == BULK and r["sha256"] in sent, out        # we hashed what the server sent
    print(f"transfers: {len(results['put'])} put, {len(results['get'])} get of {BULK // 10**6} MB, all byte-exact")
    restarts = stack.restarts()
    assert all(restarts[v] >= KILLS_EACH for v in VICTIMS), restarts
    # the UDP socket kept working: echoes right, and flowing again after the last kill
    u = json.loads(udp_out.strip().splitlines()[-1])
    print(f"udp: {u}")
    assert u["wrong"] == 0 and u["received"] >= 0.5 * u["sent"], u
    assert u["last_echo_before_end"] < 1.0, u
    # ping resumed after every kill
    times = reply_times((tmp_path / "ping").read_text())
    for victim, at in kills:
        assert any(at < t < at + 4.0 for t in times), f"no ping reply within 4 s of killing {victim}"
    silences = [b - a for a, b in zip(times, times[1:])]
    print(f"ping: {len(times)} replies, longest silence {max(silences):.2f} s")
    tcp = stack.stats()["tcp"]
    assert tcp["TcpResyncs"] >= 1 and tcp["TcpRestoreErrors"] == 0
    # and nothing leaked: every skb slot is free again
    deadline = time.monotonic() + 10
    while [c["used"] for c in stack.status()["skb"]["classes"]] != [0, 0]:
        assert time.monotonic() < deadline, stack.status()["skb"]
        time.sleep(0.2)
