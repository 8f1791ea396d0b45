"""Load and check an mkstack TOML configuration; every error names its key."""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field

from shared.proto.netfilter import RuleError, parse_rule
from shared.skb import SizeClass
from shared.wire.ethernet import mac_aton

_INSTANCE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")


class ConfigError(ValueError):
    """A missing or malformed configuration key; the message names it."""


@dataclass(frozen=True, slots=True)
class Device:
    name: str
    ifindex: int
    mac: bytes
    addr: ipaddress.IPv4Interface
    mtu: int
    txqueuelen: int
    peer_addr: ipaddress.IPv4Interface
    peer_netns: str          # may contain "{instance}"
    peer_routes: tuple[ipaddress.IPv4Network, ...] = ()   # routed via mkstack in the peer namespace
    addr6: ipaddress.IPv6Interface | None = None        # mkstack's global IPv6 address (link-local: from the MAC)
    peer_addr6: ipaddress.IPv6Interface | None = None   # the peer's; IPv6 stays off on the link without both

    def netns(self, instance: str) -> str:
        return self.peer_netns.format(instance=instance)


@dataclass(frozen=True, slots=True)
class Route:
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    dev: str


@dataclass(frozen=True, slots=True)
class Neigh:
    reachable_time: float
    retrans_time: float
    mcast_solicit: int
    unres_qlen: int
    gc_stale_time: float
    gc_thresh3: int = 1024
    unres_total: int = 512


@dataclass(frozen=True, slots=True)
class Supervisor:
    heartbeat_interval: float
    heartbeat_timeout: float
    backoff_initial: float
    backoff_max: float
    backoff_reset: float
    standby: bool


@dataclass(frozen=True, slots=True)
class SocketLimits:
    """What the socket server holds for its clients at most (the kernel's are
    fs.file-max, RLIMIT_NOFILE and memory; one process here serves everyone)."""
    max_sockets: int = 16384           # sockets of all clients (ENFILE), well below vm.max_map_count
    max_clients: int = 1024            # client libraries attached at once
    clients_per_process: int = 16      # client ids one process may hold (a library per process)
    clients_per_user: int = 512        # client ids the processes of one uid may hold (root: max_clients)
    waiting_calls: int = 1024          # calls of one client suspended at once (blocked threads)
    dgram_mem: int = 8 << 20           # slot bytes of all datagram queues together (net.ipv4.udp_mem)
    # what the programs of one uid may hold together (root aside): services/socket/ledger.py
    sockets_per_user: int = 8192
    waiting_calls_per_user: int = 4096
    mem_per_user: int = 64 << 20       # bytes: datagrams queued to its sockets, stream bytes sent not yet acked
    skbs_per_user: int = 2048          # skb slots: datagrams queued to its sockets


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    run_dir: str
    skb_classes: list[SizeClass]
    devices: list[Device]
    routes: list[Route]
    neigh: Neigh
    supervisor: Supervisor
    driver_budget: int
    ipfrag_time: float
    ipfrag_high_thresh: int
    local_port_range: tuple[int, int]
    socket_rcvbuf: int
    socket_sndbuf: int
    socket_limits: SocketLimits
    tcp: dict
    forwarding: bool = False                  # net.ipv4.ip_forward
    tcp_rmem: int = 4194304                   # SO_RCVBUF of TCP sockets that do not set one
    tcp_wmem: int = 4194304                   # SO_SNDBUF of TCP sockets that do not set one
    driver_offload: bool = True               # TAP offloads (IFF_VNET_HDR: checksum, TSO from the kernel)
    filter_rules: tuple[str, ...] = ()        # netfilter rules, iptables-like text
    cpu_affinity: str = "split"               # where services run: "split" (lower layers, upper layers) or "none"
    services: list[str] = field(default_factory=list)

    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def service_id(self, name: str) -> int:
        """Service ids number skb owners: 1..n in service order (0 is the supervisor)."""
        return self.services.index(name) + 1

    @property
    def offload(self) -> bool:
        """TAP offloads in effect: asked for, and ip does not forward (it does not re-segment)."""
        return self.driver_offload and not self.forwarding

    def stream_bufs_max(self, setsockopt_max: int) -> tuple[int, int]:
        """The largest send and receive buffer a stream socket can have: the
        defaults, or what SO_SNDBUF / SO_RCVBUF can ask for (``setsockopt_max``)."""
        return (max(self.tcp_wmem, self.socket_sndbuf, setsockopt_max),
                max(self.tcp_rmem, self.socket_rcvbuf, setsockopt_max))

    def driver_name(self, dev: Device) -> str:
        return "driver" if dev is self.devices[0] else f"driver-{dev.name}"


