"""SOCK_RAW sockets in the socket core: each call, with ip played by the test."""

import errno
import socket as ksock

from shared.ipc.messages import (RAW_DELIVER, SYS_ACCEPT, SYS_BIND, SYS_CLOSE, SYS_CONNECT, SYS_GETPEERNAME,
                                 SYS_GETSOCKNAME, SYS_GETSOCKOPT, SYS_RECVFROM, SYS_SENDTO, SYS_SETSOCKOPT,
                                 SYS_SHUTDOWN, SYS_SOCKET, SYS_LISTEN, SYS_IOCTL, SIOCINQ)

ICMP = ksock.IPPROTO_ICMP


def datagram(proto=ICMP, src=bytes([10, 66, 0, 1]), dst=bytes([10, 66, 0, 2]), payload=b"\x08\x00abcd"):
    return bytes([0x45, 0, 0, 20 + len(payload), 0, 0, 0, 0, 64, proto, 0, 0]) + src + dst + payload


def deliver(host, data):
    skb = host.pool.alloc(len(data))
    skb.put(len(data))[:] = data
    host.message(RAW_DELIVER, 1, [host.pool.give(skb, host.owner_ids["socket_server"])])


def test_socket_needs_cap_net_raw_and_announces_its_protocol(host, app):
    assert app.call(SYS_SOCKET, ksock.AF_INET, ksock.SOCK_RAW, 0).err == errno.EPROTONOSUPPORT
    app.socket(ksock.AF_INET, ksock.SOCK_RAW, ICMP)          # this test runs as root
    assert host.announced["ip"] == ["socket_server", [], [ICMP]]


def test_recvfrom_gets_a_copy_of_each_matching_datagram_header_and_all(host, app):
    a, b = app.socket(ksock.AF_INET, ksock.SOCK_RAW, ICMP), app.socket(ksock.AF_INET, ksock.SOCK_RAW, ICMP)
    udp_only = app.socket(ksock.AF_INET, ksock.SOCK_RAW, ksock.IPPROTO_UDP)
    req = app.send(SYS_RECVFROM, a, 100, 0, None)
    deliver(host, datagram())
    data, addr, _, n = app.reply(req).result
    assert data == datagram() and addr == "10.66.0.1" and n == 26
    assert app.ok(SYS_RECVFROM, b, 100, 0, None)[0] == datagram()
    assert app.call(SYS_RECVFROM, udp_only, 100, 0, 0).err == errno.EAGAIN


def test_bind_and_connect_filter_what_arrives(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_RAW, ICMP)
    app.ok(SYS_BIND, fd, "10.66.0.2", 0)
    app.ok(SYS_CONNECT, fd, "10.66.0.9", 0, None)
    assert app.ok(SYS_GETSOCKNAME, fd) == ["10.66.0.2", ICMP]
    assert app.ok(SYS_GETPEERNAME, fd) == ["10.66.0.9", 0]
    deliver(host, datagram())                                 # from 10.66.0.1: not its peer
    assert app.call(SYS_RECVFROM, fd, 100, 0, 0).err == errno.EAGAIN
    assert app.call(SYS_BIND, fd, "10.1.1.1", 0).err == errno.EADDRNOTAVAIL


def test_sendto_hands_ip_the_payload_or_the_callers_header(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_RAW, ICMP)
    assert app.ok(SYS_SENDTO, fd, b"\x08\x00ping", 0, "10.66.0.1", 0, None) == 6
    [(item, skb)] = host.ip_sends
    assert item[2:4] == [0x0A420001, ICMP] and bytes(skb.data) == b"\x08\x00ping"
    app.ok(SYS_SETSOCKOPT, fd, ksock.IPPROTO_IP, ksock.IP_HDRINCL, 1)
    assert app.ok(SYS_GETSOCKOPT, fd, ksock.IPPROTO_IP, ksock.IP_HDRINCL) == 1
    assert app.call(SYS_SENDTO, fd, b"short", 0, "10.66.0.1", 0, None).err == errno.EINVAL
    app.ok(SYS_SENDTO, fd, datagram(), 0, "10.66.0.1", 0, None)
    assert host.ip_raw_sends[0][0][1] == 0x0A420001
    assert app.call(SYS_SENDTO, fd, b"x", 0, None, 0, None).err == errno.EDESTADDRREQ


def test_shutdown_close_and_what_raw_sockets_do_not_do(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_RAW, ICMP)
    assert app.call(SYS_ACCEPT, fd, None).err == errno.EOPNOTSUPP
    assert app.call(SYS_SHUTDOWN, fd, ksock.SHUT_RD).err == errno.ENOTCONN
    app.ok(SYS_CONNECT, fd, "10.66.0.1", 0, None)
    app.ok(SYS_SHUTDOWN, fd, ksock.SHUT_RD)
    assert app.ok(SYS_RECVFROM, fd, 10, 0, None)[0] == b""
    app.ok(SYS_CLOSE, fd)
    assert host.announced["ip"] == ["socket_server", [], []]


def test_listen_and_ioctl_of_a_raw_socket(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_RAW, ICMP)
    assert app.call(SYS_LISTEN, fd, 1).err == errno.EOPNOTSUPP
    assert app.ok(SYS_IOCTL, fd, SIOCINQ) == 0
    deliver(host, datagram())
    assert app.ok(SYS_IOCTL, fd, SIOCINQ) == 26
