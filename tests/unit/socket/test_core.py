"""The calls every family shares, and the core's bookkeeping: descriptors, bad
calls, suspended calls and their timeouts, repeats, readiness, exits."""

import errno
import os
import socket as ksock
import time

import msgpack

from shared.ipc.codec import encode
from shared.ipc.messages import (SYS_CLOSE, SYS_DUP, SYS_GETSOCKNAME, SYS_GETSOCKOPT, SYS_IOCTL, SYS_NETSTAT,
                                 SYS_RECVFROM, SYS_SETSOCKOPT, SYS_SOCKET, SYS_WATCH)
from tests.unit.socket.conftest import Caller


def test_socket_refuses_what_mkstack_has_not(app):
    assert app.call(SYS_SOCKET, ksock.AF_PACKET, ksock.SOCK_RAW, 0).err == errno.EAFNOSUPPORT
    assert app.call(SYS_SOCKET, ksock.AF_INET, ksock.SOCK_SEQPACKET, 0).err == errno.ESOCKTNOSUPPORT
    assert app.call(SYS_SOCKET, ksock.AF_INET, ksock.SOCK_DGRAM, ksock.IPPROTO_TCP).err == errno.EPROTONOSUPPORT
    fds = [app.socket(ksock.AF_INET, ksock.SOCK_DGRAM) for _ in range(3)]
    assert fds == [3, 4, 5]                                   # the lowest free numbers, as the kernel gives


def test_descriptors_dup_and_close_like_a_processs_fds(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    new, sid, *_ = app.ok(SYS_DUP, fd)
    app.ok(SYS_CLOSE, fd)
    assert sid in host.socks                                   # the other descriptor holds it
    assert app.ok(SYS_GETSOCKOPT, new, ksock.SOL_SOCKET, ksock.SO_TYPE) == ksock.SOCK_DGRAM
    app.ok(SYS_CLOSE, new)
    assert sid not in host.socks
    assert app.call(SYS_CLOSE, new).err == errno.EBADF
    assert app.socket(ksock.AF_INET, ksock.SOCK_DGRAM) == fd   # reused from the lowest


def test_a_stranger_or_a_bad_call_gets_an_errno_and_the_core_goes_on(host, app):
    stranger = Caller(host, b"f" * 24)
    assert stranger.call(SYS_SOCKET, ksock.AF_INET, ksock.SOCK_DGRAM, 0).err == errno.EPERM
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    assert app.call(SYS_SETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_RCVBUF, "big").err == errno.EINVAL
    host.syscall(app.ident, msgpack.packb([SYS_GETSOCKNAME, 77, "not an fd"]))     # refused by the schema
    assert app.reply(77).err == errno.EINVAL
    assert app.call(SYS_IOCTL, fd, 0x1234).err == errno.ENOTTY
    assert app.call(SYS_GETSOCKOPT, fd, ksock.SOL_SOCKET, 9999).err == errno.ENOPROTOOPT
    assert app.ok(SYS_GETSOCKNAME, fd) == ["0.0.0.0", 0]


def test_a_suspended_call_times_out(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    req = app.send(SYS_RECVFROM, fd, 10, 0, 0.05)
    assert app.reply(req) is None and host.timer_at() <= time.monotonic() + 0.05
    host.on_timer(time.monotonic() + 0.1)
    assert app.reply(req).err == errno.ETIMEDOUT
    assert app.call(SYS_RECVFROM, fd, 10, 0, float("nan")).err == errno.EINVAL


def test_a_call_asked_again_is_answered_once(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    req = app.send(SYS_SETSOCKOPT, fd, ksock.SOL_SOCKET, ksock.SO_BROADCAST, 1)
    first = app.reply(req)
    host.syscall(app.ident, encode(SYS_SETSOCKOPT, req, fd, ksock.SOL_SOCKET, ksock.SO_BROADCAST, 1))
    assert app.reply(req).err == first.err == 0
    assert host.counters["calls_repeated"] == 1


def test_readiness_is_pushed_once_the_holder_watches(host, app):
    host.hello(app.cid + b".ev", os.getpid(), True)
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    sock = host.clients[app.cid].fds[fd]
    app.ok(SYS_WATCH, fd)
    sock.shut_rd = True
    host.notify(sock)
    [(efd, _, mask, sid)] = app.events()
    assert (efd, sid) == (fd, sock.id) and mask & 0x1        # POLLIN: a read returns at once


def test_netstat_lists_the_sockets(app):
    app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    app.socket(ksock.AF_INET, ksock.SOCK_STREAM)
    rows = app.ok(SYS_NETSTAT)
    assert sorted(r["proto"] for r in rows) == ["tcp", "udp"]


def test_a_client_that_exits_has_its_sockets_closed(host, app):
    fd = app.socket(ksock.AF_INET, ksock.SOCK_DGRAM)
    sid = host.clients[app.cid].fds[fd].id
    host.client_gone(host.clients[app.cid])
    assert sid not in host.socks and app.cid not in host.clients
    assert host.users.summary()["sockets"] == {}