def check_instance(name: str) -> str:
    if not _INSTANCE_RE.match(name):
        raise ConfigError(f"instance: {name!r} must be 1-24 of [a-z0-9_-], starting alphanumeric")
    return name


class _Section:
    """Typed access to one table of the TOML document, naming keys in errors."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a table")
        self.data = data
        self.where = where

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, typ: type | tuple[type, ...], default: object = ...) -> object:
        if key not in self.data:
            if default is ...:
                raise ConfigError(f"{self._key(key)}: missing")
            return default
        val = self.data[key]
        if isinstance(val, bool) and typ is not bool or not isinstance(val, typ):
            names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise ConfigError(f"{self._key(key)}: expected {names}, got {val!r}")
        return val

    def num(self, key: str, lo: float, hi: float, default: object = ..., integer: bool = False) -> float:
        val = self.get(key, int if integer else (int, float), default)
        if not lo <= val <= hi:  # type: ignore[operator]
            raise ConfigError(f"{self._key(key)}: {val!r} is outside [{lo}, {hi}]")
        return val  # type: ignore[return-value]

    def parse(self, key: str, fn, default: object = ...):  # noqa: ANN001, ANN201
        raw = self.get(key, str, default)
        if raw is None:
            return None
        try:
            return fn(raw)
        except ValueError as exc:
            raise ConfigError(f"{self._key(key)}: {exc}") from None

    def table(self, key: str) -> "_Section":
        return _Section(self.data.get(key, {}), self._key(key))

    def tables(self, key: str) -> list["_Section"]:
        val = self.data.get(key, [])
        if not isinstance(val, list):
            raise ConfigError(f"{self._key(key)}: expected an array of tables")
        return [_Section(v, f"{self._key(key)}[{i}]") for i, v in enumerate(val)]


def _skb_classes(sec: _Section) -> list[SizeClass]:
    out = []
    for c in sec.tables("classes"):
        out.append(SizeClass(int(c.num("slot_size", 256, 1 << 20, integer=True)),
                             int(c.num("slots", 16, 1 << 22, integer=True))))
    if not out:
        raise ConfigError("skb.classes: at least one size class is needed")
    return sorted(out, key=lambda s: s.slot_size)


def _tcp(sec: _Section) -> dict:
    """TCP tunables (net.ipv4.tcp_*), as keyword arguments for the engine's TcpConfig."""
    cc = sec.get("congestion_control", str, "cubic")
    if cc not in ("reno", "cubic"):
        raise ConfigError(f"{sec.where}.congestion_control: {cc!r} is not reno or cubic")
    return {
        "cc": cc,
        "sack": sec.get("sack", bool, True),
        "timestamps": sec.get("timestamps", bool, True),
        "rcv_wscale": int(sec.num("window_scaling", 0, 14, 7, integer=True)),
        "delayed_ack": sec.num("delayed_ack", 0, 1, 0.04),
        "time_wait": sec.num("fin_timeout", 0, 600, 60.0),
        "fin_timeout": sec.num("fin_timeout", 0, 600, 60.0),    # as Linux: also the orphans' FIN-WAIT-2
        "syn_retries": int(sec.num("syn_retries", 1, 127, 6, integer=True)),
        "retries2": int(sec.num("retries2", 1, 100, 15, integer=True)),
        "rto_min": sec.num("rto_min", 0.001, 10, 0.2),
        "keepalive_time": sec.num("keepalive_time", 1, 1 << 20, 7200.0),
        "keepalive_intvl": sec.num("keepalive_intvl", 1, 1 << 20, 75.0),
        "keepalive_probes": int(sec.num("keepalive_probes", 1, 127, 9, integer=True)),
        "syncookies": sec.get("syncookies", bool, True),
        "rfc1337": sec.get("rfc1337", bool, True),
        "ooo_max_blocks": int(sec.num("ooo_max_blocks", 1, 1 << 16, 256, integer=True)),
        "max_orphans": int(sec.num("max_orphans", 0, 1 << 20, 4096, integer=True)),
        "max_tw_buckets": int(sec.num("max_tw_buckets", 0, 1 << 20, 16384, integer=True)),
    }


