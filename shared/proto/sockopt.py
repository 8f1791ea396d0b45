"""The TCP- and IP-level socket options mkstack keeps per socket, checked as Linux
checks them (do_tcp_setsockopt, do_ip_setsockopt), and their values as
getsockopt reports them. Pure: the socket layer stores the result in the
socket's ``tcpopts`` and passes it on to tcp (TCP_SETOPT) or udp (each send).
"""

from __future__ import annotations

import errno
import socket as ksock

from shared.ipc.messages import BIND_REUSEADDR, BIND_REUSEPORT, BIND_V6, BIND_V6ONLY
from shared.proto.tcp.cc import ALGORITHMS
from shared.proto.udp import DUAL, V4, V6
from shared.wire.ipv4 import DEFAULT_TTL

TCP_MIN_MSS, MAX_TCP_WINDOW = 88, 32767
MAX_TCP_KEEPIDLE = MAX_TCP_KEEPINTVL = 32767
MAX_TCP_KEEPCNT = 127
INET_ECN_MASK = 3
TCP_MSS_DEFAULT = 536
# (level, optname) -> the key in a socket's tcpopts, and its value when not set
KEYS = {
    (ksock.IPPROTO_IP, ksock.IP_TTL): ("ttl", DEFAULT_TTL),
    (ksock.IPPROTO_IP, ksock.IP_TOS): ("tos", 0),
    (ksock.IPPROTO_TCP, ksock.TCP_KEEPIDLE): ("keepidle", 7200),
    (ksock.IPPROTO_TCP, ksock.TCP_KEEPINTVL): ("keepintvl", 75),
    (ksock.IPPROTO_TCP, ksock.TCP_KEEPCNT): ("keepcnt", 9),
    (ksock.IPPROTO_TCP, ksock.TCP_MAXSEG): ("maxseg", 0),
    (ksock.IPPROTO_TCP, ksock.TCP_CONGESTION): ("cc", ""),
}
TCP_ONLY = {"keepidle", "keepintvl", "keepcnt", "maxseg", "cc"}
# kept in tcpopts with the others but of no use to tcp: SO_PRIORITY (sk_priority; mkstack has no
# queueing disciplines to order by it, and neither does a Linux interface without one)
SOCKET_ONLY = {"priority"}
PRIO_MAX_UNPRIVILEGED = 6
# rt_tos2priority: the priority an IP_TOS implies (ip_tos2prio, by the TOS bits >> 1)
_TOS2PRIO = (0, 0, 0, 0, 2, 2, 2, 2, 6, 6, 6, 6, 4, 4, 4, 4)


def for_tcp(opts: dict) -> dict:
    """The options of a socket's tcpopts that tcp's connection takes."""
    return {k: v for k, v in opts.items() if k not in SOCKET_ONLY}


def tos_priority(tos: int) -> int:
    """SO_PRIORITY after setting IP_TOS (__ip_sock_set_tos sets both)."""
    return _TOS2PRIO[(tos & 0x1E) >> 1]


def _einval() -> OSError:
    return OSError(errno.EINVAL, "Invalid argument")


def check(level: int, name: int, value: int | str, stream: bool, tos_now: int = 0) -> tuple[str, int | str]:
    """(key, value to keep) for setsockopt(level, name, value); OSError as the kernel
    gives it (ENOPROTOOPT for an option this module does not keep)."""
    key = KEYS.get((level, name))
    if key is None or (key[0] in TCP_ONLY and not stream):
        raise OSError(errno.ENOPROTOOPT, "Protocol not available")
    k = key[0]
    if k == "cc":
        if not isinstance(value, str) or value not in ALGORITHMS:
            raise OSError(errno.ENOENT, "No such file or directory")
        return k, value
    if not isinstance(value, int):
        raise _einval()
    if k == "ttl":
        if value != -1 and not 1 <= value <= 255:
            raise _einval()
        return k, DEFAULT_TTL if value == -1 else value
    if k == "tos":
        value &= 0xFF
        if stream:                  # TCP keeps the ECN bits its own
            value = (value & ~INET_ECN_MASK) | (tos_now & INET_ECN_MASK)
        return k, value
    if k == "maxseg":
        if value and not TCP_MIN_MSS <= value <= MAX_TCP_WINDOW:
            raise _einval()
        return k, value
    limit = {"keepidle": MAX_TCP_KEEPIDLE, "keepintvl": MAX_TCP_KEEPINTVL, "keepcnt": MAX_TCP_KEEPCNT}[k]
    if not 1 <= value <= limit:
        raise _einval()
    return k, value


def current(opts: dict, level: int, name: int, default_cc: str) -> int | str | None:
    """getsockopt's value of a kept option (None: not one of them)."""
    key = KEYS.get((level, name))
    if key is None:
        return None
    if key[0] == "cc":
        return opts.get("cc") or default_cc
    return opts.get(key[0], key[1])


def bind_flags(reuseaddr: bool, reuseport: bool, inet6: bool = False, v6only: bool = False) -> int:
    """UDP_BIND / TCP_BIND flags of a socket's SO_REUSEADDR and SO_REUSEPORT, and for an
    AF_INET6 socket its IPV6_V6ONLY."""
    return ((BIND_REUSEADDR if reuseaddr else 0) | (BIND_REUSEPORT if reuseport else 0)
            | (BIND_V6 | (BIND_V6ONLY if v6only else 0) if inet6 else 0))


def bind_family(flags: int) -> int:
    """The families a binding with these flags takes (shared/proto/udp.py's V4, V6, DUAL)."""
    return V4 if not flags & BIND_V6 else V6 if flags & BIND_V6ONLY else DUAL
