"""Connected routes of addresses added and removed at run time."""

import ipaddress
import os

from services.routes import add_connected, drop_connected, fib_from_config
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