def _port_range(sec: _Section) -> tuple[int, int]:
    val = sec.get("local_port_range", list, [32768, 60999])
    if len(val) != 2 or not all(type(v) is int for v in val) or not 1024 <= val[0] <= val[1] <= 65535:
        raise ConfigError(f"{sec.where}.local_port_range: {val!r} must be [low, high] within 1024..65535")
    return val[0], val[1]


def _networks(sec: _Section, key: str) -> tuple[ipaddress.IPv4Network, ...]:
    vals = sec.get(key, list, [])
    out = []
    for i, v in enumerate(vals):  # type: ignore[arg-type]
        try:
            out.append(ipaddress.IPv4Network(v))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{sec.where}.{key}[{i}]: {exc}") from None
    return tuple(out)


def _filter_rules(sec: _Section) -> tuple[str, ...]:
    rules = sec.get("rules", list, [])
    for i, text in enumerate(rules):  # type: ignore[arg-type]
        if not isinstance(text, str):
            raise ConfigError(f"{sec.where}.rules[{i}]: expected a rule as text, got {text!r}")
        try:
            parse_rule(text.split())
        except RuleError as exc:
            raise ConfigError(f"{sec.where}.rules[{i}]: {exc}") from None
    return tuple(rules)  # type: ignore[arg-type]


def _choice(sec: _Section, key: str, choices: tuple[str, ...], default: str) -> str:
    v = sec.get(key, str, default)
    if v not in choices:
        raise ConfigError(f"{sec._key(key)}: {v!r} is not one of {', '.join(choices)}")
    return v  # type: ignore[return-value]


