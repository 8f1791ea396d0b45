"""The loopback device: two applications on mkstack talk over 127.0.0.1 without the TAP."""

import json
import os

from tests.system.test_udp import APPS, run_on_mkstack, start_on_mkstack


def tap_frames(stack):
    d = stack.stats()["driver"]
    return d.get("rx_packets", 0) + d.get("tx_packets", 0)


def test_tcp_udp_and_icmp_between_two_mkstack_programs_over_localhost(stack):
    udp = start_on_mkstack(stack, os.path.join(APPS, "udp_echo.py"), "127.0.0.1", "7201")
    tcp = start_on_mkstack(stack, os.path.join(APPS, "tcp_echo_server.py"), "127.0.0.1", "7200")
    try:
        before = tap_frames(stack)
        out = json.loads(run_on_mkstack(stack, os.path.join(APPS, "udp_client.py"), "127.0.0.1", "7201",
                                        "7999").stdout)
        assert out["echoed"] == 100
        assert out["connected"] == "ConnectionRefusedError 111"      # port unreachable, over lo too
        res = json.loads(run_on_mkstack(stack, os.path.join(APPS, "tcp_echo_clients.py"), "localhost", "7200",
                                        "8", "200000").stdout)
        assert res["ok"] == 8 and not res["errors"]
        ping = run_on_mkstack(stack, os.path.join(APPS, "raw_ping.py"), "127.0.0.1", "3").stdout
        assert "3 sent, 3 received" in ping
        assert tap_frames(stack) == before                           # nothing went through the driver
    finally:
        for p in (udp, tcp):
            p.kill()
            p.wait()
    addrs = json.loads(stack.launcher("show", "addrs").stdout)
    assert {"dev": "lo", "addr": "127.0.0.1/8"} in addrs
    routes = json.loads(stack.launcher("show", "routes").stdout)
    assert any(r["dst"] == "127.0.0.0/8" and r["dev"] == "lo" for r in routes)

