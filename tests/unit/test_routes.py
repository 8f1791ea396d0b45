"""Connected routes of addresses added and removed at run time."""

import ipaddress
import os

from services.routes import add_connected, drop_connected, fib6_from_config, fib_from_config, local_addrs6, route6
from shared.config import load

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                       "default.toml")


def nets(fib):
    return {(f"{ipaddress.IPv4Address(r.dst)}/{r.plen}", r.ifindex) for r in fib.routes() if not r.gateway}


def test_an_address_in_a_new_network_brings_its_route_and_takes_it_away():
    cfg = load(DEFAULT)
    fib, dev = fib_from_config(cfg), cfg.devices[0]
    before = nets(fib)
    add_connected(fib, ipaddress.IPv4Interface("10.88.0.2/24"), dev)
    assert ("10.88.0.0/24", dev.ifindex) in nets(fib)
    drop_connected(fib, ipaddress.IPv4Interface("10.88.0.2/24"), dev)
    assert nets(fib) == before


def test_the_configured_network_keeps_its_route_when_a_second_address_in_it_goes():
    cfg = load(DEFAULT)
    fib, dev = fib_from_config(cfg), cfg.devices[0]
    before = nets(fib)
    add_connected(fib, ipaddress.IPv4Interface("10.66.0.5/24"), dev)      # already routed: nothing new
    drop_connected(fib, ipaddress.IPv4Interface("10.66.0.5/24"), dev)
    assert nets(fib) == before and ("10.66.0.0/24", dev.ifindex) in before


def test_ipv6_routes_choose_device_source_and_next_hop():
    cfg = load(os.path.join(os.path.dirname(DEFAULT), "ipv6.toml"))     # fd66::2/64, fd99::/64 via fd66::1
    addrs, fib6 = local_addrs6(cfg), fib6_from_config(cfg)
    a = ipaddress.IPv6Address
    ours, link = a("fd66::2").packed, next(x for x in addrs if x[:2] == b"\xfe\x80")
    assert route6(addrs, a("fd66::1").packed, fib6) == (2, ours, a("fd66::1").packed)          # on the link
    assert route6(addrs, a("fd99::7").packed, fib6) == (2, ours, a("fd66::1").packed)          # via the gateway
    assert route6(addrs, a("fe80::1").packed, fib6) == (2, link, a("fe80::1").packed)          # link-local
    assert route6(addrs, ours, fib6) == (1, ours, ours)                                        # ourselves, on lo
    assert route6(addrs, a("2001:db8::1").packed, fib6) is None                                # no route
    assert route6(addrs, a("fd99::7").packed) is None                                          # without the FIB
