"""TCP through mkstack against the Linux kernel: curl, urllib, http.server, loss, concurrency, errors."""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from tests.system.conftest import ROOT, start_on_mkstack

APPS = os.path.join(ROOT, "tests", "system", "apps")
SIZE = 50_000_000
MID = 15_000_000


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def launcher_popen(stack, *args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance,
                             "-c", stack.config, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_line(p, prefix, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and p.poll() is not None:
            break
    raise AssertionError(f"no {prefix!r} line; exit {p.poll()}")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("www")
    with open(d / "big", "wb") as f:
        f.write(os.urandom(SIZE))
    with open(d / "mid", "wb") as f:          # for the lossy runs: slow by nature, 15 MB shows as much
        f.write(os.urandom(MID))
    return d, sha(d / "big")


@pytest.fixture
def servers(stack, files):
    """http.server on mkstack (port 8080) and on the kernel in the peer namespace (port 8000)."""
    d, digest = files
    ours = launcher_popen(stack, "run", "--", "python", "-u", "-m", "http.server", "8080", "--directory", str(d))
    kern = launcher_popen(stack, "peer", "--", "python3", "-u", "-m", "http.server", "8000", "--bind",
                          stack.peer_addr, "--directory", str(d))
    try:
        wait_line(ours, "Serving HTTP")
        wait_line(kern, "Serving HTTP")
        yield d, digest
    finally:
        for p in (ours, kern):
            p.kill()
            p.wait()


def curl_download(stack, dest, name="big"):
    out = stack.peer("curl", "-s", "-S", "-m", "180", "-o", str(dest), "-w", "%{http_code} %{speed_download}",
                     f"http://{stack.addr}:8080/{name}", timeout=200).stdout.split()
    return out[0], float(out[1]) / 1e6


def urllib_download(stack, name="big"):
    code = ("import hashlib, time, urllib.request\n"
            "t = time.time()\n"
            f"d = urllib.request.urlopen('http://{stack.peer_addr}:8000/{name}', timeout=60).read()\n"
            "print(len(d), hashlib.sha256(d).hexdigest(), len(d) / (time.time() - t) / 1e6)\n")
    n, digest, mbps = stack.launcher("run", "--", "python", "-c", code, timeout=200).stdout.split()
    return int(n), digest, float(mbps)


def test_curl_and_urllib_50mb_byte_exact(stack, servers, tmp_path):
    _, digest = servers
    code, mbps = curl_download(stack, tmp_path / "got")
    assert code == "200" and sha(tmp_path / "got") == digest
    n, got, up = urllib_download(stack)
    assert n == SIZE and got == digest
    print(f"\n50 MB: mkstack -> kernel (curl) {mbps:.1f} MB/s; kernel -> mkstack (urllib) {up:.1f} MB/s")
    info = stack.peer("ss", "-tin", "state", "established", f"dst {stack.addr}").stdout
    rows = json.loads(stack.launcher("show", "tcp").stdout)
    assert all(r["state"] in ("LISTEN", "TIME-WAIT", "FIN-WAIT-2", "CLOSED") or r["sack"] for r in rows), rows
    del info


def test_kernel_negotiates_wscale_timestamps_and_sack(stack):
    srv = launcher_popen(stack, "run", "--", "python", os.path.join(APPS, "tcp_echo_server.py"), "0.0.0.0", "7000")
    try:
        wait_line(srv, "ready")
        # this iproute2 (6.1) prints no ts/sack even between two kernel sockets, so
        # the kernel's own TCP_INFO (tcpi_options) is read beside `ss -ti`
        script = ("import socket, subprocess, time\n"
                  f"s = socket.create_connection(('{stack.addr}', 7000))\n"
                  "s.sendall(b'x' * 100000)\n"
                  "time.sleep(0.3)\n"
                  "info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)\n"
                  "print('tcpi_options', info[5], 'wscales', info[6] & 15, info[6] >> 4)\n"
                  "print(subprocess.run(['ss', '-tin', 'dport', '= :7000'], capture_output=True, text=True).stdout)\n")
        out = stack.peer("python3", "-c", script).stdout
    finally:
        srv.kill()
        srv.wait()
    opts = int(out.split("tcpi_options")[1].split()[0])
    assert opts & 1 and opts & 2 and opts & 4, out       # TCPI_OPT_TIMESTAMPS, _SACK, _WSCALE
    assert "wscale:7,10" in out, out                        # ss: we scale by 7, the kernel by 10
    assert "mss:1448" in out                                # 1460 less the timestamp option


def test_200_concurrent_connections_echo_100kb(stack):
    srv = launcher_popen(stack, "run", "--", "python", os.path.join(APPS, "tcp_echo_server.py"), "0.0.0.0", "7001")
    try:
        wait_line(srv, "ready")
        out = stack.peer("python3", os.path.join(APPS, "tcp_echo_clients.py"), stack.addr, "7001", "200", "100000",
                         timeout=300).stdout
    finally:
        srv.kill()
        srv.wait()
    r = json.loads(out.strip().splitlines()[-1])
    print(f"\n200 connections x 100 KB echoed: {r}")
    assert r["ok"] == 200, r


def test_connection_errors_match_the_kernel(stack):
    rst_server = ("import socket, struct\n"
                  "s = socket.create_server(('{addr}', 7101))\n"
                  "print('ready', flush=True)\n"
                  "while True:\n"
                  "    c, _ = s.accept()\n"
                  "    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n"
                  "    c.close()\n")
    stack.peer("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "7102", "-j", "DROP")
    rst = stack.peer_popen("python3", "-c", rst_server.format(addr=stack.peer_addr))
    try:
        assert rst.stdout.readline().startswith("ready")
        args = [os.path.join(APPS, "tcp_errors.py"), stack.peer_addr, "7100", "7101", "7102"]
        ours = json.loads(stack.launcher("run", "--", "python", *args, timeout=60).stdout.strip().splitlines()[-1])
        kern = json.loads(stack.peer("python3", *args, timeout=60).stdout.strip().splitlines()[-1])
    finally:
        rst.kill()
        rst.wait()
    assert ours == kern
    assert ours["refused"] == "ConnectionRefusedError ECONNREFUSED"
    assert ours["reset"] == "ConnectionResetError ECONNRESET"
    assert ours["timeout"] == "TimeoutError timed out"
    # and the kernel connecting to a closed mkstack port is refused by our RST
    refused = stack.peer("python3", "-c", f"import socket; socket.create_connection(('{stack.addr}', 9), timeout=3)",
                         check=False)
    assert "ConnectionRefusedError" in refused.stderr


def test_both_transfers_survive_3_percent_loss_each_way(stack, servers, tmp_path):
    d, _ = servers
    digest = sha(d / "mid")
    # mkstack -> kernel: the peer's INPUT chain drops; kernel -> mkstack: mkstack's own injector
    # (an iptables DROP on the kernel's output is no loss: its TCP just resends at once)
    stack.peer("iptables", "-A", "INPUT", "-i", "tap0", "-m", "statistic", "--mode", "random",
               "--probability", "0.03", "-j", "DROP")
    stack.launcher("impair", "tap0", "--rx-loss", "0.03", "--seed", "7")
    code, mbps = curl_download(stack, tmp_path / "got", "mid")
    assert code == "200" and sha(tmp_path / "got") == digest
    n, got, up = urllib_download(stack, "mid")
    assert n == MID and got == digest
    dropped_by_iptables = int(stack.peer("iptables", "-L", "INPUT", "-v", "-n", "-x").stdout.splitlines()[2].split()[0])
    dropped_by_us = stack.stats()["netdev"]["devices"]["tap0"]["rx_impaired"]
    print(f"\n15 MB with 3% loss each way: mkstack -> kernel {mbps:.1f} MB/s, kernel -> mkstack {up:.1f} MB/s; "
          f"dropped {dropped_by_iptables} + {dropped_by_us}; retransmitted {stack.stats()['tcp']['TcpRetransSegs']}")
    assert dropped_by_iptables > 15 and dropped_by_us > 15      # frames: with TSO one frame holds up to 64 KB


def test_garbage_segments_never_crash_tcp(stack):
    srv = launcher_popen(stack, "run", "--", "python", os.path.join(APPS, "tcp_echo_server.py"), "0.0.0.0", "7008")
    try:
        wait_line(srv, "ready")
        stack.peer("python3", os.path.join(APPS, "tcp_garbage.py"), stack.addr, "3000", "5", "7008", "7009")
        time.sleep(0.5)
        out = stack.peer("python3", os.path.join(APPS, "tcp_echo_clients.py"), stack.addr, "7008", "5", "50000").stdout
    finally:
        srv.kill()
        srv.wait()
    tcp = stack.stats()["tcp"]
    assert json.loads(out.strip().splitlines()[-1])["ok"] == 5
    assert stack.restarts()["tcp"] == 0 and tcp.get("err_message", 0) == 0
    assert tcp["TcpInCsumErrors"] > 0 and tcp["TcpInErrs"] > tcp["TcpInCsumErrors"]   # options too
    assert tcp["TcpOutRsts"] > 100                     # for the closed port and stray ACKs


def test_a_peer_that_vanishes_gives_etimedout_not_a_hang(tmp_path):
    from tests.system.conftest import DEFAULT_CONFIG, Stack, new_instance
    cfg = tmp_path / "quick.toml"
    cfg.write_text(open(DEFAULT_CONFIG).read().replace("retries2 = 15", "retries2 = 3"))
    s = Stack(new_instance(), str(cfg))
    try:
        s.launcher("up")
        sink = s.peer_popen("python3", "-c", (
            "import socket\n"
            f"l = socket.create_server(('{s.peer_addr}', 7010))\n"
            "print('ready', flush=True)\n"
            "c, _ = l.accept()\n"
            "while c.recv(65536): pass\n"))
        assert sink.stdout.readline().startswith("ready")
        app = launcher_popen(s, "run", "--", "python", "-u", "-c", (
            "import socket, time\n"
            f"c = socket.create_connection(('{s.peer_addr}', 7010))\n"
            "print('connected', flush=True)\n"
            "t = time.monotonic()\n"
            "try:\n"
            "    while True: c.sendall(b'x' * 65536)\n"
            "except OSError as e:\n"
            "    print('error', type(e).__name__, e.errno, round(time.monotonic() - t, 1), flush=True)\n"))
        wait_line(app, "connected")
        time.sleep(0.5)
        s.peer("iptables", "-A", "INPUT", "-i", "tap0", "-j", "DROP")     # the peer falls silent
        s.peer("iptables", "-A", "OUTPUT", "-o", "tap0", "-j", "DROP")
        line = wait_line(app, "error", timeout=60)
        assert line.split()[1:3] == ["TimeoutError", "110"], line
        sink.kill()
        app.wait(10)
    finally:
        s.launcher("down", check=False)
    assert s.leftovers() == []


def test_spoofed_syns_do_not_silence_a_backlog_5_server(stack, tmp_path):
    """SYN cookies: 5 spoofed SYNs a second at `http.server` (backlog 5) while curl
    from the peer fetches once a second; every fetch answers within 1 s."""
    (tmp_path / "index.html").write_text("still here\n")
    web = launcher_popen(stack, "run", "--", "python", "-u", "-m", "http.server", "8080", "--directory",
                         str(tmp_path))
    flood = None
    try:
        wait_line(web, "Serving HTTP")
        flood = stack.peer_popen("python3", os.path.join(APPS, "syn_flood.py"), stack.addr, "8080", "5", "9")
        time.sleep(2.0)                    # the half-open queue is full by now
        slow = []
        for _ in range(6):                 # the 2-minute run: make synflood (tests/bench/synflood.py)
            t = time.monotonic()
            r = stack.peer("curl", "-s", "--max-time", "1", f"http://{stack.addr}:8080/index.html", check=False)
            took = time.monotonic() - t
            if r.returncode != 0 or r.stdout != "still here\n":
                slow.append(f"curl exit {r.returncode} after {took:.2f} s")
            time.sleep(max(0.0, 1.0 - took))
        out, _ = flood.communicate(timeout=60)
        assert "sent" in out, out
    finally:
        for p in (web, flood):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert slow == [], slow
    tcp = stack.stats()["tcp"]
    assert tcp["TcpExtSyncookiesSent"] >= 10 and tcp["TcpExtSyncookiesRecv"] >= 1, tcp


def test_asyncio_writer_to_a_closed_peer_ends_as_on_the_kernel(stack):
    """write()+drain() in a loop to a server that accepted and closed: the peer's reset
    in CLOSE-WAIT ends the loop with BrokenPipeError (EPIPE, as Linux's tcp_reset
    sets it there), not a hang and not ECONNRESET."""
    closer = stack.peer_popen("python3", os.path.join(APPS, "accept_close.py"), "7103")
    try:
        assert closer.stdout.readline().startswith("ready")
        args = [os.path.join(APPS, "drain_after_reset.py"), stack.peer_addr, "7103"]
        ours = stack.launcher("run", "--", "python", *args, timeout=60).stdout.strip()
        kern = stack.peer("python3", *args, timeout=60).stdout.strip()
    finally:
        closer.kill()
        closer.wait()
    assert ours == kern == "ended by BrokenPipeError"


RECONNECT = """
import json, socket, sys, time
took = []
for i in range(5):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], 40123))
    s.settimeout(3)
    t = time.monotonic()
    try:
        s.connect((sys.argv[2], int(sys.argv[3])))
        while s.recv(100):
            pass
        took.append(round(time.monotonic() - t, 3))
    except OSError as e:
        took.append(repr(e))
    s.close()
    time.sleep(0.05)
print(json.dumps(took))
"""


def test_a_quick_reconnect_from_the_same_port_ends_time_wait(stack):
    """RFC 6191: the server closes first (its side is in TIME-WAIT); the client at
    once connects again from the same port. The SYN's newer timestamp opens a new
    connection (before: a challenge ACK, the kernel's RST ignored, a 60 s stall)."""
    server = start_on_mkstack(stack, os.path.join(APPS, "accept_close.py"), "7104")
    try:
        out = stack.peer("python3", "-c", RECONNECT, stack.peer_addr, stack.addr, "7104", timeout=60).stdout
    finally:
        server.kill()
        server.wait()
    took = json.loads(out)
    assert all(isinstance(t, float) and t < 1.0 for t in took), took
    assert stack.stats()["tcp"]["TcpExtTWRecycled"] >= 4


def test_a_fuzzed_segment_stream_arrives_byte_exact(stack):
    """A sender made by hand (raw socket in the peer): 3,500 one-byte islands ahead of a gap,
    600 overlapping segments, segments across both window edges, then the stream in order.
    The out-of-order queue stays within its bound (the islands past 256 blocks dropped and
    counted, resent later in order), and the sink's digest equals the stream's."""
    sink = start_on_mkstack(stack, os.path.join(APPS, "digest_sink.py"), "7105")
    rule = ["OUTPUT", "-p", "tcp", "--sport", "40777", "--tcp-flags", "RST", "RST", "-j", "DROP"]
    stack.peer("iptables", "-A", *rule)        # the peer kernel knows nothing of the raw connection
    try:
        out = stack.peer("python3", os.path.join(APPS, "tcp_seg_fuzz.py"), stack.addr, "7105", "40777", "300000",
                         "11", timeout=120).stdout
    finally:
        stack.peer("iptables", "-D", *rule, check=False)
        sink.kill()
        sink.wait()
    res = json.loads(out.strip().splitlines()[-1])
    assert res.get("answer") == res.get("digest") and res["acked"] >= 300000, res
    tcp = stack.stats()["tcp"]
    assert tcp["TcpExtTCPOFODrop"] > 0 and stack.restarts()["tcp"] == 0, tcp


def test_a_send_that_returned_is_in_the_stream_before_another_threads_shutdown(stack):
    """A worker thread sends 20 KB in 1 KB sends (most posted without waiting), signals, and
    the main thread shuts the socket down: as on the kernel, every byte arrives, and on this
    connection. (Before calls were fenced by other threads' posts, the shutdown overtook them
    in ~80% of rounds; the posts refused for it were replayed later on whatever socket had
    the same number by then: bytes of one connection arrived on the next.)"""
    sink = stack.peer_popen("python3", os.path.join(APPS, "handoff_send.py"), "sink", "7104")
    try:
        assert sink.stdout.readline().startswith("listening")
        out = stack.launcher("run", "--", "python", os.path.join(APPS, "handoff_send.py"), "run", stack.peer_addr,
                             "7104", "100", "20", timeout=120).stdout
    finally:
        sink.kill()
        sink.wait()
    got = json.loads(out.strip().splitlines()[-1])
    assert got["rounds"] == 100 and got["short"] == 0, got
    assert stack.stats()["socket_server"].get("posts", 0) > 0          # the sends were posted
