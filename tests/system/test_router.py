"""mkstack as a router (configs/router.toml): forwarding, TTL, ICMP errors, routes, netfilter."""

import hashlib
import json
import os
import re
import time

from tests.system.test_tcp import launcher_popen, wait_line

A, B = "10.66.0.1", "10.67.0.1"          # the two peer namespaces; mkstack is .2 on each


def snmp(stack):
    return stack.stats()["snmp"]


def test_ping_and_curl_pass_through_mkstack_with_ttl_decremented(router, tmp_path):
    before = snmp(router)["IpForwDatagrams"]
    out = router.peer("ping", "-c", "3", "-i", "0.2", B).stdout
    assert "3 received" in out and out.count("ttl=63") == 3        # one hop: 64 - 1
    assert snmp(router)["IpForwDatagrams"] - before >= 6            # requests and replies
    exceeded = router.peer("ping", "-c", "1", "-t", "1", "-W", "2", B, check=False).stdout
    assert "From 10.66.0.2 icmp_seq=1 Time to live exceeded" in exceeded

    (tmp_path / "f").write_bytes(os.urandom(3_000_000))
    digest = hashlib.sha256((tmp_path / "f").read_bytes()).hexdigest()
    web = launcher_popen(router, "peer", "--dev", "tap1", "--", "python3", "-u", "-m", "http.server", "8000",
                         "--bind", B, "--directory", str(tmp_path))
    try:
        wait_line(web, "Serving HTTP")
        got = router.peer("sh", "-c", f"curl -s -m 60 http://{B}:8000/f | sha256sum").stdout.split()[0]
    finally:
        web.kill()
        web.wait()
    assert got == digest


def test_no_route_gives_net_unreachable_until_a_route_is_added(router):
    router.peer("ip", "route", "add", "10.98.0.0/24", "via", "10.66.0.2")   # A sends it to mkstack
    out = router.peer("ping", "-c", "1", "-W", "2", "10.98.0.1", check=False).stdout
    assert "Destination Net Unreachable" in out
    router.launcher("route", "add", "10.98.0.0/24", "via", B)
    shown = router.launcher("route").stdout
    assert f"10.98.0.0/24 via {B} dev tap1" in shown
    out = router.peer("ping", "-c", "1", "-W", "1", "10.98.0.1", check=False).stdout
    assert "Unreachable" not in out                               # forwarded now (and lost beyond B)
    router.launcher("route", "del", "10.98.0.0/24")
    assert "10.98.0.0" not in router.launcher("route").stdout
    bad = router.launcher("route", "add", "10.97.0.0/24", "via", "192.0.2.1", check=False)
    assert bad.returncode == 2 and "no device's network" in bad.stderr


def test_a_forward_drop_rule_stops_traffic_counts_it_and_deleting_it_restores(router):
    router.launcher("filter", "add", "FORWARD", "-p", "icmp", "-s", "10.66.0.0/24", "-j", "DROP")
    out = router.peer("ping", "-c", "3", "-i", "0.2", "-W", "1", B, check=False).stdout
    assert "0 received" in out
    rules = json.loads(router.launcher("filter", "list", "--json").stdout)
    assert rules[0]["rule"] == "FORWARD -p icmp -s 10.66.0.0/24 -j DROP" and rules[0]["packets"] == 3
    assert re.search(r"FORWARD\s+1\s+3\s+252\s+FORWARD -p icmp", router.launcher("filter", "list").stdout)
    # the table outlives an ip restart
    router.launcher("kill", "ip")
    deadline = time.time() + 10
    while router.restarts()["ip"] < 1 or any(s["state"] != "running" for s in router.status()["services"]):
        assert time.time() < deadline
        time.sleep(0.1)
    assert "0 received" in router.peer("ping", "-c", "1", "-W", "1", B, check=False).stdout
    router.launcher("filter", "del", "FORWARD", "1")
    assert "1 received" in router.peer("ping", "-c", "1", "-W", "2", B).stdout


def test_reject_and_input_rules_and_bad_rules(router):
    router.launcher("filter", "add", "FORWARD", "-p", "tcp", "--dport", "8000", "-j", "REJECT")
    curl = router.peer("curl", "-s", "-m", "5", f"http://{B}:8000/", check=False)
    assert curl.returncode == 7                                   # refused at once by ICMP, no timeout
    router.launcher("filter", "add", "INPUT", "-p", "icmp", "-i", "tap1", "-j", "DROP")
    assert "1 received" in router.peer("ping", "-c", "1", "-W", "2", "10.66.0.2").stdout       # tap0: allowed
    dropped = router.launcher("peer", "--dev", "tap1", "--", "ping", "-c", "1", "-W", "1", "10.67.0.2", check=False)
    assert "0 received" in dropped.stdout
    for bad, why in ((["NOCHAIN", "-j", "DROP"], "no chain"), (["INPUT", "-p", "tcp", "-j", "MAYBE"], "verdict"),
                     (["INPUT", "--dport", "80", "-j", "DROP"], "needs -p tcp"),
                     (["OUTPUT", "-i", "tap0", "-j", "DROP"], "-i cannot be used in OUTPUT")):
        p = router.launcher("filter", "add", *bad, check=False)
        assert p.returncode == 2 and why in p.stderr


def test_addresses_change_at_run_time_and_outlive_restarts(stack):
    stack.launcher("addr", "add", "10.66.0.5/24", "dev", "tap0")
    assert "tap0     inet 10.66.0.5/24" in stack.launcher("addr").stdout
    assert "1 received" in stack.peer("ping", "-c", "1", "-W", "2", "10.66.0.5").stdout
    bound = stack.launcher("run", "--", "python", "-c", "import socket; s = socket.socket(socket.AF_INET, "
                           "socket.SOCK_DGRAM); s.bind(('10.66.0.5', 0)); print(s.getsockname()[0])").stdout
    assert bound.strip() == "10.66.0.5"
    for svc in ("ip", "socket_server"):
        stack.launcher("kill", svc)
    deadline = time.time() + 10
    while any(s["state"] != "running" or (s["name"] in ("ip", "socket_server") and s["restarts"] < 1)
              for s in stack.status()["services"]):
        assert time.time() < deadline
        time.sleep(0.1)
    assert "1 received" in stack.peer("ping", "-c", "1", "-W", "2", "10.66.0.5").stdout
    refused = stack.launcher("addr", "del", f"{stack.addr}/24", "dev", "tap0", check=False)
    assert refused.returncode == 2 and "configured address" in refused.stderr
    stack.launcher("addr", "del", "10.66.0.5/24", "dev", "tap0")
    assert "0 received" in stack.peer("ping", "-c", "1", "-W", "1", "10.66.0.5", check=False).stdout
