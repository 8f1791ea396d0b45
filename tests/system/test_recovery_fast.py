"""A kill is hardly noticed: warm standbys, held packets and at-once resends keep the
2 ms probe's silence short; a crash loop is backed off without slowing the others."""

import json
import os
import signal
import subprocess
import sys
import time

from shared.ipc import endpoints
from shared.ipc.control import call
from shared.ipc.messages import SUP_KILL, SUP_STATUS
from tests.bench.blackout import VICTIMS, probe
from tests.system.conftest import ROOT, reply_times

XFER = os.path.join(ROOT, "tests", "system", "apps", "tcp_xfer.py")

LIMIT_MS = 250      # the aim is < 100 ms; room for this machine's noise


def test_every_kill_is_a_short_silence(stack):
    # one kill of each here (make test's time: a second one of each is test_recovery's business, which kills
    # every service three times); python -m tests.bench.blackout makes three and reports the worst
    r = probe(stack, list(VICTIMS), kills=1, gap=1.0)
    print(f"\nsilence per kill (ms): {r['silence_ms']}\nstart phases: {r['phases']}")
    for victim, silences in r["silence_ms"].items():
        assert None not in silences, f"no echo after a kill of {victim}: {r['udp_tcp_ms'][victim]}"
        assert max(silences) < LIMIT_MS, f"{victim}: {silences} ms (udp, tcp: {r['udp_tcp_ms'][victim]})"
    # each came back as its warm standby, not by starting a new interpreter
    assert all(p.get("start") == "promoted" for ps in r["phases"].values() for p in ps), r["phases"]
    assert stack.status()["starts"]["promoted"] >= len(VICTIMS)


def test_crash_loop_is_backed_off_and_the_others_recover_at_once(stack):
    rundir = os.path.join(stack.cfg.run_dir, stack.instance)
    hook = os.path.join(rundir, "udp.crash-on-start")
    open(hook, "w").close()
    try:
        stack.kill_when_running("udp")
        deadline = time.monotonic() + 20
        while stack.state_of("udp") != "crashloop":
            assert time.monotonic() < deadline, stack.status()["services"]
            time.sleep(0.1)
        udp = next(s for s in stack.status()["services"] if s["name"] == "udp")
        assert udp["last_exit"] == "exited with 3"
        restarts = udp["restarts"]
        # backed off: a few more tries in 2 s, not hundreds
        time.sleep(2.0)
        assert stack.restarts()["udp"] - restarts < 6
        log = open(os.path.join(rundir, "launcher.log")).read()
        assert "(crash loop: " in log
        # meanwhile a kill of another service is repaired at once, every time
        for _ in range(3):
            before = stack.restarts()["tcp"]
            at = time.monotonic()
            stack.kill_when_running("tcp")
            stack.wait_running("tcp")
            assert stack.restarts()["tcp"] == before + 1
            assert time.monotonic() - at < 5.0
        log = open(os.path.join(rundir, "launcher.log")).read()
        assert log.count("tcp killed by SIGKILL; restart in 0.00s") == 3
    finally:
        os.unlink(hook)
    stack.wait_running("udp", within=30)      # the cause gone, it comes back after its backoff
    assert stack.state_of("tcp") == "running"