def load(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    root = _Section(doc, "")
    stack = root.table("stack")
    devices = []
    for i, d in enumerate(root.tables("devices")):
        kind = d.get("kind", str, "tap")
        if kind != "tap":
            raise ConfigError(f"{d.where}.kind: {kind!r} is not supported (only 'tap')")
        addr = d.parse("addr", ipaddress.IPv4Interface)
        peer = d.parse("peer_addr", ipaddress.IPv4Interface)
        if addr.network != peer.network or addr.ip == peer.ip:
            raise ConfigError(f"{d.where}.peer_addr: {peer} must be another address in {addr.network}")
        addr6 = d.parse("addr6", ipaddress.IPv6Interface, None)
        peer6 = d.parse("peer_addr6", ipaddress.IPv6Interface, None)
        if (addr6 is None) != (peer6 is None) or addr6 is not None and (
                addr6.network != peer6.network or addr6.ip == peer6.ip or addr6.network.prefixlen != 64
                or addr6.is_link_local or addr6.is_multicast):
            raise ConfigError(f"{d.where}.addr6/peer_addr6: both or neither, two addresses of one /64 "
                              "that is neither link-local nor multicast")
        name = d.get("name", str)
        if not re.match(r"^[a-z][a-z0-9]{0,14}$", name):
            raise ConfigError(f"{d.where}.name: {name!r} is not a device name")
        devices.append(Device(
            name=name, ifindex=i + 2, mac=d.parse("mac", mac_aton), addr=addr,
            mtu=int(d.num("mtu", 576, 9000, 1500, integer=True)),
            txqueuelen=int(d.num("txqueuelen", 1, 100000, 1000, integer=True)),
            peer_addr=peer, peer_netns=d.get("peer_netns", str, "mkstack-{instance}"),
            peer_routes=_networks(d, "peer_routes"), addr6=addr6, peer_addr6=peer6))
    if not devices:
        raise ConfigError("devices: at least one device is needed")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise ConfigError("devices: device names must be unique")
    routes = []
    for r in root.tables("routes"):
        dev = r.get("dev", str)
        if dev not in names:
            raise ConfigError(f"{r.where}.dev: no device named {dev!r}")
        dst, via = r.parse("dst", ipaddress.ip_network), r.parse("via", ipaddress.ip_address, None)
        if via is not None and via.version != dst.version:
            raise ConfigError(f"{r.where}.via: an IPv{via.version} gateway for an IPv{dst.version} destination")
        if dst.version == 6 and next(d for d in devices if d.name == dev).addr6 is None:
            raise ConfigError(f"{r.where}.dev: {dev} has no addr6 for an IPv6 route")
        routes.append(Route(dst=dst, via=via, dev=dev))
    ipsec = root.table("ip")
    sock = root.table("socket")
    nb = root.table("neigh")
    sup = root.table("supervisor")
    cfg = Config(
        path=path,
        run_dir=stack.get("run_dir", str, "/run/mkstack"),
        skb_classes=_skb_classes(root.table("skb")),
        devices=devices,
        routes=routes,
        neigh=Neigh(reachable_time=nb.num("reachable_time", 1, 3600, 30.0),
                    retrans_time=nb.num("retrans_time", 0.01, 60, 1.0),
                    mcast_solicit=int(nb.num("mcast_solicit", 1, 100, 3, integer=True)),
                    unres_qlen=int(nb.num("unres_qlen", 1, 10000, 101, integer=True)),
                    gc_stale_time=nb.num("gc_stale_time", 1, 86400, 60.0),
                    gc_thresh3=int(nb.num("gc_thresh3", 1, 1 << 20, 1024, integer=True)),
                    unres_total=int(nb.num("unres_total", 1, 1 << 20, 512, integer=True))),
        supervisor=Supervisor(heartbeat_interval=sup.num("heartbeat_interval", 0.05, 60, 0.5),
                              heartbeat_timeout=sup.num("heartbeat_timeout", 0.2, 600, 3.0),
                              backoff_initial=sup.num("backoff_initial", 0.0, 60, 0.05),
                              backoff_max=sup.num("backoff_max", 0.0, 600, 5.0),
                              backoff_reset=sup.num("backoff_reset", 0.1, 3600, 10.0),
                              standby=bool(sup.get("standby", bool, True))),
        driver_budget=int(root.table("driver").num("budget", 1, 4096, 64, integer=True)),
        ipfrag_time=ipsec.num("ipfrag_time", 1, 3600, 30.0),
        ipfrag_high_thresh=int(ipsec.num("ipfrag_high_thresh", 65536, 1 << 30, 4 << 20, integer=True)),
        local_port_range=_port_range(ipsec),
        socket_rcvbuf=int(sock.num("rmem_default", 2304, 1 << 26, 212992, integer=True)),
        socket_sndbuf=int(sock.num("wmem_default", 4608, 1 << 26, 212992, integer=True)),
        socket_limits=SocketLimits(
            max_sockets=int(sock.num("max_sockets", 1, 60000, 16384, integer=True)),
            max_clients=int(sock.num("max_clients", 1, 1 << 16, 1024, integer=True)),
            clients_per_process=int(sock.num("clients_per_process", 1, 1 << 16, 16, integer=True)),
            clients_per_user=int(sock.num("clients_per_user", 1, 1 << 16, 512, integer=True)),
            waiting_calls=int(sock.num("waiting_calls", 1, 1 << 20, 1024, integer=True)),
            dgram_mem=int(sock.num("dgram_mem", 1 << 16, 1 << 30, 8 << 20, integer=True)),
            sockets_per_user=int(sock.num("sockets_per_user", 1, 60000, 8192, integer=True)),
            waiting_calls_per_user=int(sock.num("waiting_calls_per_user", 1, 1 << 20, 4096, integer=True)),
            mem_per_user=int(sock.num("mem_per_user", 1 << 16, 1 << 34, 64 << 20, integer=True)),
            skbs_per_user=int(sock.num("skbs_per_user", 1, 1 << 20, 2048, integer=True))),
        tcp=_tcp(root.table("tcp")),
        forwarding=bool(ipsec.get("forwarding", bool, False)),
        driver_offload=bool(root.table("driver").get("offload", bool, True)),
        tcp_rmem=int(root.table("tcp").num("rmem", 4608, 1 << 26, 4194304, integer=True)),
        tcp_wmem=int(root.table("tcp").num("wmem", 4608, 1 << 26, 4194304, integer=True)),
        filter_rules=_filter_rules(root.table("netfilter")),
        cpu_affinity=_choice(stack, "cpu_affinity", ("split", "none"), "split"),
    )
    cfg.services.extend(cfg.driver_name(d) for d in devices)
    cfg.services.extend(["netdev", "ip", "udp", "tcp", "socket_server"])
    if len(cfg.services) > 250:
        raise ConfigError("devices: too many devices")
    return cfg
