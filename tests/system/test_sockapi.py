"""The rest of the BSD socket interface against the kernel: message flags, urgent
data, ioctls, service names, raw sockets, descriptors."""

import json
import os
import subprocess
import time

from tests.system.conftest import start_on_mkstack
from tests.system.test_tcp import APPS, launcher_popen, wait_line


def run_on_mkstack(stack, *args, timeout=120):
    return stack.launcher("run", "--", "python", *args, timeout=timeout)


def test_message_flags_and_urgent_data_match_the_kernel(stack):
    """MSG_PEEK/TRUNC/DONTWAIT/WAITALL/OOB/NOSIGNAL, SO_OOBINLINE, SIOCATMARK and
    FIONREAD: the same script on mkstack and on the kernel prints the same."""
    script = os.path.join(APPS, "msgflags.py")
    kernel = stack.peer("python3", script, stack.peer_addr).stdout
    ours = run_on_mkstack(stack, script, stack.addr).stdout
    assert ours.splitlines() == kernel.splitlines()
    assert "read stops at the mark: b'abc'" in ours and "oob: b'!'" in ours
    assert "MSG_WAITALL: b'1234567890'" in ours and "udp recv MSG_TRUNC: (10, b'0123')" in ours


def oob_exchange(stack, server_on_mkstack):
    script = os.path.join(APPS, "oob_pair.py")
    if server_on_mkstack:
        server = launcher_popen(stack, "run", "--", "python", "-u", script, "serve", "0.0.0.0", "7100")
        connect = ["peer", "--", "python3", script, "connect", stack.addr, "7100"]
    else:
        server = launcher_popen(stack, "peer", "--", "python3", "-u", script, "serve", stack.peer_addr, "7100")
        connect = ["run", "--", "python", script, "connect", stack.peer_addr, "7100"]
    try:
        wait_line(server, "listening")
        client = stack.launcher(*connect, timeout=60).stdout
        served = server.communicate(timeout=30)[0]
    finally:
        server.kill()
        server.wait()
    return served, client


def test_urgent_data_from_a_linux_client_reaches_an_mkstack_server_and_back(stack):
    served, client = oob_exchange(stack, server_on_mkstack=True)
    assert "read b'abc' 1 b'!' b'def'" in served      # mkstack read Linux's urgent byte
    assert "read b'abc' 1 b'#' b'def'" in client      # Linux read mkstack's


def test_urgent_data_from_an_mkstack_client_reaches_a_linux_server_and_back(stack):
    served, client = oob_exchange(stack, server_on_mkstack=False)
    assert "read b'abc' 1 b'!' b'def'" in served
    assert "read b'abc' 1 b'#' b'def'" in client


def test_service_names_and_host_names_as_the_stdlib_has_them(stack):
    code = ("import socket\n"
            "print(socket.getservbyname('http'), socket.getservbyname('domain', 'udp'), "
            "socket.getservbyport(22), socket.gethostbyname('localhost'), socket.gethostbyname('10.1'))\n"
            "print(sorted({(a[1], a[4]) for a in socket.getaddrinfo('127.0.0.1', 'https')}))\n"
            "try:\n    socket.getservbyname('no-such-service')\nexcept OSError as e:\n    print('unknown', e)\n")
    ours = run_on_mkstack(stack, "-c", code).stdout
    kernel = subprocess.run(["python3", "-c", code], capture_output=True, text=True, check=True).stdout
    assert ours == kernel
    assert ours.startswith("80 53 ssh 127.0.0.1 10.0.0.1")


def test_a_stdlib_raw_socket_ping_gets_replies_from_linux(stack):
    script = os.path.join(APPS, "raw_ping.py")
    for mode in ([], ["hdrincl"]):    # the header built by ip, then the caller's own (IPPROTO_RAW)
        out = run_on_mkstack(stack, script, stack.peer_addr, "5", *mode).stdout
        assert "5 sent, 5 received" in out, out
        assert out.count("ttl=64") == 5 and "ok=False" not in out


def test_unregistered_protocol_gets_protocol_unreachable_unless_a_raw_socket_takes_it(stack):
    probe = os.path.join(APPS, "proto_probe.py")
    before = stack.stats()["ip"].get("IpInUnknownProtos", 0)
    assert stack.peer("python3", probe, stack.addr, "253").stdout.strip() == "protocol unreachable"
    assert stack.stats()["ip"]["IpInUnknownProtos"] == before + 1
    receiver = launcher_popen(stack, "run", "--", "python", "-u", os.path.join(APPS, "raw_recv.py"), "253")
    try:
        wait_line(receiver, "ready")
        assert stack.peer("python3", probe, stack.addr, "253").stdout.strip() == "no error"
        out = receiver.communicate(timeout=30)[0]
    finally:
        receiver.kill()
        receiver.wait()
    assert f"got {stack.peer_addr} 253 b'mkstack probe'" in out


