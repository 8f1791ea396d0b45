"""UDP sockets in the socket core: each call, with udp played by the test."""

import errno
import socket as ksock

from shared.ipc.messages import (SYS_ACCEPT, SYS_BIND, SYS_CLOSE, SYS_CONNECT, SYS_GETPEERNAME, SYS_GETSOCKNAME,
                                 SYS_GETSOCKOPT, SYS_IOCTL, SYS_SETSOCKOPT,
                                 SYS_RECVFROM, SYS_SENDTO, SYS_SHUTDOWN, SYS_LISTEN, UDP_CONNECT, UDP_DELIVER,
                                 UDP_BOUND, UDP_SOCK_ERR, UDP_UNBIND, SIOCINQ, BIND_RESTORE, UDP_BIND,
                                 UDP_RESYNC, UDP_SYNCED)

PEER = "10.66.0.1"


def deliver(host, sock_id, data, saddr=0x0A420001, sport=5353):
    skb = host.pool.alloc(len(data))
    skb.put(len(data))[:] = data
    handle = host.pool.give(skb, host.owner_ids["socket_server"])
    host.message(UDP_DELIVER, [[sock_id, handle, saddr, sport]])


def bound(host, app, port=40000):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    req = app.send(SYS_BIND, fd, "0.0.0.0", port)
    assert app.reply(req) is None                  # waits for udp's answer
    host.udp_answers_binds()
    assert app.reply(req).err == 0
    return fd, app.host.clients[app.cid].fds[fd]


def test_bind_waits_for_udp_and_answers_its_error(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    req = app.send(SYS_BIND, fd, "0.0.0.0", 53)
    [(code, fields)] = host.sent("udp")
    assert (fields.addr, fields.port) == (0, 53)
    host.message(UDP_BOUND, fields.req, fields.sock, errno.EADDRINUSE, 0, 0)
    assert app.reply(req).err == errno.EADDRINUSE
    assert app.call(SYS_BIND, fd, "10.9.9.9", 1).err == errno.EADDRNOTAVAIL


def test_getsockname_after_bind(host, app):
    fd, _ = bound(host, app, 40001)
    assert app.ok(SYS_GETSOCKNAME, fd) == ["10.66.0.2", 40001]


def test_sendto_autobinds_then_hands_udp_the_datagram(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    req = app.send(SYS_SENDTO, fd, b"ping", 0, PEER, 7, None)
    host.udp_answers_binds(port=41000)
    assert app.reply(req).result == 4
    [(item, skb)] = host.udp_sends
    assert item[2:4] == [0x0A420001, 7] and bytes(skb.data) == b"ping"
    assert app.call(SYS_SENDTO, fd, b"x" * 65508, 0, PEER, 7, None).err == errno.EMSGSIZE


def test_connect_sets_the_default_destination_and_tells_udp(host, app):
    fd, sock = bound(host, app)
    assert app.call(SYS_GETPEERNAME, fd).err == errno.ENOTCONN
    app.ok(SYS_CONNECT, fd, PEER, 9, None)
    assert (UDP_CONNECT, (sock.id, 0x0A420002, 0x0A420001, 9,)) in host.sent("udp")
    assert app.ok(SYS_GETPEERNAME, fd) == [PEER, 9]
    assert app.ok(SYS_SENDTO, fd, b"hi", 0, None, 0, None) == 2


def test_recvfrom_waits_for_a_datagram(host, app):
    fd, sock = bound(host, app)
    req = app.send(SYS_RECVFROM, fd, 100, 0, None)
    assert app.reply(req) is None
    deliver(host, sock.id, b"hello")
    data, addr, port, truelen = app.reply(req).result
    assert (data, addr, port, truelen) == (b"hello", PEER, 5353, 5)
    assert app.call(SYS_RECVFROM, fd, 100, 0, 0).err == errno.EAGAIN     # nothing left: a zero timeout


def test_a_datagram_past_so_rcvbuf_is_dropped_and_counted(host, app):
    fd, sock = bound(host, app)
    sock.rcvbuf = 3000
    deliver(host, sock.id, b"a" * 1000)
    deliver(host, sock.id, b"b" * 1000)
    assert host.counters["RcvbufErrors"] == 1
    assert app.ok(SYS_IOCTL, fd, SIOCINQ) == 1000


def test_an_asynchronous_error_is_the_next_calls(host, app):
    fd, sock = bound(host, app)
    host.message(UDP_SOCK_ERR, sock.id, errno.ECONNREFUSED)
    assert app.call(SYS_RECVFROM, fd, 100, 0, None).err == errno.ECONNREFUSED
    assert app.call(SYS_RECVFROM, fd, 100, 0, 0).err == errno.EAGAIN        # reported once


def test_shutdown_needs_a_peer_and_ends_reads(host, app):
    fd, _ = bound(host, app)
    assert app.call(SYS_SHUTDOWN, fd, ksock.SHUT_RD).err == errno.ENOTCONN
    app.ok(SYS_CONNECT, fd, PEER, 9, None)
    req = app.send(SYS_RECVFROM, fd, 100, 0, None)
    app.ok(SYS_SHUTDOWN, fd, ksock.SHUT_RDWR)
    assert app.reply(req).result[0] == b""
    assert app.call(SYS_SENDTO, fd, b"x", 0, None, 0, None).err == errno.EPIPE


def test_listen_is_not_for_datagrams(host, app):
    fd, _ = bound(host, app)
    assert app.call(SYS_LISTEN, fd, 5).err == errno.EOPNOTSUPP


def test_close_unbinds_and_fails_waiting_reads(host, app):
    fd, sock = bound(host, app)
    deliver(host, sock.id, b"unread")
    req = app.send(SYS_CLOSE, fd)
    assert app.reply(req).err == 0
    assert (UDP_UNBIND, (sock.id,)) in host.sent("udp")
    assert host.dgram_mem == 0 and sock.id not in host.socks
    assert app.call(SYS_RECVFROM, fd, 1, 0, None).err == errno.EBADF


def test_options_of_a_udp_socket_and_a_broadcast_send(host, app):
    fd, _ = bound(host, app)
    assert app.call(SYS_SENDTO, fd, b"all", 0, "10.66.0.255", 9, None).err == errno.EACCES
    app.ok(SYS_SETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_BROADCAST, 1)
    assert app.ok(SYS_GETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_BROADCAST) == 1
    assert app.ok(SYS_SENDTO, fd, b"all", 0, "10.66.0.255", 9, None) == 3
    assert app.call(SYS_ACCEPT, fd, None).err == errno.EOPNOTSUPP
    assert app.call(SYS_GETSOCKOPT, fd, ksock.IPPROTO_TCP, ksock.TCP_NODELAY).err == errno.EOPNOTSUPP


def test_a_restarted_udp_hears_every_binding_then_that_they_are_all_there(host, app):
    """udp holds datagrams until UDP_SYNCED: it must come after every binding."""
    fd, sock = bound(host, app, 40002)
    app.ok(SYS_CONNECT, fd, PEER, 9, None)
    host.sent("udp")
    host.message(UDP_RESYNC)
    sent = host.sent("udp")
    assert [code for code, _ in sent] == [UDP_BIND, UDP_CONNECT, UDP_SYNCED]
    assert (sent[0][1].sock, sent[0][1].port, sent[0][1].flags & BIND_RESTORE) == (sock.id, 40002, BIND_RESTORE)
