"""The FIB and local addresses a service builds from the configuration.

ip owns routing; udp and socket_server build the same table to choose source
addresses and answer ENETUNREACH synchronously, as udp_sendmsg does with
ip_route_output. Every stack has the loopback device ``lo`` (ifindex 1, as in
Linux) with 127.0.0.1/8; traffic routed to it never reaches a driver.
"""

from __future__ import annotations

import ipaddress

from shared.config import Config
from shared.proto.fib import Fib, FibRoute

LOOPBACK_IFINDEX = 1
LOOPBACK_ADDR = ipaddress.IPv4Interface("127.0.0.1/8")
LOOPBACK_MTU = 65536


def fib_from_config(cfg: Config) -> Fib:
    fib = Fib()
    fib.add(FibRoute(int(LOOPBACK_ADDR.network.network_address), LOOPBACK_ADDR.network.prefixlen,
                     LOOPBACK_IFINDEX, None, LOOPBACK_ADDR.ip.packed))
    by_name = {}
    for d in cfg.devices:
        by_name[d.name] = d
        fib.add(FibRoute(int(d.addr.network.network_address), d.addr.network.prefixlen,
                         d.ifindex, None, d.addr.ip.packed))
    for r in cfg.routes:
        d = by_name[r.dev]
        fib.add(FibRoute(int(r.dst.network_address), r.dst.prefixlen, d.ifindex,
                         r.via.packed if r.via else None, d.addr.ip.packed, metric=1))
    return fib


def local_addrs(cfg: Config) -> set[bytes]:
    return {d.addr.ip.packed for d in cfg.devices} | {LOOPBACK_ADDR.ip.packed}
