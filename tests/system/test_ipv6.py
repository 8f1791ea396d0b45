"""IPv6's first step against the kernel: ping -6 to mkstack's global and link-local
addresses through Neighbor Discovery both ways, what is not built yet refused with a
Parameter Problem, and a killed ip that comes back answering (configs/ipv6.toml)."""

import json
import os
import re
import time

import pytest

from tests.system.conftest import ROOT, _running

IPV6_CONFIG = os.path.join(ROOT, "configs", "ipv6.toml")
GLOBAL, LINK_LOCAL = "fd66::2", "fe80::6d:6bff:fe00:2"


@pytest.fixture(scope="module")
def stack6():
    """One stack for the module (each test reads counters as differences): a stack's start and stop
    cost ~4 s of make test's time."""
    yield from _running(IPV6_CONFIG)


def lost(out: str) -> int:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m.group(1)) - int(m.group(2))


def test_ping6_global_and_link_local_through_neighbor_discovery(stack6):
    dev = stack6.status()["devices"][0]
    assert dev["addr6"] == [f"{GLOBAL}/64", f"{LINK_LOCAL}/64"]
    for target in (GLOBAL, f"{LINK_LOCAL}%tap0"):
        out = stack6.peer("ping", "-6", "-c", "20", "-i", "0.05", "-W", "2", target, check=False).stdout
        assert lost(out) == 0, out
    # the kernel resolved us with a solicitation we answered; we resolved it by our own (or learned it
    # from its solicitation, RFC 4861 7.2.3): either way its cache holds our MAC, confirmed
    neigh = stack6.peer("ip", "-6", "neigh", "show", "dev", "tap0").stdout
    assert re.search(rf"{GLOBAL} lladdr 02:6d:6b:00:00:02 (REACHABLE|STALE|DELAY)", neigh), neigh
    stats = stack6.stats()["ip"]
    assert stats["Icmp6InType128"] >= 40 and stats["Icmp6OutType129"] >= 40
    assert stats["Icmp6InType135"] >= 1 and stats["Icmp6OutNeighborAdvertisements"] >= 1
    table = stack6.launcher("stats").stdout
    assert re.search(r"Ip6InReceives\s+\d+", table) and re.search(r"Icmp6InType128\s+\d+", table), table


def test_what_is_not_built_yet_is_refused_with_a_parameter_problem(stack6):
    """UDP over IPv6 (AF_INET6 sockets are not built): the kernel's datagram gets ICMPv6
    Parameter Problem 'unrecognized next header' pointing at the next-header field."""
    probe = ("import socket; r = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6); "
             "r.settimeout(2); u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
             f"u.sendto(b'x', ('{GLOBAL}', 9)); m = r.recvfrom(2000)[0]\n"
             "while m[0] != 4: m = r.recvfrom(2000)[0]   # past the neighbour advertisement\n"
             "print(m[0], m[1], int.from_bytes(m[4:8], 'big'))")
    before = stack6.stats()["ip"].get("Ip6InUnknownProtos", 0)
    assert stack6.peer("python3", "-c", probe).stdout.split() == ["4", "1", "6"]
    assert stack6.stats()["ip"]["Ip6InUnknownProtos"] == before + 1


def test_fragmented_echoes_both_ways_up_to_65000_bytes(stack6):
    before = stack6.stats()["ip"]
    for size in (1453, 3000, 20000, 65000):          # 1453: the first that needs a second fragment
        out = stack6.peer("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "-s", str(size), GLOBAL,
                          check=False).stdout
        assert lost(out) == 0, (size, out)
    ip = stack6.stats()["ip"]
    grew = {k: ip.get(k, 0) - before.get(k, 0) for k in ("Ip6ReasmOKs", "Ip6FragOKs", "Ip6ReasmFails")}
    assert grew == {"Ip6ReasmOKs": 12, "Ip6FragOKs": 12, "Ip6ReasmFails": 0}, grew
    # the kernel reassembled ours: its own counters say so
    snmp6 = stack6.peer("cat", "/proc/net/snmp6").stdout
    assert int(re.search(r"Ip6ReasmOKs\s+(\d+)", snmp6).group(1)) >= 12   # the peer only ever sees these


def test_ping6_resumes_after_ip_is_killed(stack6):
    assert lost(stack6.peer("ping", "-6", "-c", "3", "-i", "0.1", GLOBAL).stdout) == 0
    stack6.kill_when_running("ip")
    time.sleep(0.5)
    out = stack6.peer("ping", "-6", "-c", "10", "-i", "0.1", "-W", "2", GLOBAL, check=False).stdout
    assert lost(out) == 0, out


def tap_queue_drops(stack) -> int:
    """Frames the kernel dropped because the TAP's queue to the driver was full."""
    link = json.loads(stack.peer("ip", "-j", "-s", "link", "show", "dev", "tap0").stdout)[0]
    return link["stats64"]["tx"]["dropped"]


def test_10000_malformed_ipv6_frames_are_each_counted_and_nothing_restarts(stack6):
    mac = stack6.status()["devices"][0]["mac"]
    restarts = sum(stack6.restarts().values())          # the kill test's, if it ran first
    before = stack6.stats()["ip"].get("Ip6InReceives", 0)
    dropped = tap_queue_drops(stack6)
    out = stack6.peer("python3", os.path.join(ROOT, "tests", "system", "garbage.py"), "tap0", mac, "10000", "6",
                      "v6").stdout
    sent = eval(out.strip().splitlines()[-1])      # the script prints a dict literal of counts
    assert sum(sent.values()) >= 9500, sent
    # a burst can overflow the TAP's queue in the kernel, before the driver reads it: those
    # never reached the stack (a few dozen at most; the kernel counts them)
    dropped = tap_queue_drops(stack6) - dropped
    assert dropped < 500, dropped
    entered = sum(sent.values()) - dropped
    deadline = time.monotonic() + 10           # ip may still be working through the burst
    while stack6.stats()["ip"].get("Ip6InReceives", 0) - before < entered and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sum(stack6.restarts().values()) == restarts
    ip = stack6.stats()["ip"]
    assert ip["Ip6InReceives"] - before >= entered   # every one that entered reached ip and was counted there
    for counter in ("Ip6InHdrErrors", "Ip6InAddrErrors", "Ip6InUnknownProtos", "Ip6ReasmFails", "Icmp6InErrors"):
        assert ip[counter] > 0, (counter, ip)
    out = stack6.peer("ping", "-6", "-c", "10", "-i", "0.05", GLOBAL).stdout
    assert lost(out) == 0, out