def test_supervisor_killed_during_a_download(stack, tmp_path):
    """SIGKILL of the supervisor: services keep moving traffic, a new supervisor
    (started by the watchdog) adopts them, answers status and repairs a later kill;
    a killed watchdog is started again by the supervisor."""
    server = stack.peer_popen("python3", XFER, "serve", "5003")
    assert "listening" in server.stdout.readline()
    ping_log = open(tmp_path / "ping", "w")
    ping = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                             "-c", stack.config, "peer", "--", "ping", "-D", "-i", "0.05", stack.addr],
                            stdout=ping_log, stderr=subprocess.STDOUT)
    get = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                            "-c", stack.config, "run", "--", "python", XFER, "get", stack.peer_addr, "5003",
                            str(60_000_000)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)
        old = stack.status()
        os.kill(old["pid"], signal.SIGKILL)
        killed = time.monotonic()
        while True:
            p = stack.launcher("status", "--json", check=False)
            if p.returncode == 0 and json.loads(p.stdout)["pid"] != old["pid"]:
                break
            assert time.monotonic() - killed < 10, "no new supervisor"
            time.sleep(0.05)
        took = time.monotonic() - killed
        st = json.loads(p.stdout)
        print(f"\nstatus answered by the new supervisor {took:.2f} s after the kill (CLI start included)")
        assert st["starts"]["adopted"] == len(VICTIMS)
        assert {s["name"]: s["pid"] for s in st["services"]} == {s["name"]: s["pid"] for s in old["services"]}
        # a later kill is repaired by the new supervisor
        before = stack.restarts()["ip"]
        stack.kill_when_running("ip")
        stack.wait_running("ip")
        assert stack.restarts()["ip"] == before + 1
        # the watchdog, killed, is started again
        rundir = os.path.join(stack.cfg.run_dir, stack.instance)
        with open(os.path.join(rundir, "services.json")) as f:
            dog = json.load(f)["watchdog"]["pid"]
        os.kill(dog, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:
            with open(os.path.join(rundir, "services.json")) as f:
                if json.load(f)["watchdog"]["pid"] not in (dog, None):
                    break
            assert time.monotonic() < deadline, "the watchdog was not started again"
            time.sleep(0.05)
        out, _ = get.communicate(timeout=240)
        assert get.returncode == 0, out
    finally:
        for p in (get, ping):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                p.wait(timeout=30)
        ping_log.close()
        server.kill()
        served = server.communicate(timeout=10)[0]
    r = json.loads(out.strip().splitlines()[-1])
    hashes = {json.loads(x)["sha256"] for x in served.splitlines() if x.startswith('{"dir": "served"')}
    assert r["bytes"] == 60_000_000 and r["sha256"] in hashes, (r, served)
    times = reply_times((tmp_path / "ping").read_text())
    gaps = [b - a for a, b in zip(times, times[1:])]
    print(f"ping: {len(times)} replies, longest gap {max(gaps):.3f} s")
    assert max(gaps) < 1.0


def test_a_second_kill_right_after_the_first_finds_a_ready_standby_with_both_cpus_busy(stack):
    """The next standby is forked by the zygote, ready in ms: a kill 0.2 s after a promotion
    promotes a process that waits for nothing. (A standby started as an interpreter imported
    at SCHED_IDLE and, with the CPUs busy, was still importing then: ~0.3 s more silence.)"""
    rundir = os.path.join(stack.cfg.run_dir, stack.instance)
    sup = endpoints.control(rundir, "launcher")

    def socket_server() -> dict:
        # (generous timeouts: with both CPUs hogged the supervisor may answer late; what is
        # tested is how the promoted standby started)
        return next(s for s in call(sup, SUP_STATUS, timeout=10)["services"] if s["name"] == "socket_server")

    def running() -> None:
        # as stack.wait_running, but through the same generous timeout (the launcher's status
        # gives the supervisor 2 s, and said "not running" once with the CPUs hogged)
        deadline = time.monotonic() + 20
        while socket_server()["state"] != "running":
            assert time.monotonic() < deadline, "socket_server did not come back"
            time.sleep(0.05)

    # the premise: a zygote and a standby ready before the CPUs get busy (an earlier test may
    # have killed the supervisor, whose successor starts its zygote anew)
    deadline = time.monotonic() + 20
    while stack.status()["zygote"] is None or not socket_server()["standby"]:
        assert time.monotonic() < deadline, "no zygote and standby"
        time.sleep(0.1)
    time.sleep(1.0)
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(2 * (os.cpu_count() or 2))]
    try:
        waits = []
        for _ in range(2):
            running()
            old = call(sup, SUP_KILL, "socket_server", int(signal.SIGKILL), timeout=10)["pid"]
            deadline = time.monotonic() + 10
            while socket_server()["pid"] in (None, old) or not socket_server()["standby"]:
                assert time.monotonic() < deadline, socket_server()
                time.sleep(0.01)
            time.sleep(0.2)                  # the new standby's life so far
            call(sup, SUP_KILL, "socket_server", int(signal.SIGKILL), timeout=10)
            running()
            # with both CPUs busy a stats call may miss its 1 s: ask again (what is tested is how it started)
            deadline = time.monotonic() + 10
            got: dict = {}
            while "start_phases" not in got:
                assert time.monotonic() < deadline, got
                p = stack.launcher("stats", "--json", check=False)     # (its supervisor may miss 2 s too)
                got = json.loads(p.stdout)["socket_server"] if p.returncode == 0 else {}
            phases = got["start_phases"]
            assert phases["start"] == "promoted", phases
            waits.append(phases.get("standby_wait_ms", 0.0))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"\nstandby waits after a second kill (ms): {waits}")
    assert max(waits) < 100, waits


def test_a_killed_zygote_is_replaced_and_kills_meanwhile_are_still_repaired(stack):
    zygote = stack.status()["zygote"]
    os.kill(zygote, signal.SIGKILL)
    for victim in ("ip", "socket_server"):      # the standbys already forked, then new interpreters
        before = stack.restarts()[victim]
        stack.kill_when_running(victim)
        stack.wait_running(victim)
        assert stack.restarts()[victim] == before + 1
    assert " 0% packet loss" in stack.peer("ping", "-c", "3", "-i", "0.2", "-W", "2", stack.addr).stdout
    deadline = time.monotonic() + 15            # a new one within ZYGOTE_RETRY
    while stack.status()["zygote"] in (None, zygote):
        assert time.monotonic() < deadline, stack.status()["starts"]
        time.sleep(0.2)
    assert stack.status()["starts"]["zygote_restarts"] >= 1
