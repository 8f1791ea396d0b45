"""TCP sockets in the socket core: each call, with tcp played by the test."""

import errno
import socket as ksock

from shared.ipc.messages import (CLOSE_ABORT, CLOSE_FORGET, CLOSE_SHUT_WR, SIOCINQ, SIOCOUTQ, SYS_ACCEPT, SYS_BIND,
                                 SYS_CLOSE, SYS_CONNECT, SYS_GETPEERNAME, SYS_GETSOCKNAME, SYS_GETSOCKOPT,
                                 SYS_IOCTL, SYS_LISTEN, SYS_RECVFROM, SYS_SENDTO, SYS_SETSOCKOPT, SYS_SHUTDOWN,
                                 TCP_ACCEPTED, TCP_BIND, TCP_CLOSE, TCP_CONNECT, TCP_LISTEN, TCP_RCVD, TCP_SEND,
                                 TCP_SETOPT)

ME, PEER = 0x0A420002, 0x0A420001


def tcp_answer(host, what, err=0, addr=ME, port=40000):
    """Play tcp: answer the request of kind ``what`` waiting in the outbox; the message list."""
    msgs = host.sent("tcp")
    code, f = next(m for m in msgs if m[0] == what)
    host.tcp_events([f[1], "result", f[0], err, addr, port])
    return msgs


def connected(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_STREAM)
    req = app.send(SYS_CONNECT, fd, "10.66.0.1", 80, None)
    tcp_answer(host, TCP_CONNECT)
    sock = host.clients[app.cid].fds[fd]
    assert app.reply(req) is None                # connecting until established
    host.tcp_events([sock.conn, "est", ME, 40000])
    assert app.reply(req).err == 0
    return fd, sock


def listening(host, app, port=8080):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_STREAM)
    req = app.send(SYS_BIND, fd, "0.0.0.0", port)
    tcp_answer(host, TCP_BIND, port=port)
    assert app.reply(req).err == 0
    req = app.send(SYS_LISTEN, fd, 5)
    msgs = tcp_answer(host, TCP_LISTEN, port=port)
    assert app.reply(req).err == 0
    assert [f.backlog for c, f in msgs if c == TCP_LISTEN] == [5]
    return fd, host.clients[app.cid].fds[fd]


def test_bind_is_tcps_answer(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_STREAM)
    req = app.send(SYS_BIND, fd, "0.0.0.0", 80)
    tcp_answer(host, TCP_BIND, err=errno.EADDRINUSE)
    assert app.reply(req).err == errno.EADDRINUSE
    assert app.call(SYS_BIND, fd, "10.1.2.3", 80).err == errno.EADDRNOTAVAIL


def test_listen_then_accept_a_connection_tcp_announces(host, app):
    fd, lst = listening(host, app)
    req = app.send(SYS_ACCEPT, fd, None)
    assert app.reply(req) is None
    host.tcp_events([1 << 40, "acc", lst.id, PEER, 51000, ME, 8080])
    newfd, addr, port, sid, *_ = app.reply(req).result
    assert (addr, port) == ("10.66.0.1", 51000) and newfd != fd
    assert [c for c, _ in host.sent("tcp")].count(TCP_ACCEPTED) == 1
    assert app.ok(SYS_GETPEERNAME, newfd) == ["10.66.0.1", 51000]
    assert app.call(SYS_ACCEPT, fd, 0).err == errno.EAGAIN


def test_connect_is_answered_when_established(host, app):
    fd, _ = connected(host, app)
    assert app.ok(SYS_GETSOCKNAME, fd) == ["10.66.0.2", 40000]
    assert app.call(SYS_CONNECT, fd, "10.66.0.1", 80, None).err == errno.EISCONN


def test_a_refused_connect_fails_with_tcps_errno(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_STREAM)
    req = app.send(SYS_CONNECT, fd, "10.66.0.1", 81, None)
    tcp_answer(host, TCP_CONNECT)
    host.tcp_events([host.clients[app.cid].fds[fd].conn, "err", errno.ECONNREFUSED])
    assert app.reply(req).err == errno.ECONNREFUSED


