"""AF_UNIX sockets in mkstack: semantics against the kernel, two programs, passing sockets."""

import json
import os
import subprocess
import sys

from tests.system.test_tcp import APPS, ROOT, launcher_popen, wait_line


def test_unix_semantics_match_the_kernel(stack, tmp_path):
    script = os.path.join(APPS, "unix_transcript.py")
    (tmp_path / "k").mkdir()
    (tmp_path / "m").mkdir()
    kernel = subprocess.run([sys.executable, script, str(tmp_path / "k")], capture_output=True, text=True,
                            check=True, cwd=ROOT).stdout
    ours = stack.launcher("run", "--", "python", script, str(tmp_path / "m")).stdout
    assert ours.splitlines() == kernel.splitlines()
    assert "SCM_RIGHTS: (b'take this', 1, b'through the passed socket'" in ours
    assert "threads: [b'across threads']" in ours


def test_stream_echo_and_datagrams_between_two_programs(stack, tmp_path):
    server = launcher_popen(stack, "run", "--", "python", "-u", os.path.join(APPS, "unix_echo.py"), "serve",
                            str(tmp_path))
    try:
        wait_line(server, "ready")
        assert (tmp_path / "echo.sock").is_socket()           # bind made the path entry
        out = json.loads(stack.launcher("run", "--", "python", os.path.join(APPS, "unix_echo.py"), "client",
                                        str(tmp_path)).stdout)
    finally:
        server.kill()
        server.wait()
    assert out == {"stream_ok": True, "stream_bytes": 1_000_000, "datagrams": 50}


def test_a_passed_udp_socket_is_usable_by_the_receiver(stack, tmp_path):
    script = os.path.join(APPS, "fd_pass.py")
    giver = launcher_popen(stack, "run", "--", "python", "-u", script, "give", str(tmp_path), "7400")
    taker = None
    try:
        wait_line(giver, "ready")
        taker = launcher_popen(stack, "run", "--", "python", "-u", script, "take", str(tmp_path))
        line = wait_line(taker, "ready")
        assert "b'a udp socket' 2 2 7400" in line        # AF_INET, SOCK_DGRAM, its port
        wait_line(giver, "passed")
        reply = stack.peer("python3", "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                           f"s.settimeout(5); s.sendto(b'hello', ('{stack.addr}', 7400)); print(s.recv(100))").stdout
        assert reply.strip() == "b'taken: hello'"
        assert "answered b'hello'" in wait_line(taker, "answered")
    finally:
        for p in (giver, taker):
            if p is not None:
                p.kill()
                p.wait()


def test_seqpacket_is_refused_clearly(stack):
    code = ("import socket\ntry:\n    socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "except OSError as e:\n    print(e.errno, e.strerror)\n")
    assert stack.launcher("run", "--", "python", "-c", code).stdout.startswith("94 Socket type not supported")


CYCLES = """
import socket
for i in range(200):                       # a datagram socket in flight in its own queue, 60 kB with it
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    socket.send_fds(a, [b"x" * 60000], [b.fileno()])
    a.close()
    b.close()
for i in range(100):                       # two stream sockets, each in flight in the other's queue
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    socket.send_fds(a, [b"y"], [a.fileno()])
    socket.send_fds(b, [b"z"], [b.fileno()])
    a.close()
    b.close()
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sent = [socket.send_fds(a, [b""], [c.fileno()]) for _ in range(1000)]   # no byte to carry them: nothing passed
b.setblocking(False)
try:
    got = socket.recv_fds(b, 10, 10)
except BlockingIOError:
    got = "nothing to read"
print(set(sent), got, "done")
"""


def test_sockets_in_flight_in_unreachable_cycles_are_freed(stack):
    """Issue 23: sockets passed with SCM_RIGHTS into cycles and closed (a datagram socket
    sent over itself; two stream sockets in each other's queue) are collected as Linux's
    unix_gc does; before, each round kept its 60 kB datagram's skb until the program
    exited, and 64 rounds filled the socket server's share of the 64 kB slots."""
    kernel = subprocess.run([sys.executable, "-c", CYCLES], capture_output=True, text=True, timeout=60).stdout
    ours = stack.launcher("run", "--", "python", "-c", CYCLES, timeout=60).stdout
    assert ours == kernel == "{0} nothing to read done\n"
    assert stack.stats()["socket_server"]["unix_gc_collected"] >= 400
