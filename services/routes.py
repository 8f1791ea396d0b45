"""The FIB and local addresses a service builds from the configuration.

ip owns routing; udp and socket_server build the same table to choose source
addresses and answer ENETUNREACH synchronously, as udp_sendmsg does with
ip_route_output.
"""

from __future__ import annotations

from shared.config import Config
from shared.proto.fib import Fib, FibRoute


def fib_from_config(cfg: Config) -> Fib:
    fib = Fib()
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
    return {d.addr.ip.packed for d in cfg.devices}
