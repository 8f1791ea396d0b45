"""Fault injection: killed, hung and fed garbage, the stack keeps answering."""

import os
import time

import pytest

from tests.system.conftest import ROOT, reply_times, summary, ping_rtts


def longest_gap(times: list[float]) -> float:
    return max(b - a for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("victim", ["ip", "driver", "netdev"])
def test_sigkill_during_ping_resumes_within_2s(stack, victim):
    ping = stack.peer_popen("ping", "-D", "-c", "400", "-i", "0.01", "-W", "1", stack.addr)
    time.sleep(1.0)
    killed_at = time.time()
    stack.launcher("kill", victim)
    out, _ = ping.communicate(timeout=60)
    times = reply_times(out)
    after = [t for t in times if t > killed_at]
    assert after, f"no reply after killing {victim}:\n{out[-2000:]}"
    gap = longest_gap(times)
    print(f"\n{victim}: longest silence {gap * 1000:.0f} ms, "
          f"first reply {(after[0] - killed_at) * 1000:.0f} ms after the kill; {summary(ping_rtts(out))}")
    assert gap < 2.0
    restarts = stack.restarts()
    assert restarts[victim] == 1
    assert sum(restarts.values()) == 1
    assert stack.status()["services"][[s["name"] for s in stack.status()["services"]].index(victim)][
        "last_exit"] == "killed by SIGKILL"


def test_repeated_kills_of_every_layer(stack):
    for _ in range(3):
        for victim in ("driver", "netdev", "ip"):
            stack.launcher("kill", victim)
            time.sleep(0.3)
    out = stack.peer("ping", "-c", "20", "-i", "0.05", "-W", "2", stack.addr, check=False).stdout
    assert "20 received" in out, out
    assert stack.restarts() == {"driver": 3, "netdev": 3, "ip": 3, "udp": 0, "tcp": 0, "socket_server": 0}


def test_hung_service_is_killed_and_restarted(stack):
    stack.launcher("kill", "ip", "--signal", "STOP")
    deadline = time.time() + 15
    while time.time() < deadline and stack.restarts()["ip"] == 0:
        time.sleep(0.2)
    assert stack.restarts()["ip"] == 1
    out = stack.peer("ping", "-c", "3", "-i", "0.2", "-W", "2", stack.addr, check=False).stdout
    assert "3 received" in out, out


def test_slab_usage_returns_to_idle_after_kills(stack):
    stack.peer("ping", "-c", "50", "-i", "0.01", stack.addr)
    for victim in ("netdev", "ip"):
        ping = stack.peer_popen("ping", "-c", "100", "-i", "0.005", "-W", "1", stack.addr)
        time.sleep(0.2)
        stack.launcher("kill", victim)
        ping.communicate(timeout=30)
    time.sleep(2.5)    # in-flight skbs of a dead service are reclaimed after a 2 s grace
    st = stack.status()
    assert [c["used"] for c in st["skb"]["classes"]] == [0, 0], st["skb"]


def test_garbage_frames_are_counted_and_dropped(stack):
    mac = stack.status()["devices"][0]["mac"]
    out = stack.peer("python3", os.path.join(ROOT, "tests", "system", "garbage.py"), "tap0", mac,
                     "10000", "42").stdout
    sent = eval(out.strip().splitlines()[-1])      # the script prints a dict literal of counts
    assert sum(sent.values()) >= 9000, sent
    time.sleep(0.5)
    assert sum(stack.restarts().values()) == 0
    st = stack.stats()
    tap, ip = st["netdev"]["devices"]["tap0"], st["ip"]
    assert tap["rx_errors"] > 0            # truncated Ethernet
    assert tap["rx_nohandler"] > 0         # unknown ethertypes
    assert ip["ArpInErrors"] > 0
    assert ip["IpInHdrErrors"] > 0         # random headers, bad checksums, wrong lengths
    assert ip["IcmpInErrors"] > 0          # bad ICMP checksums
    assert ip["IpInUnknownProtos"] > 0
    assert ip["IpInAddrErrors"] > 0        # martian sources
    assert ip["IpReasmReqds"] > 0          # fragments went to reassembly (and wait for their holes)
    out = stack.peer("ping", "-c", "10", "-i", "0.05", stack.addr).stdout
    assert "10 received" in out
