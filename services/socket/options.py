"""Socket options and ioctls (setsockopt/getsockopt at SOL_SOCKET, IPPROTO_IP and
IPPROTO_TCP; SIOCINQ, SIOCOUTQ, SIOCATMARK), with the kernel's checks and answers.

TCP- and IP-level options are kept per socket (Sock.tcpopts, checked by
shared/proto/sockopt.py) and passed on to tcp for a connection that exists.
"""

from __future__ import annotations

import errno
import socket as ksock
import struct

from services.socket import credentials
from services.socket.types import INET_FAMILIES, Client, Pending, Sock
from shared.ipc.codec import encode
from shared.ipc.messages import RMEM_MAX, SIOCATMARK, SIOCINQ, SIOCOUTQ, TCP_GETINFO, TCP_SETOPT
from shared.proto import sockopt
from shared.proto.tcp.info import STATE_CLOSE, STATE_LISTEN, idle_info
from shared.proto.tcp.tcb import TcpConfig
from shared.wire.ipv6 import DEFAULT_HOP_LIMIT

ASKED = object()                  # getsockopt: answered when tcp tells


class SocketOptions:
    """Mixed into SocketCore."""

    def setsockopt(self, sock: Sock, level: int, name: int, value: int | str, client: Client) -> None:
        if level == ksock.IPPROTO_TCP and sock.stream and name == ksock.TCP_NODELAY:
            self.set_stream_opt(sock, "nodelay", int(value))
            return
        if (level, name) in sockopt.KEYS and sock.family in INET_FAMILIES and sock.type != ksock.SOCK_RAW:
            key, kept = sockopt.check(level, name, value, sock.stream, sock.tcpopts.get("tos", 0))
            if key == "tos" and kept != sock.tcpopts.get("tos", 0):
                sock.tcpopts["priority"] = sockopt.tos_priority(kept)
            sock.tcpopts[key] = kept
            self.state.touch(sock)
            if sock.stream and sock.st in ("connecting", "connected") and sock.conn:
                self.tcp_msg(encode(TCP_SETOPT, sock.conn, key, kept))
            return
        if not isinstance(value, int):
            raise OSError(errno.EINVAL, "Invalid argument")
        if level == ksock.IPPROTO_IPV6 and sock.family == ksock.AF_INET6:
            self.ipv6_setsockopt(sock, name, value)
            return
        if level == ksock.IPPROTO_IP:
            self.raw_setsockopt(sock, name, value)
            return
        if level != ksock.SOL_SOCKET:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        if name == ksock.SO_KEEPALIVE and sock.stream:
            self.set_stream_opt(sock, "keepalive", value)
        elif name == ksock.SO_LINGER:
            sock.linger = value             # the client library sends seconds, or -1 for off
        elif name == ksock.SO_REUSEADDR:
            sock.reuseaddr = bool(value)
        elif name == ksock.SO_REUSEPORT:
            sock.reuseport = bool(value)
        elif name == ksock.SO_BROADCAST:
            sock.broadcast = bool(value)
        elif name == ksock.SO_OOBINLINE:
            sock.oobinline = bool(value)
        elif name == ksock.SO_RCVBUF:   # the kernel doubles it for bookkeeping overhead
            sock.rcvbuf = max(2304, min(max(value, 0), RMEM_MAX) * 2)
        elif name == ksock.SO_SNDBUF:
            sock.sndbuf = max(4608, min(max(value, 0), RMEM_MAX) * 2)
        elif name == ksock.SO_PRIORITY:     # 0..6 for anyone, the rest with CAP_NET_RAW or CAP_NET_ADMIN
            if not 0 <= value <= sockopt.PRIO_MAX_UNPRIVILEGED and not self.net_admin(client):
                raise OSError(errno.EPERM, "Operation not permitted")
            sock.tcpopts["priority"] = value
            self.state.touch(sock)
        elif name == ksock.SO_MARK:         # the kernel's check first, then: no rule or route matches marks
            if not self.net_admin(client):
                raise OSError(errno.EPERM, "Operation not permitted")
            raise OSError(errno.ENOPROTOOPT, "SO_MARK is not supported by mkstack (nothing matches on marks)")
        elif name == ksock.SO_RCVLOWAT:     # sock_setsockopt: negative is INT_MAX, 0 is 1
            value = value if value >= 0 else 2 ** 31 - 1
            if sock.stream:                 # tcp_set_rcvlowat: at most half the largest receive buffer
                value = min(value, RMEM_MAX >> 1)
            sock.rcvlowat = value or 1
            if sock.stream:
                self.wake_stream(sock)
        else:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")

    def ipv6_setsockopt(self, sock: Sock, name: int, value: int) -> None:
        """IPV6_V6ONLY (only before bind, as Linux), IPV6_UNICAST_HOPS (-1: the default) and
        IPV6_TCLASS; the last two are what udp sends as the hop limit and traffic class."""
        if name == ksock.IPV6_V6ONLY:
            if sock.bound or sock.binding:
                raise OSError(errno.EINVAL, "Invalid argument")
            sock.tcpopts["v6only"] = int(bool(value))
        elif name in (ksock.IPV6_UNICAST_HOPS, ksock.IPV6_TCLASS):
            if not -1 <= value <= 255:
                raise OSError(errno.EINVAL, "Invalid argument")
            key = "ttl" if name == ksock.IPV6_UNICAST_HOPS else "tos"
            if value == -1:
                sock.tcpopts.pop(key, None)
            else:
                sock.tcpopts[key] = value
        else:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        self.state.touch(sock)

    def getsockopt(self, sock: Sock, level: int, name: int, call: Pending | None = None) -> object:
        """The option's value, or ASKED: the call is answered when tcp tells (TCP_INFO,
        and TCP_MAXSEG of a connection: the MSS it sends with)."""
        if level == ksock.IPPROTO_TCP and sock.stream and name == ksock.TCP_NODELAY:
            return int(sock.nodelay)
        if level == ksock.IPPROTO_TCP and sock.stream and name in (ksock.TCP_INFO, ksock.TCP_MAXSEG):
            if sock.conn and sock.st in ("connecting", "connected") and call is not None:
                what = "info" if name == ksock.TCP_INFO else "maxseg"
                self.tcp_request(sock, call, what, TCP_GETINFO, sock.conn)
                return ASKED
            if name == ksock.TCP_MAXSEG:
                return sock.tcpopts.get("maxseg") or sockopt.TCP_MSS_DEFAULT
            return idle_info(STATE_LISTEN if sock.st == "listening" else STATE_CLOSE)
        if (level, name) in sockopt.KEYS and sock.family in INET_FAMILIES and sock.type != ksock.SOCK_RAW and \
                (sock.stream or level == ksock.IPPROTO_IP):
            return sockopt.current(sock.tcpopts, level, name, self.cfg.tcp.get("cc", TcpConfig.cc))
        if level == ksock.IPPROTO_TCP and sock.family in INET_FAMILIES and not sock.stream:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")    # ip_getsockopt's answer to SOL_TCP
        if level == ksock.IPPROTO_IP and sock.type == ksock.SOCK_RAW and name == ksock.IP_HDRINCL:
            return int(sock.hdrincl)
        if level == ksock.IPPROTO_IPV6 and sock.family == ksock.AF_INET6:
            if name == ksock.IPV6_V6ONLY:
                return sock.tcpopts.get("v6only", 0)
            if name == ksock.IPV6_UNICAST_HOPS:
                return sock.tcpopts.get("ttl", DEFAULT_HOP_LIMIT)
            if name == ksock.IPV6_TCLASS:
                return sock.tcpopts.get("tos", 0)
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        if level != ksock.SOL_SOCKET:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        if name == ksock.SO_KEEPALIVE:
            return int(sock.keepalive)
        if name == ksock.SO_ACCEPTCONN:
            return int(sock.st == "listening")
        if name == ksock.SO_LINGER:
            return sock.linger
        if name == ksock.SO_ERROR:
            return self.take_error(sock).errno if sock.err else 0
        if name == ksock.SO_PEERCRED:
            return self.peercred(sock)
        values = {ksock.SO_REUSEADDR: int(sock.reuseaddr), ksock.SO_REUSEPORT: int(sock.reuseport),
                  ksock.SO_BROADCAST: int(sock.broadcast),
                  ksock.SO_OOBINLINE: int(sock.oobinline),
                  ksock.SO_RCVBUF: sock.rcvbuf, ksock.SO_SNDBUF: sock.sndbuf, ksock.SO_TYPE: sock.type,
                  ksock.SO_PROTOCOL: sock.proto, ksock.SO_DOMAIN: sock.family, ksock.SO_RCVLOWAT: sock.rcvlowat,
                  ksock.SO_PRIORITY: sock.tcpopts.get("priority", 0)}
        if name not in values:
            raise OSError(errno.ENOPROTOOPT, "Protocol not available")
        return values[name]

    @staticmethod
    def net_admin(client: Client) -> bool:
        """sockopt_ns_capable(CAP_NET_RAW) || ...(CAP_NET_ADMIN), of the calling process."""
        creds = credentials.creds_of(client.pid, client.start)
        return creds.capable(credentials.CAP_NET_RAW) or creds.capable(credentials.CAP_NET_ADMIN)

    @staticmethod
    def peercred(sock: Sock) -> bytes:
        """struct ucred of the process at the other end of an AF_UNIX socket (a listener's
        own), as the kernel knows it now (Linux keeps what it was at connect time); none:
        pid 0 and ids -1, as Linux answers unconnected and INET sockets."""
        who = sock.peer.client if sock.family == ksock.AF_UNIX and sock.peer is not None else \
            sock.client if sock.family == ksock.AF_UNIX and sock.st == "listening" else None
        if who is None:
            return struct.pack("3i", 0, -1, -1)
        try:
            c = credentials.creds_of(who.pid, who.start)
        except OSError:
            return struct.pack("3i", 0, -1, -1)         # that process has gone
        return struct.pack("3i", who.pid, c.uid, c.gid)

    def ioctl(self, sock: Sock, request: int) -> int:
        """The socket ioctls an application may read through fcntl.ioctl."""
        if sock.stream:
            if request == SIOCATMARK:
                return int(self.at_mark(sock))
            if sock.st == "listening" and request in (SIOCINQ, SIOCOUTQ):
                raise OSError(errno.EINVAL, "Invalid argument")
            if request == SIOCINQ:   # tcp_inq: up to a pending urgent byte that is not inline
                consumed = sock.consumed
                if sock.urg and not sock.oobinline and consumed <= sock.urg_off < sock.rcv_total:
                    return sock.urg_off - consumed
                return len(sock.rbuf)
            if request == SIOCOUTQ:
                return sock.snd_pending
        elif request == SIOCINQ:
            return len(sock.rcvq[0][0]) if sock.rcvq else 0   # the next datagram's size, as udp_ioctl
        elif request == SIOCOUTQ:
            return 0
        raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