def test_send_goes_to_tcp_within_the_send_buffer(host, app):
    fd, sock = connected(host, app)
    assert app.call(SYS_SENDTO, fd, b"x", 0, None, 0, None).result == 1
    assert (TCP_SEND, (sock.conn, 0, b"x",)) in host.sent("tcp")
    assert app.ok(SYS_IOCTL, fd, SIOCOUTQ) == 1
    host.tcp_events([sock.conn, "acked", 1])
    assert app.ok(SYS_IOCTL, fd, SIOCOUTQ) == 0
    sock.sndbuf = 4
    assert app.ok(SYS_SENDTO, fd, b"abcdefgh", 0, None, 0, None) == 4    # what fits
    assert app.call(SYS_SENDTO, fd, b"more", 0, None, 0, 0).err == errno.EAGAIN


def test_recv_reads_what_tcp_delivered_and_credits_the_window(host, app):
    fd, sock = connected(host, app)
    req = app.send(SYS_RECVFROM, fd, 4, 0, None)
    assert app.reply(req) is None
    host.tcp_events([sock.conn, "data", 0, b"hello world"])
    assert app.reply(req).result[0] == b"hell"
    assert app.ok(SYS_IOCTL, fd, SIOCINQ) == 7
    assert app.ok(SYS_RECVFROM, fd, 100, 0, None)[0] == b"o world"
    host.credits_due()
    assert (TCP_RCVD, (sock.conn, 11,)) in host.sent("tcp")
    host.tcp_events([sock.conn, "eof"])
    assert app.ok(SYS_RECVFROM, fd, 100, 0, None)[0] == b""


def test_shutdown_write_sends_a_fin_after_the_data(host, app):
    fd, sock = connected(host, app)
    app.ok(SYS_SENDTO, fd, b"abc", 0, None, 0, None)
    app.ok(SYS_SHUTDOWN, fd, ksock.SHUT_WR)
    assert (TCP_CLOSE, (sock.conn, CLOSE_SHUT_WR, 3,)) in host.sent("tcp")
    assert app.call(SYS_SENDTO, fd, b"d", 0, None, 0, None).err == errno.EPIPE
    assert app.call(SYS_SHUTDOWN, app.socket(ksock.AF_INET, ksock.SOCK_STREAM), 1).err == errno.ENOTCONN


def test_close_with_unread_data_resets(host, app):
    fd, sock = connected(host, app)
    host.tcp_events([sock.conn, "data", 0, b"unread"])
    app.ok(SYS_CLOSE, fd)
    assert (TCP_CLOSE, (sock.conn, CLOSE_ABORT, 0,)) in host.sent("tcp")
    fd2, sock2 = connected(host, app)
    app.ok(SYS_CLOSE, fd2)
    assert (TCP_CLOSE, (sock2.conn, CLOSE_FORGET, 0,)) in host.sent("tcp")


def test_options_reach_tcp_for_a_connection(host, app):
    fd, sock = connected(host, app)
    app.ok(SYS_SETSOCKOPT, fd, ksock.IPPROTO_TCP, ksock.TCP_NODELAY, 1)
    assert (TCP_SETOPT, (sock.conn, "nodelay", 1,)) in host.sent("tcp")
    assert app.ok(SYS_GETSOCKOPT, fd, ksock.IPPROTO_TCP, ksock.TCP_NODELAY) == 1
    assert app.ok(SYS_GETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_ACCEPTCONN) == 0


def test_after_our_restart_only_tcps_answer_to_our_resync_counts(host, app):
    """Events tcp sent a killed predecessor that it never read died with it; those queued
    behind them reach the new incarnation past that gap. Until the resync answering its own
    TCP_RESYNC (its token), they are dropped: an eof past missing data would end a read
    early, an older resync's 'synced' would reset a connection it never named."""
    fd, sock = connected(host, app)
    host.tcp_wait = 12345                            # as SocketServer.ask_tcp_resync leaves it
    req = app.send(SYS_RECVFROM, fd, 100, 0, None)
    host.tcp_events([sock.conn, "eof"],                          # past a gap: dropped
                    [0, "restart", 999], [0, "synced"])          # an older resync: dropped too
    assert app.reply(req) is None and sock.st == "connected"
    assert host.counters["tcp_events_before_resync"] == 3
    host.tcp_events([0, "restart", 12345], [sock.conn, "est", ME, 40000],
                    [sock.conn, "data", 0, b"all of it"], [sock.conn, "sync", 0], [0, "synced"])
    assert host.tcp_wait is None and app.reply(req).result[0] == b"all of it"
    host.tcp_events([sock.conn, "eof"])                          # and from then on, as ever
    assert app.ok(SYS_RECVFROM, fd, 100, 0, None)[0] == b""
