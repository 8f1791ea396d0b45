"""The FIB and local addresses a service builds from the configuration.

ip owns routing; udp and socket_server build the same table to choose source
addresses and answer ENETUNREACH synchronously, as udp_sendmsg does with
ip_route_output. Every stack has the loopback device ``lo`` (ifindex 1, as in
Linux) with 127.0.0.1/8; traffic routed to it never reaches a driver.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
from dataclasses import dataclass

from shared.config import Config, Device
from shared.proto.fib import Fib, FibRoute
from shared.wire.ipv6 import is_link_local, is_multicast, link_local_from_mac

LOOPBACK_IFINDEX = 1
LOOPBACK_ADDR = ipaddress.IPv4Interface("127.0.0.1/8")
LOOPBACK_MTU = 65536
LOOPBACK_ADDR6 = bytes(15) + b"\x01"          # ::1, lo's IPv6 address


ROUTES_FILE = "routes.json"   # in the run directory: the routes as changed at run time
ADDRS_FILE = "addrs.json"     # and the addresses added at run time


@dataclass(frozen=True, slots=True)
class Iface:
    """A device as ip routes over it: its index, name, MAC, address and network, MTU."""
    ifindex: int
    name: str
    mac: bytes
    addr: bytes
    net: ipaddress.IPv4Network
    mtu: int

    @property
    def broadcast(self) -> bytes:
        return self.net.broadcast_address.packed


def extra_addrs(cfg: Config, rundir: str | None) -> list[tuple[ipaddress.IPv4Interface, str]]:
    """Addresses ``launcher.py addr add`` gave devices, as (address, device name)."""
    if rundir is None:
        return []
    try:
        with open(os.path.join(rundir, ADDRS_FILE)) as f:
            rows = json.load(f)
        return [(ipaddress.IPv4Interface(a), d) for a, d in rows if d in {x.name for x in cfg.devices}]
    except (OSError, ValueError, TypeError):
        return []


def save_addrs(rows: list[tuple[ipaddress.IPv4Interface, str]], rundir: str) -> None:
    path = os.path.join(rundir, ADDRS_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump([[str(a), d] for a, d in rows], f)
    os.replace(path + ".tmp", path)


def check_addr(cfg: Config, text: str, dev: str) -> tuple[ipaddress.IPv4Interface, Device]:
    """``ADDR/PLEN`` for device ``dev``, checked as `ip addr add` would."""
    try:
        iface = ipaddress.IPv4Interface(text)
        d = cfg.device(dev)
    except ValueError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    except KeyError:
        raise OSError(errno.ENODEV, f"no device {dev!r}") from None
    if iface.ip.is_loopback or iface.ip.is_multicast or iface.ip.is_unspecified or iface.network.prefixlen > 32:
        raise OSError(errno.EINVAL, f"{iface} cannot be a device address")
    return iface, d


def connected_route(iface: ipaddress.IPv4Interface, ifindex: int) -> FibRoute:
    return FibRoute(int(iface.network.network_address), iface.network.prefixlen, ifindex, None, iface.ip.packed)


def add_connected(fib: Fib, iface: ipaddress.IPv4Interface, dev: Device) -> None:
    """The route an added address brings, unless ``dev`` already routes its network."""
    route = connected_route(iface, dev.ifindex)
    if not any(r.dst == route.dst and r.plen == route.plen and r.ifindex == dev.ifindex for r in fib.routes()):
        fib.add(route)


def drop_connected(fib: Fib, iface: ipaddress.IPv4Interface, dev: Device) -> None:
    """The route a removed address brought; the device's configured network keeps its route."""
    if iface.network == dev.addr.network:
        return
    try:
        fib.delete(int(iface.network.network_address), iface.network.prefixlen, dev.ifindex)
    except LookupError:
        pass


def fib_from_config(cfg: Config, rundir: str | None = None) -> Fib:
    """Connected routes, lo, then the configured routes, or those ``launcher.py
    route`` left in the run directory (so a restarted service routes as before)."""
    fib = Fib()
    fib.add(FibRoute(int(LOOPBACK_ADDR.network.network_address), LOOPBACK_ADDR.network.prefixlen,
                     LOOPBACK_IFINDEX, None, LOOPBACK_ADDR.ip.packed))
    for d in cfg.devices:
        fib.add(connected_route(d.addr, d.ifindex))
    for iface, dev in extra_addrs(cfg, rundir):
        try:
            fib.add(connected_route(iface, cfg.device(dev).ifindex))
        except FileExistsError:
            pass
    saved = None
    if rundir is not None:
        try:
            with open(os.path.join(rundir, ROUTES_FILE)) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            saved = None
    routes = saved if isinstance(saved, list) else [[str(r.dst), str(r.via) if r.via else None, r.dev]
                                                     for r in cfg.routes if r.dst.version == 4]
    for dst, via, dev in routes:
        try:
            change_route(fib, cfg, "add", dst, via, dev)
        except OSError:
            pass          # a saved route the config no longer allows
    return fib


