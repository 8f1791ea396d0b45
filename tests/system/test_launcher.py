"""The launcher CLI: up/down/status, config errors, instances side by side."""

import json
import os
import signal
import subprocess
import sys
import time

from shared import host
from tests.system.conftest import DEFAULT_CONFIG, ROOT, Stack, new_instance


def test_status_json_and_idempotent_up(stack):
    st = stack.status()
    assert st["running"] is True
    assert {s["name"] for s in st["services"]} == {"driver", "netdev", "ip", "udp", "tcp", "socket_server"}
    for s in st["services"]:
        assert s["pid"] and s["state"] == "running" and s["restarts"] == 0
        assert os.path.exists(f"/proc/{s['pid']}")
    dev = st["devices"][0]
    assert (dev["name"], dev["addr"], dev["peer_netns"], dev["peer_addr"]) == (
        "tap0", "10.66.0.2/24", f"mkstack-{stack.instance}", "10.66.0.1/24")
    again = stack.launcher("up")
    assert "already running" in again.stdout
    assert stack.status()["pid"] == st["pid"]


def test_tap_is_persistent_and_configured_in_the_peer_namespace(stack):
    link = stack.peer("ip", "-d", "link", "show", "tap0").stdout
    assert "tun type tap" in link and "persist" in link
    assert "10.66.0.1/24" in stack.peer("ip", "addr", "show", "tap0").stdout


def test_two_instances_side_by_side(stack):
    other = Stack(new_instance())
    try:
        other.launcher("up")
        for s in (stack, other):
            out = s.peer("ping", "-c", "3", "-i", "0.05", s.addr).stdout
            assert "3 received" in out
        other.launcher("kill", "ip")
        time.sleep(0.5)
        assert stack.restarts()["ip"] == 0 and other.restarts()["ip"] == 1
    finally:
        other.launcher("down", check=False)
    assert other.leftovers() == []
    assert "1 received" in stack.peer("ping", "-c", "1", stack.addr).stdout


def test_down_after_the_supervisor_was_killed_leaves_nothing():
    """At once (while its watchdog starts a successor), and with supervisor and
    watchdog both killed (the services alone, nobody to answer status)."""
    for both in (False, True):
        s = Stack(new_instance())
        try:
            s.launcher("up")
            st = s.status()
            time.sleep(1.2)        # the watchdog has started
            if both:
                with open(os.path.join(s.cfg.run_dir, s.instance, "services.json")) as f:
                    os.kill(json.load(f)["watchdog"]["pid"], signal.SIGKILL)
            os.kill(st["pid"], signal.SIGKILL)
            if both:
                time.sleep(1.0)
                assert s.launcher("status", check=False).returncode == 1
                assert {p for p in host.instance_pids(s.instance)} >= {x["pid"] for x in st["services"]}
        finally:
            s.launcher("down", check=False)
        assert s.leftovers() == []
        assert not host.netns_exists(f"mkstack-{s.instance}")


def test_bad_config_names_the_key_and_starts_nothing(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(open(DEFAULT_CONFIG).read().replace('mtu = 1500', 'mtu = "jumbo"'))
    inst = new_instance()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", inst,
                        "-c", str(bad), "up"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "devices[0].mtu" in p.stderr
    assert host.instance_pids(inst) == []
    assert not host.netns_exists(f"mkstack-{inst}")


def test_bad_arguments_exit_2():
    run = lambda *a: subprocess.run([sys.executable, os.path.join(ROOT, "launcher.py"), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=30)
    assert run("--instance", "Bad/Name", "status").returncode == 2
    assert run("frobnicate").returncode == 2
    assert run("up", "--help").returncode == 0


def test_kill_unknown_service_and_bad_signal(stack):
    assert stack.launcher("kill", "nosuch", check=False).returncode == 2
    assert stack.launcher("kill", "ip", "--signal", "NOPE", check=False).returncode == 2
    assert stack.restarts()["ip"] == 0


def test_logs_and_restart(stack):
    assert "attached to tap0" in stack.launcher("logs", "driver").stdout
    stack.launcher("restart", "netdev")
    assert stack.restarts()["netdev"] == 1
    assert "1 received" in stack.peer("ping", "-c", "1", "-W", "2", stack.addr).stdout
