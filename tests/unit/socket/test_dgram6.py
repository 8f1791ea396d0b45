"""AF_INET6 UDP sockets in the socket core (configs/ipv6.toml: fd66::2/64 on tap0), udp played
by the test: addresses as udp takes them (16 bytes, IPv4 as v4-mapped ints), IPV6_V6ONLY, names."""

import errno
import socket as ksock

from shared.ipc.messages import (BIND_V6, BIND_V6ONLY, SYS_BIND, SYS_CONNECT, SYS_GETPEERNAME, SYS_GETSOCKNAME,
                                 SYS_GETSOCKOPT, SYS_RECVFROM, SYS_SENDTO, SYS_SETSOCKOPT, SYS_SOCKET, UDP_BIND,
                                 UDP_BOUND, UDP_CONNECT)
from tests.unit.socket.test_dgram import deliver

G6, PEER6 = bytes.fromhex("fd66" + "00" * 13 + "02"), bytes.fromhex("fd66" + "00" * 13 + "01")
LINK_PEER = bytes.fromhex("fe80" + "00" * 13 + "01")


def bind6(host, app, addr="::", port=40000, v6only=False):
    fd = app.socket(ksock.AF_INET6, ksock.SOCK_DGRAM)
    if v6only:
        app.ok(SYS_SETSOCKOPT, fd, ksock.IPPROTO_IPV6, ksock.IPV6_V6ONLY, 1)
    req = app.send(SYS_BIND, fd, addr, port)
    [(code, f)] = host.sent("udp")
    assert code == UDP_BIND
    host.message(UDP_BOUND, f.req, f.sock, 0, f.addr, f.port or port)
    assert app.reply(req).err == 0
    return fd, f


def test_bind_tells_udp_the_family_and_v6only(host6, app6):
    _, f = bind6(host6, app6)
    assert (f.addr, f.port, f.flags & (BIND_V6 | BIND_V6ONLY)) == (0, 40000, BIND_V6)
    fd, f = bind6(host6, app6, "fd66::2", 40001, v6only=True)
    assert (f.addr, f.flags & (BIND_V6 | BIND_V6ONLY)) == (G6, BIND_V6 | BIND_V6ONLY)
    assert app6.ok(SYS_GETSOCKNAME, fd) == ["fd66::2", 40001]
    assert app6.ok(SYS_GETSOCKOPT, fd, ksock.IPPROTO_IPV6, ksock.IPV6_V6ONLY) == 1
    # as Linux: not after bind; no IPv4 address for an IPv6-only socket; ours only
    assert app6.call(SYS_SETSOCKOPT, fd, ksock.IPPROTO_IPV6, ksock.IPV6_V6ONLY, 0).err == errno.EINVAL
    v6only = app6.socket(ksock.AF_INET6, ksock.SOCK_DGRAM)
    app6.ok(SYS_SETSOCKOPT, v6only, ksock.IPPROTO_IPV6, ksock.IPV6_V6ONLY, 1)
    assert app6.call(SYS_BIND, v6only, "::ffff:10.66.0.2", 53).err == errno.EINVAL
    assert app6.call(SYS_BIND, v6only, "fd67::2", 53).err == errno.EADDRNOTAVAIL
    assert app6.call(SYS_BIND, v6only, "fd66::zz", 53).err == errno.EINVAL
    assert app6.call(SYS_BIND, v6only, b"fd66::2", 53).err == errno.EINVAL      # bytes are AF_UNIX names
    assert app6.call(SYS_BIND, v6only, "fe80::1%eth0", 53).err == errno.EINVAL  # the client sends scope ids
    assert host6.faults == []


def test_sendto_takes_ipv6_and_v4_mapped_destinations(host6, app6):
    fd, _ = bind6(host6, app6)
    assert app6.ok(SYS_SENDTO, fd, b"six", 0, "fd66::1", 7, None) == 3
    assert app6.ok(SYS_SENDTO, fd, b"four", 0, "::ffff:10.66.0.1", 7, None) == 4
    assert app6.ok(SYS_SENDTO, fd, b"x" * 65527, 0, "fe80::1%2", 7, None) == 65527   # no IPv4 header inside
    assert [item[2:4] for item, _ in host6.udp_sends] == [[PEER6, 7], [0x0A420001, 7], [LINK_PEER, 7]]
    assert app6.call(SYS_SENDTO, fd, b"x" * 65528, 0, "fd66::1", 7, None).err == errno.EMSGSIZE
    assert app6.call(SYS_SENDTO, fd, b"x" * 65508, 0, "::ffff:10.66.0.1", 7, None).err == errno.EMSGSIZE
    assert app6.call(SYS_SENDTO, fd, b"x", 0, "2001:db8::1", 7, None).err == errno.ENETUNREACH   # off the link
    v6only, _ = bind6(host6, app6, port=40002, v6only=True)
    assert app6.call(SYS_SENDTO, v6only, b"x", 0, "::ffff:10.66.0.1", 7, None).err == errno.ENETUNREACH


def test_connect_picks_the_source_of_the_destinations_link(host6, app6):
    fd, f = bind6(host6, app6)
    app6.ok(SYS_CONNECT, fd, "fd66::1", 9, None)
    assert (UDP_CONNECT, (f.sock, G6, PEER6, 9)) in host6.sent("udp")
    assert app6.ok(SYS_GETPEERNAME, fd) == ["fd66::1", 9]
    # bound to an IPv6 address now: IPv4 is out of its reach
    assert app6.call(SYS_SENDTO, fd, b"x", 0, "::ffff:10.66.0.1", 7, None).err == errno.EAFNOSUPPORT


def test_senders_are_shown_as_the_socket_family_names_them(host6, app6):
    fd, f = bind6(host6, app6)
    deliver(host6, f.sock, b"six", saddr=PEER6, sport=1)
    deliver(host6, f.sock, b"four", saddr=0x0A420001, sport=2)
    deliver(host6, f.sock, b"link", saddr=LINK_PEER, sport=3)
    got = [app6.ok(SYS_RECVFROM, fd, 100, 0, None)[:3] for _ in range(3)]
    assert got == [[b"six", "fd66::1", 1], [b"four", "::ffff:10.66.0.1", 2], [b"link", "fe80::1%2", 3]]


def test_raw_ipv6_sockets_are_icmpv6_only(app6):
    assert app6.call(SYS_SOCKET, ksock.AF_INET6, ksock.SOCK_RAW, ksock.IPPROTO_UDP).err == errno.EPROTONOSUPPORT
    assert app6.call(SYS_SOCKET, ksock.AF_INET6, ksock.SOCK_SEQPACKET, 0).err == errno.ESOCKTNOSUPPORT
