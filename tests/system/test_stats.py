"""launcher.py stats: the MIB counters move as the traffic says they must."""

import os

from tests.system.test_tcp import APPS, launcher_popen, wait_line


def snmp(stack):
    return stack.stats()["snmp"]


def test_snmp_counters_follow_ping_udp_and_tcp_traffic(stack):
    a = snmp(stack)
    assert a["IpForwarding"] == 2 and a["IpDefaultTTL"] == 64
    stack.peer("ping", "-c", "3", "-i", "0.2", stack.addr)
    b = snmp(stack)
    assert b["IcmpInEchos"] - a["IcmpInEchos"] == 3 and b["IcmpOutEchoReps"] - a["IcmpOutEchoReps"] == 3
    assert b["IpInReceives"] - a["IpInReceives"] >= 3 and b["IpInDelivers"] - a["IpInDelivers"] >= 3

    stack.peer("python3", "-c", "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
               f".sendto(b'x', ('{stack.addr}', 9))")
    c = snmp(stack)
    assert c["UdpNoPorts"] - b["UdpNoPorts"] == 1
    assert c["IcmpOutDestUnreachs"] - b["IcmpOutDestUnreachs"] == 1

    server = launcher_popen(stack, "run", "--", "python", "-u", os.path.join(APPS, "tcp_echo_server.py"),
                            "0.0.0.0", "7300")
    try:
        wait_line(server, "ready")
        stack.peer("python3", "-c", "import socket; s = socket.create_connection"
                   f"(('{stack.addr}', 7300)); s.sendall(b'hi'); s.recv(2); s.close()")
        refused = stack.launcher("run", "--", "python", "-c", "import socket\ntry:\n    socket.create_connection"
                                 f"(('{stack.peer_addr}', 9), timeout=5)\nexcept ConnectionRefusedError:\n"
                                 "    print('refused')").stdout
        assert refused.strip() == "refused"
    finally:
        server.kill()
        server.wait()
    d = snmp(stack)
    assert d["TcpPassiveOpens"] - c["TcpPassiveOpens"] == 1
    assert d["TcpInSegs"] - c["TcpInSegs"] >= 3 and d["TcpOutSegs"] - c["TcpOutSegs"] >= 3
    assert d["TcpActiveOpens"] - c["TcpActiveOpens"] == 1 and d["TcpAttemptFails"] - c["TcpAttemptFails"] == 1
    assert d["UdpInDatagrams"] == c["UdpInDatagrams"]


def test_stats_prints_nstat_style_rows(stack):
    stack.peer("ping", "-c", "1", stack.addr)
    out = stack.launcher("stats").stdout.splitlines()
    assert out[0] == f"#mkstack {stack.instance}"
    rows = dict(line.split() for line in out[1:])
    assert int(rows["IcmpInEchos"]) >= 1 and "IpForwDatagrams" not in rows      # zero rows are left out
    every = dict(line.split() for line in stack.launcher("stats", "--all").stdout.splitlines()[1:])
    assert every["IpForwDatagrams"] == "0" and "TcpActiveOpens" in every
