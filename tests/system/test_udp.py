"""UDP through mkstack against the Linux kernel, with unmodified Python programs."""

import json
import os
import subprocess
import sys
import time

import msgpack
import pytest
import zmq

from shared.ipc import endpoints
from tests.system.conftest import ROOT, ping_rtts, start_on_mkstack, summary

APPS = os.path.join(ROOT, "tests", "system", "apps")


def run_on_mkstack(stack, *args, timeout=120):
    return stack.launcher("run", "--", "python", *args, timeout=timeout)


@pytest.fixture
def echo_server(stack):
    p = start_on_mkstack(stack, os.path.join(APPS, "udp_echo.py"), "0.0.0.0", "9999")
    yield p
    p.kill()
    p.wait()


def test_echo_1000_random_sizes_byte_exact(stack, echo_server):
    out = stack.peer("python3", os.path.join(APPS, "udp_stress.py"), stack.addr, "9999", "1000", "11",
                     timeout=600).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"\nUDP echo, 1000 datagrams of 1-65507 bytes: {r}")
    assert r["ok"] == 1000
    assert r["retries"] <= 20, r
    ip = stack.stats()["ip"]
    assert ip["IpReasmOKs"] > 0 and ip["IpFragCreates"] > 0   # large ones crossed as fragments both ways


def test_mkstack_client_against_linux_server_and_econnrefused(stack):
    server = stack.peer_popen("python3", os.path.join(APPS, "udp_echo.py"), stack.peer_addr, "7000")
    try:
        assert server.stdout.readline().startswith("ready")
        out = run_on_mkstack(stack, os.path.join(APPS, "udp_client.py"), stack.peer_addr, "7000", "7001").stdout
    finally:
        server.kill()
        server.wait()
    r = json.loads(out.strip().splitlines()[-1])
    assert r["echoed"] == 100
    assert r["local"][0] == "0.0.0.0" and 32768 <= r["local"][1] <= 60999   # autobound to the wildcard, as Linux
    assert r["peer"] == [stack.peer_addr, 7001]
    assert r["connected"] == f"ConnectionRefusedError {111}"
    assert r["unconnected"] == "TimeoutError"


def test_large_ping_is_reassembled_and_answered_in_fragments(stack):
    out = stack.peer("ping", "-c", "5", "-i", "0.2", "-s", "8000", stack.addr).stdout
    assert "5 received" in out, out
    print(f"\nping -s 8000: {summary(ping_rtts(out))}")
    st = stack.stats()["ip"]
    assert st["IpReasmOKs"] >= 5 and st["IpFragOKs"] >= 5


def test_socket_semantics_match_the_kernel(stack):
    script = os.path.join(APPS, "readiness.py")
    kernel = stack.peer("python3", script, stack.peer_addr).stdout
    ours = run_on_mkstack(stack, script, stack.addr).stdout
    assert ours.splitlines() == kernel.splitlines()
    assert "threads: [100, 100, 100, 100]" in ours


def test_bursts_read_ahead_and_sends_without_waiting_match_the_kernel(stack):
    """Datagrams brought to the client in one reply are read as the kernel gives them
    (FIONREAD, MSG_PEEK, truncation, order, readiness); sends that do not wait keep
    their order and still report a pending ICMP error on the next send."""
    script = os.path.join(APPS, "udp_batch.py")
    kernel = stack.peer("python3", script, stack.peer_addr, "9").stdout
    ours = run_on_mkstack(stack, script, stack.addr, "9").stdout
    assert ours.splitlines() == kernel.splitlines()
    assert "rest in order: 19" in ours and "burst: True" in ours
    assert "second send: ConnectionRefusedError ECONNREFUSED" in ours
    stats = json.loads(stack.launcher("stats", "--services", "--json").stdout)["socket_server"]
    assert stats.get("datagrams_received_ahead", 0) > 0