def test_transports_register_their_protocols_and_ip_keeps_them_across_a_restart(stack):
    assert json.loads(stack.launcher("show", "protocols").stdout)["handlers"] == {"6": "tcp", "17": "udp"}
    stack.launcher("kill", "ip")
    deadline = time.time() + 10
    while not (stack.restarts()["ip"] == 1 and all(s["state"] == "running" for s in stack.status()["services"])):
        assert time.time() < deadline
        time.sleep(0.1)
    assert json.loads(stack.launcher("show", "protocols").stdout)["handlers"] == {"6": "tcp", "17": "udp"}
    # a (malformed) TCP datagram goes to tcp, which drops it: no protocol unreachable
    probe = os.path.join(APPS, "proto_probe.py")
    assert stack.peer("python3", probe, stack.addr, "6").stdout.strip() == "no error"


def test_adaptive_napi_polls_through_a_burst_then_returns_to_interrupt_mode(stack):
    def napi():
        d = stack.stats()["driver"]
        return {k: d.get(k, 0) for k in ("napi_irq_polls", "napi_busy_polls", "napi_to_poll", "napi_to_irq",
                                          "rx_packets", "napi_mode")}
    before = napi()
    blast = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             f"for i in range(5000):\n    s.sendto(b'x' * 64, ('{stack.addr}', 9))\n")
    stack.peer("python3", "-c", blast)
    time.sleep(0.5)
    burst = napi()
    assert burst["rx_packets"] - before["rx_packets"] > 500
    assert burst["napi_busy_polls"] > before["napi_busy_polls"]       # kept reading without waiting
    assert burst["napi_to_poll"] > before["napi_to_poll"]
    assert burst["napi_to_irq"] > before["napi_to_irq"] and burst["napi_mode"] == "irq"
    stack.peer("ping", "-c", "3", "-i", "0.3", stack.addr)             # idle traffic: one frame per wake-up
    idle = napi()
    assert idle["napi_irq_polls"] >= burst["napi_irq_polls"] + 3
    assert idle["napi_busy_polls"] == burst["napi_busy_polls"] and idle["napi_mode"] == "irq"


def test_dup_fromfd_detach_and_makefile_modes_match_the_kernel(stack):
    script = os.path.join(APPS, "fdcompat.py")
    kernel = stack.peer("python3", script, stack.peer_addr).stdout
    ours = run_on_mkstack(stack, script, stack.addr).stdout
    assert ours.splitlines() == kernel.splitlines()
    assert "eof once the last fd closes: b''" in ours and "socket(fileno=): (b'to the re-attached socket'" in ours


def test_a_kernel_descriptor_is_refused_clearly_not_adopted(stack):
    code = ("import errno, os, socket\n"
            "r, w = os.pipe()\n"
            "for f in (lambda: socket.fromfd(r, socket.AF_INET, socket.SOCK_STREAM),\n"
            "          lambda: socket.socket(fileno=r)):\n"
            "    try:\n        f()\n    except OSError as e:\n        print(errno.errorcode[e.errno], e.strerror)\n")
    out = run_on_mkstack(stack, "-c", code).stdout.splitlines()
    # ENOTSUP is EOPNOTSUPP's name in errno.errorcode
    assert len(out) == 2 and all(line.startswith("ENOTSUP") and "kernel sockets" in line for line in out)


def test_the_less_common_names_of_the_module_match_the_kernel(stack):
    """Every name in the stdlib module's __all__ and every public method; interfaces,
    socket.sendfile with offset and count, recvmsg_into, dup/close of a detached
    descriptor, answered as the kernel answers them."""
    script = os.path.join(APPS, "module_surface.py")
    kernel = stack.peer("python3", script, stack.peer_addr).stdout
    ours = run_on_mkstack(stack, script, stack.addr).stdout
    assert ours.splitlines() == kernel.splitlines()
    assert "names: True" in ours and "bytes: True" in ours and "file position: 2500000" in ours



