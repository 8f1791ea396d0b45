"""The Linux kernel ARPs for mkstack and pings it through the TAP."""

import json

from tests.system.conftest import ping_rtts, summary


def test_ping_100_fast_loses_nothing(stack):
    out = stack.peer("ping", "-c", "100", "-i", "0.01", "-W", "1", stack.addr).stdout
    assert "100 received" in out, out
    rtts = ping_rtts(out)
    assert len(rtts) == 100
    print(f"\nping RTT through mkstack: {summary(rtts)}")


def test_kernel_learned_our_mac_by_arp(stack):
    stack.peer("ping", "-c", "1", stack.addr)
    neigh = stack.peer("ip", "neigh", "show", stack.addr).stdout
    assert "02:6d:6b:00:00:02" in neigh and ("REACHABLE" in neigh or "STALE" in neigh or "DELAY" in neigh)
    ours = json.loads(stack.launcher("show", "neigh").stdout)
    assert any(e["ip"] == stack.peer_addr and e["mac"] for e in ours)


def test_ping_with_payload_patterns_and_sizes(stack):
    for size in ("0", "1", "56", "1000", "1472"):
        out = stack.peer("ping", "-c", "2", "-i", "0.05", "-s", size, "-p", "a5", stack.addr, check=False).stdout
        assert "2 received" in out, (size, out)


def test_unknown_ip_protocol_gets_protocol_unreachable(stack):
    # a raw IP datagram with protocol 253 (RFC 3692 experimental) from the peer
    script = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253); "
              "r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.settimeout(3); "
              f"s.sendto(b'hello', ('{stack.addr}', 0)); d = r.recv(2048); print(d[20], d[21])")
    out = stack.peer("python3", "-c", script).stdout.split()
    assert out == ["3", "2"]        # destination unreachable, protocol unreachable
    assert stack.stats()["ip"]["IpInUnknownProtos"] == 1


def test_counters_move(stack):
    stack.peer("ping", "-c", "5", "-i", "0.05", stack.addr)
    st = stack.stats()
    assert st["ip"]["IcmpInEchos"] >= 5 and st["ip"]["IcmpOutEchoReps"] >= 5
    tap = st["netdev"]["devices"]["tap0"]
    assert tap["rx_packets"] >= 6 and tap["tx_packets"] >= 6
    assert st["driver"]["rx_packets"] == tap["rx_packets"]
