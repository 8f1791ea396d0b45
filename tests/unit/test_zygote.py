"""The zygote forks imported service processes that are the supervisor's children."""

import json
import subprocess
import sys
import textwrap

import pytest

from services.zygote import service_class

# run in a process of its own: a child subreaper would adopt every orphan of the test run
SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    from services.zygote import ForkServer, become_subreaper
    assert become_subreaper()
    log = sys.argv[1]
    z = ForkServer("unused.toml", "zt", ["udp"], log)
    deadline = time.monotonic() + 30
    while not z.usable():
        assert not z.failed and time.monotonic() < deadline
        time.sleep(0.01)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    t = time.monotonic()
    child = z.spawn("udp", ["--config", "unused.toml", "--instance", "zt", "--standby"], fd, standby=True)
    fork_ms = (time.monotonic() - t) * 1000
    parent = int(open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[1])
    deadline = time.monotonic() + 10        # the child names itself after the fork returned its pid
    while (comm := open(f"/proc/{child.pid}/comm").read().strip()) != "mks-udp" and time.monotonic() < deadline:
        time.sleep(0.005)
    child.stdin.close()                 # an end of file: the standby is not wanted, it exits
    code = child.wait(10)
    refused = None
    try:
        z.spawn("no_such_kind", [], fd, standby=False)
    except OSError as exc:
        refused = str(exc)
    failed = z.failed
    z.close()
    print(json.dumps({"parent_is_us": parent == os.getpid(), "comm": comm, "code": code,
                      "fork_ms": fork_ms, "refused": refused, "failed_after": failed,
                      "zygote_code": z.proc.returncode}))
""")


@pytest.mark.parametrize("kind", ["driver", "netdev", "ip", "udp", "tcp", "socket_server"])
def test_each_kind_names_the_service_class_python_m_would_run(kind):
    assert service_class(kind).kind == kind


def test_a_forked_standby_is_our_child_and_a_bad_request_is_refused(tmp_path):
    log = tmp_path / "zygote.log"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(log)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr + log.read_text()
    r = json.loads(p.stdout.splitlines()[-1])
    assert r["parent_is_us"] and r["comm"] == "mks-udp"
    assert r["code"] == 0                      # a standby told "not wanted" ends cleanly
    assert r["fork_ms"] < 1000
    assert "refused" in r["refused"] and r["failed_after"]
    assert r["zygote_code"] == 0               # it ended when our end closed
    assert "not a service this zygote imported: 'no_such_kind'" in log.read_text()