def test_netstat_and_client_exit_closes_its_sockets(stack, echo_server):
    rows = json.loads(stack.launcher("netstat", "--json").stdout)
    assert any(r["local"] == "0.0.0.0:9999" and r["pid"] for r in rows)
    assert "0.0.0.0:9999" in stack.launcher("netstat").stdout
    run_on_mkstack(stack, "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                "s.bind(('0.0.0.0', 7777)); print(s.getsockname())")
    deadline = time.time() + 5
    while time.time() < deadline:
        rows = json.loads(stack.launcher("netstat", "--json").stdout)
        if not any(r["local"].endswith(":7777") for r in rows):
            break
        time.sleep(0.2)
    assert not any(r["local"].endswith(":7777") for r in rows)
    out = run_on_mkstack(stack, "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                      "s.bind(('0.0.0.0', 7777)); print('rebound')").stdout
    assert "rebound" in out


def test_bad_udp_datagrams_are_counted_and_dropped(stack):
    script = (
        "import socket, struct\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)\n"
        f"dst = '{stack.addr}'\n"
        "for i in range(50):\n"
        "    s.sendto(struct.pack('!HHHH', 1000, 9999, 13, 0x1234) + b'hello', (dst, 0))  # bad checksum\n"
        "    s.sendto(struct.pack('!HHHH', 1000, 9999, 99, 0) + b'short', (dst, 0))        # length > datagram\n"
        "    s.sendto(b'\\x03\\xe8\\x27', (dst, 0))                                          # truncated header\n")
    stack.peer("python3", "-c", script)
    time.sleep(0.5)
    udp = stack.stats()["udp"]
    assert udp["UdpInCsumErrors"] == 50
    assert udp["UdpInErrors"] == 150
    assert udp.get("UdpInDatagrams", 0) == 0
    assert sum(stack.restarts().values()) == 0


def client_id(stack):
    """A client id from the stack's hello socket, for this process (the kernel tells who we are)."""
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(endpoints.hello(endpoints.run_dir(stack.cfg.run_dir, stack.instance)))
    err, _, cid = s.recv(256).strip().partition(b" ")
    s.close()
    if err != b"0":
        raise OSError(int(err), cid.decode())
    return cid


def _raw_client(stack, ident=None):
    """A DEALER to the syscall endpoint: as ``ident``, or as the first thread of a new client."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, ident or client_id(stack) + b".1")
    s.setsockopt(zmq.RCVTIMEO, 3000)
    s.connect(endpoints.syscalls(endpoints.run_dir(stack.cfg.run_dir, stack.instance)))
    return s


def _call(s, *msg):
    s.send(msgpack.packb(list(msg), use_bin_type=True))
    return msgpack.unpackb(s.recv(), raw=False)


def test_socket_server_survives_garbage_and_keeps_clients_apart(stack, echo_server):
    import errno
    from shared.ipc.messages import SYS_BIND, SYS_CLOSE, SYS_HELLO, SYS_RECVFROM, SYS_SOCKET
    s = _raw_client(stack)
    assert _call(s, SYS_HELLO, 1, os.getpid(), False)[1] == 0
    for junk in (b"", b"\xc1", b"garbage" * 100, msgpack.packb({"x": 1})):
        s.send(junk)          # cannot be answered (no request id): counted and dropped
    for parts in ([b"a", b"b"], [msgpack.packb([SYS_SOCKET, 3, 2, 2, 0]), b"b", b"c"]):
        s.send_multipart(parts)     # a call is one part: several are counted and dropped, not answered
    assert _call(s, 1, 2, 3)[:2] == [2, errno.EINVAL]                         # unknown code, req 2
    assert _call(s, 0x5FF, 7)[:2] == [7, errno.EINVAL]                        # unknown call
    assert _call(s, SYS_SOCKET, 8, "two", 2, 0)[:2] == [8, errno.EINVAL]      # wrong type
    assert _call(s, SYS_SOCKET, 9, 2)[:2] == [9, errno.EINVAL]                # missing fields
    big = msgpack.packb([SYS_BIND, 10, 3, "x" * (2 << 20), 0])
    s.send(big)
    assert msgpack.unpackb(s.recv(), raw=False)[:2] == [10, errno.EMSGSIZE]  # oversized
    # far past the limit: never buffered whole (ZMQ_MAXMSGSIZE drops the connection), the client's DEALER
    # reconnects, the server lives on and answers the next call
    pid = next(x["pid"] for x in stack.status()["services"] if x["name"] == "socket_server")

    def rss_kb():
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS")).split()[1])
    before = rss_kb()
    s.send(msgpack.packb([SYS_BIND, 16, 3, "x" * (64 << 20), 0]))
    assert _call(s, SYS_SOCKET, 17, 2, 2, 0)[1] == 0
    assert next(x["pid"] for x in stack.status()["services"] if x["name"] == "socket_server") == pid
    assert rss_kb() - before < 16 << 10, (before, rss_kb())       # the 64 MiB frame was not taken in
    fd = _call(s, SYS_SOCKET, 11, 2, 2, 0)[2]
    assert _call(s, SYS_BIND, 12, fd, "10.66.0.2", 5555)[1] == 0
    assert _call(s, SYS_BIND, 13, fd + 100, "10.66.0.2", 5556)[1] == errno.EBADF
    assert _call(s, SYS_RECVFROM, 14, fd, -1, 0, 0)[1] == errno.EINVAL
    assert _call(s, SYS_RECVFROM, 15, fd, 10, 0, 0)[1] == errno.EAGAIN
    # an id the stack never issued is nobody; another client cannot touch the first one's fd
    stranger = _raw_client(stack, os.urandom(12).hex().encode() + b".1")
    assert _call(stranger, SYS_HELLO, 1, os.getpid(), False)[1] == errno.EPERM
    assert _call(stranger, SYS_CLOSE, 2, fd)[1] == errno.EPERM
    other = _raw_client(stack)
    assert _call(other, SYS_HELLO, 2, os.getpid(), False)[1] == 0
    assert _call(other, SYS_CLOSE, 3, fd)[1] == errno.EBADF
    # a NaN or endless timeout would sit at the top of the timer heap: refused
    assert _call(s, SYS_RECVFROM, 151, fd, 10, 0, float("nan"))[1] == errno.EINVAL
    assert _call(s, SYS_RECVFROM, 152, fd, 10, 0, 1e300)[1] == errno.EINVAL
    # arguments of types no handler expects: answered EINVAL, never left waiting (zmq.Again)
    unbound = _call(s, SYS_SOCKET, 39, 2, 2, 0)[2]
    odd = ([b"10.66.0.2", 5557], ["10.66.0.2", "5557"], [["x"], 1], [None, None], ["10.66.0.2", 2 ** 64 - 1],
           [{"a": 1}, 5558])
    for i, args in enumerate(odd):
        assert _call(s, SYS_BIND, 40 + i, unbound, *args)[:2] == [40 + i, errno.EINVAL], args
    assert _call(s, SYS_BIND, 49, unbound, "10.66.0.2", 5559)[1] == 0      # none of them half-bound it
    for i, args in enumerate(([fd, b"x", 0, 0], [fd, 10, "0", 0], [fd, 10, 0, "soon"], [fd, 10, 0, [1]])):
        assert _call(s, SYS_RECVFROM, 50 + i, *args)[:2] == [50 + i, errno.EINVAL], args
    assert _call(s, SYS_CLOSE, 16, fd)[1] == 0
    assert _call(s, SYS_CLOSE, 17, fd)[1] == errno.EBADF
    # identities too long to name a state file: refused, not a crash at the end of the turn
    for ident in (b"c" * 130, os.urandom(12).hex().encode() + b"." + b"9" * 200):
        long_id = _raw_client(stack, ident)
        assert _call(long_id, SYS_HELLO, 1, os.getpid(), False)[1] == errno.EINVAL
        long_id.close(0)
    # and the stack still serves real programs
    out = stack.peer("python3", os.path.join(APPS, "udp_stress.py"), stack.addr, "9999", "20", "1").stdout
    assert json.loads(out.strip().splitlines()[-1])["ok"] == 20
    assert stack.restarts()["socket_server"] == 0
    assert stack.stats()["socket_server"]["bad_calls"] >= 11


def test_run_refuses_to_fall_back_to_kernel_sockets(stack):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                        "-c", stack.config, "run", "--", "python3", "-S", "-c",
                        "import sys; print('socket' in sys.modules)"], capture_output=True, text=True)
    assert p.returncode == 0    # -S skips site: the program knowingly opted out
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "shared", "client", "site"),
               MKSTACK_ENDPOINT="ipc:///nonexistent")
    p = subprocess.run(["/usr/bin/python3", "-c", "import socket"], env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "mkstack: cannot load the client library" in p.stderr


def test_udp_bindings_survive_a_killed_udp_service(stack, echo_server):
    stress = [os.path.join(APPS, "udp_stress.py"), stack.addr, "9999", "30", "2"]
    assert json.loads(stack.peer("python3", *stress).stdout.strip().splitlines()[-1])["ok"] == 30
    for victim in ("udp", "ip", "netdev", "driver"):
        stack.launcher("kill", victim)
        time.sleep(0.6)
        r = json.loads(stack.peer("python3", *stress).stdout.strip().splitlines()[-1])
        assert r["ok"] == 30, (victim, r)
    assert stack.stats()["socket_server"]["udp_resyncs"] >= 1
    assert {"laddr": "0.0.0.0", "lport": 9999, "raddr": "0.0.0.0", "rport": 0}.items() <= next(
        p for p in json.loads(stack.launcher("show", "ports").stdout) if p["lport"] == 9999).items()


def test_a_restarted_udp_never_says_a_bound_port_is_unreachable(stack, echo_server):
    """Datagrams that reach a restarted udp before its bindings are back wait for
    them: before, they found no socket, and the peer's connected socket got the
    port unreachable as ECONNREFUSED although the server never went away."""
    probe = stack.peer_popen("python3", os.path.join(APPS, "udp_refused_probe.py"), stack.addr, "9999", "2.0")
    for _ in range(3):
        time.sleep(0.5)
        stack.launcher("kill", "udp")
    r = json.loads(probe.communicate(timeout=30)[0].strip().splitlines()[-1])
    assert r["refused"] == 0, r
    assert r["echoed"] > r["sent"] // 2, r


def test_chaos_over_the_layers_below_tcp(stack, echo_server):
    """ping and a UDP echo keep working while chaos kills driver, netdev, ip and udp at random."""
    ping = stack.peer_popen("ping", "-D", "-i", "0.05", "-w", "9", "-W", "1", stack.addr)
    chaos = stack.launcher("chaos", "--services", "driver,netdev,ip,udp", "--interval", "1", "--duration", "6",
                           "--seed", "3")
    kills = [line for line in chaos.stdout.splitlines() if " killed " in line]
    out, _ = ping.communicate(timeout=30)
    assert len(kills) >= 3, chaos.stdout
    assert sum(stack.restarts().values()) >= 3
    r = json.loads(stack.peer("python3", os.path.join(APPS, "udp_stress.py"), stack.addr, "9999", "30", "4")
                   .stdout.strip().splitlines()[-1])
    assert r["ok"] == 30                       # the binding survived whatever was killed
    received = int(out.split(" received")[0].split()[-1])
    assert received > 100                      # ~180 sent; each kill costs ~0.3 s of replies
    time.sleep(2.5)
    assert [c["used"] for c in stack.status()["skb"]["classes"]] == [0, 0]   # nothing leaked
    bad = stack.launcher("chaos", "--services", "nosuch", check=False)
    assert bad.returncode == 2
