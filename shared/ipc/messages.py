"""Every message exchanged between mkstack processes, in one place.

A message is a msgpack array ``[code, field, ...]``. Codes come in ranges, one
per interface (as MINIX numbers its message types):

    0x1xx  driver <-> netdev      packet batches at the device edge
    0x2xx  netdev <-> ip          packet batches at the protocol edge
    0x3xx  ip <-> transports      datagrams up, segments down, ICMP errors
    0x4xx  udp <-> socket_server  bindings, datagrams, socket errors
    0x5xx  application calls      client library <-> socket_server (DEALER/ROUTER)
    0x6xx  tcp <-> socket_server  connections, stream data in bulk, events
    0x9xx  control                supervisor/CLI <-> any service (ROUTER/DEALER)
    0xAxx  supervision            CLI <-> the launcher's supervisor (ROUTER/REQ)

Packet messages carry skb handles (ints), never payload bytes, and carry many
at once (a NAPI-style batch). Control replies are ``[0, result]`` on success
or ``[errno, text]`` on failure.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MsgType:
    code: int
    name: str
    fields: tuple[tuple[str, type | tuple[type, ...]], ...]
    doc: str
    named: type          # a decoded message's fields: a named tuple of them


_REGISTRY: dict[int, MsgType] = {}


def _msg(code: int, mname: str, doc: str, **fields: type | tuple[type, ...]) -> int:
    if code in _REGISTRY:
        raise RuntimeError(f"message code {code:#x} defined twice")
    _REGISTRY[code] = MsgType(code, mname, tuple(fields.items()), doc, namedtuple(mname, list(fields)))
    return code


# -- driver <-> netdev ------------------------------------------------------
NETIF_RX = _msg(0x101, "NETIF_RX", "driver -> netdev: frames received on a device",
                ifindex=int, handles=list)
DEV_XMIT = _msg(0x102, "DEV_XMIT", "netdev -> driver: frames to transmit",
                ifindex=int, handles=list)
DEV_CARRIER = _msg(0x103, "DEV_CARRIER", "driver -> netdev: the driver (re)attached to the device, its "
                  "carrier is up; repeated until acked with ANNOUNCE_ACK", token=int, ifindex=int)

# -- netdev <-> ip ----------------------------------------------------------
IP_RCV = _msg(0x201, "IP_RCV", "netdev -> ip: frames demuxed to IPv4/ARP, Ethernet header pulled, "
              "skb.protocol = ethertype", ifindex=int, handles=list)
DEV_QUEUE_XMIT = _msg(0x202, "DEV_QUEUE_XMIT", "ip -> netdev: complete frames for a device's tx queue",
                      ifindex=int, handles=list)
NETDEV_UP = _msg(0x203, "NETDEV_UP", "netdev -> ip: a device's carrier came up: announce our addresses "
                 "on it (gratuitous ARP, as Linux's arp_notify)", ifindex=int)

# -- ip <-> transports ------------------------------------------------------
# L4 skbs: data at the transport header, network_header set. IP_OUTPUT items
# are [handle, saddr, daddr, proto, tos, ttl, df]; saddr 0 lets ip choose.
L4_RCV = _msg(0x301, "L4_RCV", "ip -> transport: datagrams for a local protocol", ifindex=int, handles=list)
IP_OUTPUT = _msg(0x302, "IP_OUTPUT", "transport -> ip: [[handle, saddr, daddr, proto, tos, ttl, df], ...]; "
                 "skb.flags CSUM_PARTIAL asks ip to finish the L4 checksum", items=list)
L4_ERR = _msg(0x303, "L4_ERR", "ip -> transport: ICMP errors [[type, code, info, quoted ip header + 8 bytes], ...]",
              items=list)
IP_ICMP_ERROR = _msg(0x304, "IP_ICMP_ERROR", "transport -> ip: send an ICMP error about each datagram "
                     "(skb data at its IP header): [[handle, type, code], ...]", items=list)
LOWER_UP = _msg(0x308, "LOWER_UP", "ip -> transports: a layer below restarted or a device's carrier came "
                "back: segments inside it are lost; resend what is in flight now rather than at a timeout")

IP_REGISTER = _msg(0x305, "IP_REGISTER", "service -> ip: the IP protocols the service handles and those it "
                   "wants raw copies of (inet_add_protocol); the whole set each time, acked with ANNOUNCE_ACK",
                   token=int, service=str, protos=list, raw=list)
RAW_DELIVER = _msg(0x306, "RAW_DELIVER", "ip -> service: copies of local datagrams for raw sockets, "
                   "skb data at the IP header (ICMPv6: at the message, the network header at its IPv6 header)",
                   ifindex=int, handles=list)
IP_RAW_OUTPUT = _msg(0x307, "IP_RAW_OUTPUT", "service -> ip: datagrams with the caller's IP header "
                     "(IP_HDRINCL): [[handle, daddr], ...]; ip fills in a zero saddr and id, the length "
                     "and the checksum", items=list)

# values of fields above
PMTUDISC_DONT, PMTUDISC_DO, PMTUDISC_WANT = 0, 1, 2   # IP_OUTPUT df (IP_MTU_DISCOVER): WANT sets DF
                                                        # only on datagrams that need no fragmenting

# -- udp <-> socket_server ---------------------------------------------------
# addresses are IPv4 as ints, IPv6 as 16 bytes (as in tcp's messages), 0 the wildcard; port 0 asks for
# an ephemeral port
_IP = (int, bytes)
UDP_BIND = _msg(0x401, "UDP_BIND", "socket_server -> udp: bind (or re-announce after a restart)",
                req=int, sock=int, addr=_IP, port=int, flags=int)
UDP_BOUND = _msg(0x402, "UDP_BOUND", "udp -> socket_server: bind result", req=int, sock=int, err=int,
                 addr=_IP, port=int)
UDP_CONNECT = _msg(0x403, "UDP_CONNECT", "socket_server -> udp: set (or clear, addr 0) the remote end",
                   sock=int, laddr=_IP, raddr=_IP, rport=int)
UDP_UNBIND = _msg(0x404, "UDP_UNBIND", "socket_server -> udp: the socket is closed", sock=int)
UDP_SEND = _msg(0x405, "UDP_SEND", "socket_server -> udp: [[sock, handle, daddr, dport, tos, ttl], ...] payload in skb",
                items=list)
UDP_DELIVER = _msg(0x406, "UDP_DELIVER", "udp -> socket_server: [[sock, handle, saddr, sport], ...]",
                   items=list)
UDP_SOCK_ERR = _msg(0x407, "UDP_SOCK_ERR", "udp -> socket_server: asynchronous error for a socket",
                    sock=int, err=int)
UDP_RESYNC = _msg(0x408, "UDP_RESYNC", "udp -> socket_server: I restarted; re-announce every binding")
UDP_SYNCED = _msg(0x409, "UDP_SYNCED", "socket_server -> udp: every binding was announced again (after them)")

BIND_REUSEADDR, BIND_RESTORE, BIND_REUSEPORT = 1, 2, 4   # UDP_BIND / TCP_BIND flags (RESTORE: re-announced
#                                                          after a restart)
# UDP_BIND / TCP_BIND: an AF_INET6 socket (its wildcard takes IPv4 too), IPV6_V6ONLY set
BIND_V6, BIND_V6ONLY = 8, 16

# -- application calls (client library -> socket_server) ---------------------
# Every call is [code, req, ...]; the reply is [req, errno, result, readiness] where readiness
# is [fd, version, mask, socket id] or None. The event channel carries [EV_READY, fd, version,
# mask, socket id] (a readiness change) and [EV_RESTART, pid] (the socket server restarted: ask
# again what is still waiting). shared/ipc/codec.py packs them (sys_reply, ready_event, restart_event).
EV_READY, EV_RESTART = 0, 1
_ADDR = (str, bytes, type(None))    # AF_INET dotted quad; AF_UNIX path, or bytes for an abstract name
_TMO = (int, float, type(None))
SYS_HELLO = _msg(0x501, "SYS_HELLO", "register a client (pid) or its event channel", req=int, pid=int,
                 events=bool)
SYS_SOCKET = _msg(0x502, "SYS_SOCKET", "socket(family, type, proto) -> fd", req=int, family=int, type=int,
                  proto=int)
SYS_BIND = _msg(0x503, "SYS_BIND", "bind(fd, (addr, port)); AF_UNIX: addr is the name, port 0", req=int, fd=int,
                addr=(str, bytes), port=int)
SYS_CONNECT = _msg(0x504, "SYS_CONNECT", "connect(fd, (addr, port)); addr '' with AF_UNSPEC disconnects",
                   req=int, fd=int, addr=(str, bytes), port=int, timeout=_TMO)
SYS_SENDTO = _msg(0x505, "SYS_SENDTO", "sendto(fd, data, flags, addr or None, port)", req=int, fd=int,
                  data=bytes, flags=int, addr=_ADDR, port=int, timeout=_TMO)
SYS_RECVFROM = _msg(0x506, "SYS_RECVFROM", "recvfrom(fd, bufsize, flags) -> [data, addr, port, truelen]",
                    req=int, fd=int, bufsize=int, flags=int, timeout=_TMO)
SYS_CLOSE = _msg(0x507, "SYS_CLOSE", "close(fd)", req=int, fd=int)
SYS_GETSOCKNAME = _msg(0x508, "SYS_GETSOCKNAME", "-> [addr, port]", req=int, fd=int)
SYS_GETPEERNAME = _msg(0x509, "SYS_GETPEERNAME", "-> [addr, port]", req=int, fd=int)
SYS_SETSOCKOPT = _msg(0x50A, "SYS_SETSOCKOPT", "setsockopt(fd, level, name, value): an int, or a name "
                      "(TCP_CONGESTION)", req=int, fd=int, level=int, name=int, value=(int, str))
SYS_GETSOCKOPT = _msg(0x50B, "SYS_GETSOCKOPT", "getsockopt(fd, level, name) -> int, or bytes (TCP_INFO), or a "
                      "name (TCP_CONGESTION)", req=int, fd=int,
                      level=int, name=int)
SYS_SHUTDOWN = _msg(0x50C, "SYS_SHUTDOWN", "shutdown(fd, how)", req=int, fd=int, how=int)
SYS_NETSTAT = _msg(0x50D, "SYS_NETSTAT", "every socket of the stack (for launcher.py netstat)", req=int)
SYS_LISTEN = _msg(0x50E, "SYS_LISTEN", "listen(fd, backlog)", req=int, fd=int, backlog=int)
SYS_ACCEPT = _msg(0x50F, "SYS_ACCEPT", "accept(fd) -> [newfd, addr, port]", req=int, fd=int, timeout=_TMO)
SYS_IOCTL = _msg(0x510, "SYS_IOCTL", "ioctl(fd, SIOCATMARK | SIOCINQ | SIOCOUTQ) -> int", req=int, fd=int,
                 request=int)
SYS_DUP = _msg(0x511, "SYS_DUP", "dup(fd) -> [newfd, socket id, version, mask]: one more fd for the socket",
               req=int, fd=int)
SYS_SOCKETPAIR = _msg(0x512, "SYS_SOCKETPAIR", "socketpair(AF_UNIX, type) -> [[fd, id, version, mask] x 2]",
                      req=int, family=int, type=int, proto=int)
SYS_SENDMSG = _msg(0x513, "SYS_SENDMSG", "sendto with SCM_RIGHTS: fds are the sender's descriptors to pass",
                   req=int, fd=int, data=bytes, flags=int, addr=_ADDR, port=int, timeout=_TMO, fds=list)
SYS_RECVMSG = _msg(0x514, "SYS_RECVMSG", "recvfrom that also takes passed descriptors: -> [data, addr, port, "
                   "truelen, [[fd, id, version, mask, family, type, proto], ...]]", req=int, fd=int, bufsize=int,
                   flags=int, timeout=_TMO)
SYS_SENDTO_NOWAIT = _msg(0x515, "SYS_SENDTO_NOWAIT", "a UDP send the caller does not wait for (the kernel returns "
                         "at once), to a destination reached before: no reply; an error becomes the socket's pending "
                         "error (SO_ERROR, the next call), as an ICMP error does", req=int, fd=int, data=bytes,
                         flags=int, addr=_ADDR, port=int, timeout=_TMO)
SYS_WATCH = _msg(0x516, "SYS_WATCH", "the caller selects/polls on fd: push its readiness changes to the event "
                 "channel from now on (until then replies alone carry it)", req=int, fd=int)
SYS_RECVFROM_MANY = _msg(0x517, "SYS_RECVFROM_MANY", "recvfrom on a UDP socket that also takes datagrams queued "
                         "behind the first (a bounded batch the client library serves later reads from): -> "
                         "[data, addr, port, truelen, [[data, addr, port], ...]]", req=int, fd=int, bufsize=int,
                         flags=int, timeout=_TMO)
SYS_SEND_POST = _msg(0x518, "SYS_SEND_POST", "a small TCP send the caller does not wait for, on a connected "
                     "socket: no reply. prev is the request id of this thread's previous post not yet confirmed (0: "
                     "none); a post is applied only whole and only after prev, else dropped, and the caller's next "
                     "call (fenced: a first part naming its last post) is answered SYS_REPLAY to send them again",
                     req=int, fd=int, data=bytes, flags=int, prev=int)
SYS_LAST = SYS_SEND_POST
SYS_REPLAY = -1    # the errno of a fenced call's answer when posts before it are missing; the result is the
#                    request id of the caller's last post applied (0: none known)
SYS_POSTS_PENDING = -2   # the errno of a call fenced by other threads' posts on its socket when one of them
#                          is not applied yet: ask again (the library has the idle poster's DEALER replay them)
SIOCINQ, SIOCOUTQ, SIOCATMARK = 0x541B, 0x5411, 0x8905   # SYS_IOCTL requests (FIONREAD is SIOCINQ)
WAITALL_MAX = 4 << 20    # bytes one MSG_WAITALL read gathers in the socket server; the library reads more in turns

# -- tcp <-> socket_server -----------------------------------------------------
# A connection is named by a conn id: the socket's id for active opens, one
# that tcp makes for connections a listener accepted. Stream data travels as
# bytes, many kilobytes a message, named by stream offsets both ways (as are
# 'acked' and TCP_RCVD): after a restart of tcp either side can send again what
# the other may have missed, and the receiver drops what it already has.
RMEM_MAX = 212992        # net.core.rmem_max / wmem_max: SO_RCVBUF / SO_SNDBUF go up to twice this
TCP_BIND = _msg(0x601, "TCP_BIND", "socket_server -> tcp: reserve a local port (0: ephemeral)",
                req=int, sock=int, addr=_IP, port=int, flags=int)
TCP_LISTEN = _msg(0x602, "TCP_LISTEN", "socket_server -> tcp: listen on the bound port", req=int, sock=int,
                  backlog=int, rcvbuf=int)
TCP_CONNECT = _msg(0x603, "TCP_CONNECT", "socket_server -> tcp: active open (binds an ephemeral port if needed)",
                   req=int, sock=int, raddr=_IP, rport=int, rcvbuf=int, nodelay=bool, keepalive=bool,
                   opts=dict)   # the socket's TCP_SETOPT options set before it connected
TCP_SEND = _msg(0x605, "TCP_SEND", "socket_server -> tcp: stream data to send, starting at stream offset off",
                conn=int, off=int, data=bytes)
TCP_RCVD = _msg(0x606, "TCP_RCVD", "socket_server -> tcp: the application has read the stream up to off",
                conn=int, off=int)
TCP_CLOSE = _msg(0x607, "TCP_CLOSE", "socket_server -> tcp: how 1 = shutdown(SHUT_WR) (FIN), "
                 "2 = abort (RST), 3 = close (FIN, then tcp finishes alone; listeners and unbound sockets go); "
                 "the FIN goes after stream offset off (tcp waits for any data a restart lost before it)",
                 conn=int, how=int, off=int)
CLOSE_SHUT_WR, CLOSE_ABORT, CLOSE_FORGET = 1, 2, 3   # TCP_CLOSE how
TCP_SETOPT = _msg(0x608, "TCP_SETOPT", "socket_server -> tcp: a connection's option: nodelay, keepalive, "
                  "cc (a name), keepidle, keepintvl, keepcnt, maxseg, ttl, tos", conn=int, name=str, value=(int, str))
TCP_GETINFO = _msg(0x60D, "TCP_GETINFO", "socket_server -> tcp: a connection's TCP_INFO; answered with an "
                   "'info' item (req, struct tcp_info bytes; empty if tcp has no such connection)",
                   req=int, sock=int, conn=int)
TCP_EVENTS = _msg(0x609, "TCP_EVENTS", "tcp -> socket_server: [[conn, kind, ...], ...] where kind is "
                  "'result' (of a request: req, errno, local addr, port; conn is the socket), "
                  "'est' (laddr, lport), 'acc' (listener, raddr, rport, laddr, lport), 'data' (offset, bytes), "
                  "'acked' (stream offset acknowledged), 'urg' (stream offset of an urgent byte), 'eof', "
                  "'err' (errno), 'closed', 'resend' (offset: TCP_SEND again from there), 'info' (answer to "
                  "TCP_GETINFO: req, bytes; conn is the socket); after a restart "
                  "'restart', then each connection's state and 'sync' (stream bytes tcp holds), then 'synced'",
                  items=list)
# The items of TCP_EVENTS: [conn, kind, field...] with these fields per kind (decoded into
# named tuples by shared/ipc/codec.py's decode_tcp_event)
TCP_EVENT_FIELDS: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "result": (("req", int), ("err", int), ("addr", _IP), ("port", int)),   # conn: the socket's id
    "info": (("req", int), ("info", bytes)),                                  # conn: the socket's id
    "est": (("laddr", _IP), ("lport", int)),
    "acc": (("listener", int), ("raddr", _IP), ("rport", int), ("laddr", _IP), ("lport", int)),
    "data": (("off", int), ("data", bytes)),
    "acked": (("off", int),),
    "urg": (("off", int),),
    "eof": (),
    "err": (("errno", int),),
    "closed": (),
    "resend": (("off", int),),
    "restart": (("token", int),),         # conn 0: each connection follows, then 'synced'; token: the
                                          # latest TCP_RESYNC's (0: tcp's own, after its restart)
    "sync": (("off", int),),              # the stream bytes tcp holds of the connection
    "synced": (),
}

TCP_SEND_URG = _msg(0x60B, "TCP_SEND_URG", "socket_server -> tcp: stream data whose last byte is urgent "
                    "(send with MSG_OOB)", conn=int, off=int, data=bytes)
TCP_RESYNC = _msg(0x60C, "TCP_RESYNC", "socket_server -> tcp: I restarted; tell me every connection again "
                  "('restart' with this token ... 'synced', as after a restart of tcp)", token=int)
TCP_ACCEPTED = _msg(0x60A, "TCP_ACCEPTED", "socket_server -> tcp: a connection left the accept queue",
                    listener=int)

# -- the capture endpoint (netdev's PUB) ----------------------------------------
# each frame a capturer is leased: [ifindex, direction (CAPTURE_RX, CAPTURE_TX), wall time, frame bytes];
# codec.py's capture_frame / decode_capture
CAPTURE_FIELDS = ("ifindex", "direction", "ts", "frame")

# -- control ----------------------------------------------------------------
CTL_PING = _msg(0x901, "CTL_PING", "heartbeat; reply [0, {'pid', 'name'}]")
CTL_STATS = _msg(0x902, "CTL_STATS", "counters; reply [0, {counter: value}]")
CTL_IMPAIR = _msg(0x904, "CTL_IMPAIR", "fault injection in netdev: drop frames of a device at random",
                  dev=str, rx_loss=float, tx_loss=float, seed=int)
ANNOUNCE_ACK = _msg(0x905, "ANNOUNCE_ACK", "any -> the announcing service: state message `msg` with "
                    "`token` taken (err 0) or refused (errno)", msg=int, token=int, err=int)
CTL_CAPTURE = _msg(0x906, "CTL_CAPTURE", "netdev: publish copies of a device's frames on the capture endpoint "
                   "for `lease` seconds (renewed by the capturer; 0 stops)", dev=str, lease=float)
CTL_FILTER = _msg(0x907, "CTL_FILTER", "ip: netfilter rules: op 'add' (args: CHAIN [match ...] -j VERDICT), "
                  "'del' (CHAIN, N), 'list', 'flush'", op=str, args=list)
CTL_ROUTE = _msg(0x908, "CTL_ROUTE", "ip, tcp, socket_server: route add|del DST [via GW] [dev DEV]", op=str,
                 dst=str, via=(str, type(None)), dev=(str, type(None)))
CTL_ADDR = _msg(0x909, "CTL_ADDR", "ip, udp, tcp, socket_server: addr add|del ADDR/PLEN dev DEV", op=str,
                addr=str, dev=str)
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
