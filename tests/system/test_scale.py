"""Many sockets at once: thousands of idle TCP connections held by one program,
and its descriptor limit applied as Linux applies RLIMIT_NOFILE."""

import json
import os
import subprocess
import sys

from tests.system.conftest import ROOT, start_on_mkstack
from tests.system.test_tcp import APPS

N = 3000


def test_one_program_holds_thousands_of_idle_connections(stack):
    # 3,000 sockets under a 4,096-descriptor limit: a socket used only through blocking calls
    # costs the program no kernel descriptor (its readiness pair is made on fileno())
    server = start_on_mkstack(stack, os.path.join(APPS, "hold_server.py"), "7500", str(N), "4096")
    client = subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                               "-c", stack.config, "peer", "--", "python3", os.path.join(APPS, "hold_client.py"),
                               stack.addr, "7500", str(N), "64"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        got = json.loads(client.stdout.readline())
        held = json.loads(server.stdout.readline())
        rows = stack.launcher("netstat", "--json").stdout
    finally:
        client.kill()
        server.kill()
        client.wait()
        server.wait()
    assert got["opened"] == N and got["failed"] == 0 and got["answered"] == N
    assert held["accepted"] == N and held["answered"] == N
    assert held["kernel_fds"] < 100
    assert sum(r["state"] == "ESTAB" and r["local"].endswith(":7500") for r in json.loads(rows)) == N


def test_descriptors_past_the_limit_fail_with_emfile_as_on_the_kernel(stack):
    """At the process's RLIMIT_NOFILE, above and below 1024 (`ulimit -n 400` gave 500),
    counting its sockets and its other descriptors as the kernel counts them: the same
    program on the kernel holds as many sockets when EMFILE comes."""
    for limit in (1500, 400):
        check_emfile(stack, limit)


def check_emfile(stack, limit: int) -> None:
    prog = ("import errno, resource, socket\n"
            f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
            "held = []\n"
            "try:\n"
            "    while True:\n"
            "        held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))\n"
            "except OSError as exc:\n"
            "    print(len(held), errno.errorcode[exc.errno])\n"
            "held.pop().close()\n"
            "held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))\n"
            "print(held[-1].fileno() >= 0)\n")
    ours = stack.launcher("run", "--", "python", "-c", prog).stdout.split()
    kernel = stack.peer("python3", "-c", prog).stdout.split()
    assert ours == kernel and ours[1:] == ["EMFILE", "True"] and limit - 10 < int(ours[0]) < limit
