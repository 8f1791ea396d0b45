"""Every message exchanged between mkstack processes, in one place.

A message is a msgpack array ``[code, field, ...]``. Codes come in ranges, one
per interface (as MINIX numbers its message types):

    0x1xx  driver <-> netdev      packet batches at the device edge
    0x2xx  netdev <-> ip          packet batches at the protocol edge
    0x9xx  control                supervisor/CLI <-> any service (ROUTER/DEALER)
    0xAxx  supervision            CLI <-> the launcher's supervisor (ROUTER/REQ)

Packet messages carry skb handles (ints), never payload bytes, and carry many
at once (a NAPI-style batch). Control replies are ``[0, result]`` on success
or ``[errno, text]`` on failure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MsgType:
    code: int
    name: str
    fields: tuple[tuple[str, type], ...]
    doc: str


_REGISTRY: dict[int, MsgType] = {}


def _msg(code: int, mname: str, doc: str, **fields: type) -> int:
    if code in _REGISTRY:
        raise RuntimeError(f"message code {code:#x} defined twice")
    _REGISTRY[code] = MsgType(code, mname, tuple(fields.items()), doc)
    return code


# -- driver <-> netdev ------------------------------------------------------
NETIF_RX = _msg(0x101, "NETIF_RX", "driver -> netdev: frames received on a device",
                ifindex=int, handles=list)
DEV_XMIT = _msg(0x102, "DEV_XMIT", "netdev -> driver: frames to transmit",
                ifindex=int, handles=list)

# -- netdev <-> ip ----------------------------------------------------------
IP_RCV = _msg(0x201, "IP_RCV", "netdev -> ip: frames demuxed to IPv4/ARP, Ethernet header pulled, "
              "skb.protocol = ethertype", ifindex=int, handles=list)
DEV_QUEUE_XMIT = _msg(0x202, "DEV_QUEUE_XMIT", "ip -> netdev: complete frames for a device's tx queue",
                      ifindex=int, handles=list)

# -- control ----------------------------------------------------------------
CTL_PING = _msg(0x901, "CTL_PING", "heartbeat; reply [0, {'pid', 'name'}]")
CTL_STATS = _msg(0x902, "CTL_STATS", "counters; reply [0, {counter: value}]")
CTL_SHOW = _msg(0x903, "CTL_SHOW", "service tables (neighbours, routes, devices); reply [0, {...}]",
                what=str)

# -- supervision ------------------------------------------------------------
SUP_STATUS = _msg(0xA01, "SUP_STATUS", "services, devices, slab usage; reply [0, {...}]")
SUP_KILL = _msg(0xA02, "SUP_KILL", "fault injection: signal a service", name=str, signal=int)
SUP_RESTART = _msg(0xA03, "SUP_RESTART", "stop a service and start it again at once", name=str)
SUP_SHUTDOWN = _msg(0xA04, "SUP_SHUTDOWN", "stop every service, then the supervisor")


def lookup(code: int) -> MsgType | None:
    return _REGISTRY.get(code)


def all_types() -> list[MsgType]:
    return sorted(_REGISTRY.values(), key=lambda m: m.code)
