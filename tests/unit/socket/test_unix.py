"""AF_UNIX sockets in the socket core: each call, stream and datagram."""

import errno
import os
import socket as ksock
import stat

from shared.ipc.messages import (SYS_ACCEPT, SYS_BIND, SYS_CLOSE, SYS_CONNECT, SYS_GETPEERNAME, SYS_GETSOCKNAME,
                                 SYS_LISTEN, SYS_RECVFROM, SYS_RECVMSG, SYS_SENDMSG, SYS_SENDTO, SYS_SETSOCKOPT,
                                 SYS_GETSOCKOPT, SYS_IOCTL, SYS_SHUTDOWN, SYS_SOCKETPAIR, SIOCINQ)


def test_bind_makes_a_socket_inode_and_a_second_bind_is_eaddrinuse(app, tmp_path):
    path = str(tmp_path / "s")
    fd = app.socket(ksock.AF_UNIX, ksock.SOCK_STREAM)
    app.ok(SYS_BIND, fd, path, 0)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert app.ok(SYS_GETSOCKNAME, fd) == [path, 0]
    other = app.socket(ksock.AF_UNIX, ksock.SOCK_STREAM)
    assert app.call(SYS_BIND, other, path, 0).err == errno.EADDRINUSE


def test_listen_connect_accept_and_the_peer_names(app, tmp_path):
    path = str(tmp_path / "srv")
    srv = app.socket(ksock.AF_UNIX, ksock.SOCK_STREAM)
    cli = app.socket(ksock.AF_UNIX, ksock.SOCK_STREAM)
    assert app.call(SYS_LISTEN, srv, 1).err == errno.EINVAL          # unbound
    app.ok(SYS_BIND, srv, path, 0)
    app.ok(SYS_LISTEN, srv, 1)
    app.ok(SYS_CONNECT, cli, path, 0, None)
    assert app.call(SYS_CONNECT, app.socket(ksock.AF_UNIX, ksock.SOCK_STREAM), path, 0, None).err == errno.EAGAIN
    conn = app.ok(SYS_ACCEPT, srv, None)[0]
    assert app.ok(SYS_GETPEERNAME, cli)[0] == path
    assert app.call(SYS_CONNECT, app.socket(ksock.AF_UNIX, ksock.SOCK_STREAM), str(tmp_path / "none"), 0,
                    None).err == errno.ENOENT
    app.ok(SYS_SENDTO, cli, b"over", 0, None, 0, None)
    assert app.ok(SYS_RECVFROM, conn, 10, 0, None)[0] == b"over"


def test_socketpair_stream_send_recv_shutdown_close(app):
    (a, *_), (b, *_) = app.ok(SYS_SOCKETPAIR, ksock.AF_UNIX, ksock.SOCK_STREAM, 0)
    req = app.send(SYS_RECVFROM, b, 10, 0, None)
    assert app.reply(req) is None
    app.ok(SYS_SENDTO, a, b"hello", 0, None, 0, None)
    assert app.reply(req).result[0] == b"hello"
    app.ok(SYS_SHUTDOWN, a, ksock.SHUT_WR)
    assert app.ok(SYS_RECVFROM, b, 10, 0, None)[0] == b""               # EOF
    assert app.call(SYS_SENDTO, a, b"x", 0, None, 0, None).err == errno.EPIPE
    app.ok(SYS_CLOSE, a)
    assert app.call(SYS_GETPEERNAME, a).err == errno.EBADF


def test_datagrams_carry_the_senders_name_and_keep_boundaries(app, tmp_path):
    rx, tx = app.socket(ksock.AF_UNIX, ksock.SOCK_DGRAM), app.socket(ksock.AF_UNIX, ksock.SOCK_DGRAM)
    app.ok(SYS_BIND, rx, str(tmp_path / "rx"), 0)
    app.ok(SYS_BIND, tx, str(tmp_path / "tx"), 0)
    app.ok(SYS_SENDTO, tx, b"one", 0, str(tmp_path / "rx"), 0, None)
    app.ok(SYS_SENDTO, tx, b"two", 0, str(tmp_path / "rx"), 0, None)
    data, addr, _, n = app.ok(SYS_RECVFROM, rx, 2, 0, None)
    assert (data, addr, n) == (b"on", str(tmp_path / "tx"), 3)          # truncated, the rest of it gone
    assert app.ok(SYS_RECVFROM, rx, 10, 0, None)[0] == b"two"
    assert app.call(SYS_LISTEN, rx, 1).err == errno.EOPNOTSUPP
    assert app.call(SYS_SENDTO, tx, b"x", 0, None, 0, None).err == errno.ENOTCONN
    app.ok(SYS_CONNECT, tx, str(tmp_path / "rx"), 0, None)
    app.ok(SYS_SENDTO, tx, b"three", 0, None, 0, None)
    assert app.ok(SYS_RECVFROM, rx, 10, 0, None)[0] == b"three"


def test_a_socket_passed_with_scm_rights_arrives_as_a_new_descriptor(host, app):
    (a, *_), (b, *_) = app.ok(SYS_SOCKETPAIR, ksock.AF_UNIX, ksock.SOCK_DGRAM, 0)
    udp = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    app.ok(SYS_SENDMSG, a, b"fd", 0, None, 0, None, [udp])
    app.ok(SYS_CLOSE, udp)                              # the passing holds it
    data, _, _, _, passed = app.ok(SYS_RECVMSG, b, 10, 0, None)
    [(fd, sid, _, _, family, type_, _)] = passed
    assert data == b"fd" and (family, type_) == (ksock.AF_INET, ksock.SOCK_DGRAM)
    assert host.clients[app.cid].fds[fd].id == sid


def test_options_of_a_unix_socket(app):
    fd = app.socket(ksock.AF_UNIX, ksock.SOCK_STREAM)
    app.ok(SYS_SETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_SNDBUF, 8192)
    assert app.ok(SYS_GETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_SNDBUF) == 16384
    assert app.ok(SYS_GETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_DOMAIN) == ksock.AF_UNIX


def test_ioctl_counts_what_waits_to_be_read(app):
    (a, *_), (b, *_) = app.ok(SYS_SOCKETPAIR, ksock.AF_UNIX, ksock.SOCK_STREAM, 0)
    app.ok(SYS_SENDTO, a, b"12345", 0, None, 0, None)
    assert app.ok(SYS_IOCTL, b, SIOCINQ) == 5
    (c, *_), (d, *_) = app.ok(SYS_SOCKETPAIR, ksock.AF_UNIX, ksock.SOCK_DGRAM, 0)
    app.ok(SYS_SENDTO, c, b"123", 0, None, 0, None)
    app.ok(SYS_SENDTO, c, b"1234567", 0, None, 0, None)
    assert app.ok(SYS_IOCTL, d, SIOCINQ) == 3                           # the next datagram's size
