"""launcher.py capture: netdev's packet taps, as lines and as a pcap file tshark reads."""

import os
import signal
import subprocess

from tests.system.test_tcp import launcher_popen, wait_line


def test_capture_of_a_curl_download_opens_in_tshark_with_the_handshake(stack, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "f").write_bytes(os.urandom(200_000))
    server = launcher_popen(stack, "run", "--", "python", "-u", "-m", "http.server", "8080", "--directory", str(www))
    pcap = tmp_path / "dl.pcap"
    cap = launcher_popen(stack, "capture", "tap0", "-w", str(pcap))
    try:
        wait_line(server, "Serving HTTP")
        wait_line(cap, "capturing on tap0")
        code = stack.peer("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                          f"http://{stack.addr}:8080/f").stdout
        assert code == "200 200000"
        cap.send_signal(signal.SIGINT)
        tail = cap.communicate(timeout=20)[0]
    finally:
        for p in (server, cap):
            p.kill()
            p.wait()
    assert "packets captured" in tail
    fields = ["-T", "fields", "-e", "ip.src", "-e", "tcp.flags.str"]
    syns = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tcp.flags.syn == 1", *fields],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    # the kernel's SYN, then mkstack's SYN-ACK, as tshark decodes them from the file
    assert syns[0].split("\t")[0] == stack.peer_addr and "S" in syns[0] and "A" not in syns[0].split("\t")[1]
    assert syns[1].split("\t")[0] == stack.addr and "S" in syns[1] and "A" in syns[1]
    http = subprocess.run(["tshark", "-r", str(pcap), "-Y", "http.response.code == 200"],
                          capture_output=True, text=True, check=True).stdout
    assert "200 OK" in http
    total = subprocess.run(["tshark", "-r", str(pcap), "-Y", "tcp.len > 0 && ip.src == " + stack.addr,
                            "-T", "fields", "-e", "tcp.len"], capture_output=True, text=True, check=True).stdout
    assert sum(int(x) for x in total.split()) > 200_000     # every byte of the body is in the file


def test_capture_prints_one_line_per_frame_and_stops_after_count(stack):
    cap = launcher_popen(stack, "capture", "tap0", "-c", "4")
    try:
        wait_line(cap, "capturing on tap0")
        stack.peer("ping", "-c", "2", "-i", "0.2", stack.addr)
        out = cap.communicate(timeout=20)[0]
    finally:
        cap.kill()
        cap.wait()
    lines = [line for line in out.splitlines() if " tap0 " in line]
    assert len(lines) == 4 and "4 packets captured" in out
    assert any(f"In  IP {stack.peer_addr} > {stack.addr}: ICMP echo request" in line for line in lines)
    assert any(f"Out IP {stack.addr} > {stack.peer_addr}: ICMP echo reply" in line for line in lines)
    assert stack.stats()["netdev"]["devices"]["tap0"]["tapped"] >= 4