def change_route(fib: Fib, cfg: Config, op: str, dst: str, via: str | None, dev: str | None) -> FibRoute:
    """``route add|del DST [via GW] [dev DEV]`` on ``fib``; OSError with errno as `ip route` has it."""
    if ":" in dst or via and ":" in via:
        raise OSError(errno.EAFNOSUPPORT, "IPv6 routes come from the config's [[routes]] only; `route` changes IPv4")
    try:
        net = ipaddress.IPv4Network(dst)
        gw = ipaddress.IPv4Address(via) if via else None
    except ValueError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    if op == "del":
        try:
            return fib.delete(int(net.network_address), net.prefixlen,
                              cfg.device(dev).ifindex if dev else None)
        except (LookupError, KeyError):
            raise OSError(errno.ESRCH, f"no route to {net}" + (f" on {dev}" if dev else "")) from None
    if op != "add":
        raise OSError(errno.EINVAL, f"unknown route operation {op!r}")
    cands = [d for d in cfg.devices if (dev is None or d.name == dev) and (gw is None or gw in d.addr.network)]
    if not cands:
        raise OSError(errno.ENETUNREACH if gw else errno.ENODEV,
                      f"gateway {gw} is on no device's network" if gw else f"no device {dev!r}")
    d = cands[0]
    route = FibRoute(int(net.network_address), net.prefixlen, d.ifindex, gw.packed if gw else None,
                     d.addr.ip.packed, metric=1)
    try:
        fib.add(route)
    except FileExistsError:
        raise OSError(errno.EEXIST, "route exists") from None
    return route


def save_routes(fib: Fib, cfg: Config, rundir: str) -> None:
    """Write the non-connected routes for restarted services to find."""
    names = {d.ifindex: d.name for d in cfg.devices}
    rows = [[f"{ipaddress.IPv4Address(r.dst)}/{r.plen}", str(ipaddress.IPv4Address(r.gateway)) if r.gateway else None,
             names[r.ifindex]] for r in fib.routes() if r.metric and r.ifindex in names]
    path = os.path.join(rundir, ROUTES_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(rows, f)
    os.replace(path + ".tmp", path)


def local_ips(cfg: Config, rundir: str | None = None) -> set[int | bytes]:
    """Our addresses as port tables and sockets hold them: IPv4 ones as ints, IPv6 ones as 16 bytes."""
    return {int.from_bytes(a, "big") for a in local_addrs(cfg, rundir)} | set(local_addrs6(cfg))


def source_for(fib: Fib, addrs6: dict[bytes, int], fib6: Fib, daddr: int | bytes) -> int | bytes | None:
    """Our source address toward ``daddr`` (an IPv4 int or 16 IPv6 bytes), as udp_sendmsg and
    tcp_v4_connect ask the route; None: unreachable."""
    if type(daddr) is bytes:
        r6 = route6(addrs6, daddr, fib6)
        return r6[1] if r6 is not None else None
    route = fib.lookup(daddr.to_bytes(4, "big"))
    return int.from_bytes(route.src, "big") if route is not None else None


def local_addrs6(cfg: Config) -> dict[bytes, int]:
    """Our IPv6 addresses and the ifindex of each: a device's ``addr6`` and the
    link-local address made from its MAC (IPv6 is on only where ``addr6`` is set),
    and ::1 on lo."""
    out = {LOOPBACK_ADDR6: LOOPBACK_IFINDEX}
    for d in cfg.devices:
        if d.addr6 is not None:
            out[d.addr6.ip.packed] = d.ifindex
            out[link_local_from_mac(d.mac)] = d.ifindex
    return out


def fib6_from_config(cfg: Config) -> Fib:
    """The configured IPv6 routes (the /64 of a device's addr6 and link-local ones are on-link
    without one): each via a gateway on a device's link, or on-link through its device."""
    fib = Fib(bits=128)
    for r in cfg.routes:
        if r.dst.version == 6:
            fib.add(FibRoute(int(r.dst.network_address), r.dst.prefixlen, cfg.device(r.dev).ifindex,
                             r.via.packed if r.via is not None else None, b""))
    return fib


def route6(addrs: dict[bytes, int], dst: bytes, fib6: Fib | None = None) -> tuple[int, bytes, bytes] | None:
    """(ifindex, source address, next hop) for sending to ``dst``, given our addresses
    (local_addrs6) and IPv6 routes (fib6_from_config): our own addresses go over lo; a
    destination in the /64 of one of ours goes out of that one's device, from it; a
    link-local or multicast one out of the first device with IPv6, from its link-local
    address; else the longest matching route, from our address on its device in the
    gateway's /64 (or its global one). None: unreachable."""
    if dst in addrs:
        return LOOPBACK_IFINDEX, dst, dst
    link = None
    for addr, ifindex in addrs.items():
        if ifindex == LOOPBACK_IFINDEX:
            continue
        if addr[:8] == dst[:8]:
            return ifindex, addr, dst
        if link is None and is_link_local(addr):
            link = ifindex, addr, dst
    if is_link_local(dst) or is_multicast(dst):
        return link
    r = fib6.lookup(dst) if fib6 is not None else None
    if r is None:
        return None
    hop = r.next_hop(dst)
    mine = [a for a, i in addrs.items() if i == r.ifindex]
    src = next((a for a in mine if a[:8] == hop[:8]), None) or next((a for a in mine if not is_link_local(a)), None)
    return (r.ifindex, src, hop) if src is not None else None


def local_addrs(cfg: Config, rundir: str | None = None) -> set[bytes]:
    return ({d.addr.ip.packed for d in cfg.devices} | {LOOPBACK_ADDR.ip.packed}
            | {a.ip.packed for a, _ in extra_addrs(cfg, rundir)})