def test_sendfile_three_ways_matches_the_kernel(stack, tmp_path):
    """socket.sendfile, os.sendfile on the socket's fileno() (which the client library
    routes through mkstack) and asyncio's sock_sendfile/sendfile, 10 MB each, to a
    Linux sink that answers with a digest; the same transcript as on the kernel, and
    as the kernel's program sending to the same sink on mkstack."""
    data = tmp_path / "ten.bin"
    data.write_bytes(os.urandom(10 * 1000 * 1000))
    sink = stack.peer_popen("python3", os.path.join(APPS, "digest_sink.py"), "9000")
    try:
        assert sink.stdout.readline().startswith("ready")
        script = os.path.join(APPS, "sendfile_transcript.py")
        kernel = stack.peer("python3", script, "127.0.0.1", "9000", str(data)).stdout
        ours = run_on_mkstack(stack, script, stack.peer_addr, "9000", str(data)).stdout
        ours_sink = start_on_mkstack(stack, os.path.join(APPS, "digest_sink.py"), "9001")     # the other way
        try:
            to_mkstack = stack.peer("python3", script, stack.addr, "9001", str(data)).stdout
        finally:
            ours_sink.kill()
            ours_sink.wait()
    finally:
        sink.kill()
        sink.wait()
    assert ours.splitlines() == kernel.splitlines() == to_mkstack.splitlines()
    assert "loop.sock_sendfile: 10000000" in ours and "False" not in ours


def test_tcp_and_ip_options_match_the_kernel(stack):
    """IP_TTL, IP_TOS, TCP_KEEPIDLE/INTVL/CNT, TCP_MAXSEG, TCP_CONGESTION and TCP_INFO:
    defaults, values kept, the errors of misuse, and TCP_INFO of a live connection,
    as on the kernel."""
    echo = stack.peer_popen("python3", os.path.join(APPS, "tcp_echo_server.py"), "0.0.0.0", "7104")
    try:
        time.sleep(0.5)
        script = os.path.join(APPS, "sockopt_transcript.py")
        kernel = stack.peer("python3", script, "127.0.0.1", "7104").stdout
        ours = run_on_mkstack(stack, script, stack.peer_addr, "7104").stdout
    finally:
        echo.kill()
        echo.wait()
    assert ours.splitlines() == kernel.splitlines()
    assert "still echoes: 1000" in ours and "bytes_acked: 5001" in ours


TTL_TOS = """
import socket, sys
host = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 33)
u.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
for _ in range(5):
    u.sendto(b"x", (host, 7105))
t = socket.create_connection((host, 7104))
t.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 33)
t.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
t.sendall(b"y" * 3000)
got = 0
while got < 3000:
    got += len(t.recv(65536))
t.close()
print("done")
"""


def test_ip_ttl_and_tos_reach_the_wire(stack):
    """What a socket sets with IP_TTL and IP_TOS is in the headers Linux receives: the
    peer's iptables counts UDP and TCP packets from mkstack with TTL 33 and TOS 0x10."""
    for proto, port in (("udp", "7105"), ("tcp", "7104")):
        stack.peer("iptables", "-A", "INPUT", "-p", proto, "--dport", port, "-m", "ttl", "--ttl-eq", "33",
                   "-m", "tos", "--tos", "0x10")
    echo = stack.peer_popen("python3", os.path.join(APPS, "tcp_echo_server.py"), "0.0.0.0", "7104")
    try:
        time.sleep(0.5)
        assert run_on_mkstack(stack, "-c", TTL_TOS, stack.peer_addr).stdout.strip() == "done"
    finally:
        echo.kill()
        echo.wait()
    rules = stack.peer("iptables", "-L", "INPUT", "-v", "-x", "-n").stdout
    counts = {("udp" if "udp dpt" in line else "tcp"): int(line.split()[0]) for line in rules.splitlines()
              if "TTL match TTL == 33" in line}
    assert counts.get("udp", 0) == 5 and counts.get("tcp", 0) >= 3, rules


def test_so_reuseport_spreads_connections_and_datagrams_as_the_kernel(stack):
    """Two TCP listeners and two UDP sockets share a port; 40 connections and 40
    datagrams are spread over each pair by flow, and a socket without the option is
    refused the port, as on the kernel."""
    script = os.path.join(APPS, "reuseport_transcript.py")
    kernel = stack.peer("python3", script).stdout
    ours = run_on_mkstack(stack, script).stdout
    assert ours.splitlines() == kernel.splitlines()
    assert "both listeners got some: True" in ours and "a flow stays with its socket: True" in ours
