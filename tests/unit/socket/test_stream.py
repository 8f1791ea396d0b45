"""TCP sockets in the socket core: each call, with tcp played by the test."""

import errno
import socket as ksock

import msgpack

from services.socket.records import SocketState
from shared.ipc.codec import encode
from shared.ipc.messages import (CLOSE_ABORT, CLOSE_FORGET, CLOSE_SHUT_WR, SIOCINQ, SIOCOUTQ, SYS_ACCEPT, SYS_BIND,
                                 SYS_CLOSE, SYS_CONNECT, SYS_GETPEERNAME, SYS_GETSOCKNAME, SYS_GETSOCKOPT,
                                 SYS_IOCTL, SYS_LISTEN, SYS_POSTS_PENDING, SYS_RECVFROM, SYS_REPLAY, SYS_SEND_POST,
                                 SYS_SENDTO, SYS_SETSOCKOPT, SYS_SHUTDOWN, RMEM_MAX, TCP_ACCEPTED, TCP_BIND, TCP_CLOSE,
                                 TCP_CONNECT, TCP_LISTEN, TCP_RCVD, TCP_SEND, TCP_SETOPT)

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


def _post(host, app, fd, data, prev):
    """A SYS_SEND_POST as the client library frames it; its request id."""
    req = next(app.reqs)
    host.syscall(app.ident, encode(SYS_SEND_POST, req, fd, data, 0, prev))
    return req


def _fenced(host, app, last, code, *fields):
    """A call fenced by the caller's last post ``last``: its reply."""
    req = next(app.reqs)
    host.syscall(app.ident, encode(code, req, *fields), msgpack.packb(last))
    return app.reply(req)


def test_posted_sends_apply_in_order_and_a_fenced_call_waits_for_the_missing(host, app):
    """SYS_SEND_POST: a small send nobody waits for. It is applied whole and only after the
    caller's previous post; one that is not (no room, or one before it went missing) is
    dropped, and the caller's next call, fenced with its last post, is answered SYS_REPLAY
    with the last post applied: never done before the data it follows."""
    fd, sock = connected(host, app)
    a = _post(host, app, fd, b"ab", 0)
    b = _post(host, app, fd, b"cd", a)
    assert [f.data for c, f in host.sent("tcp") if c == TCP_SEND] == [b"ab", b"cd"]
    assert host.frames == [] and host.clients[app.cid].posts[app.ident] == b    # no replies
    assert _fenced(host, app, b, SYS_IOCTL, fd, SIOCOUTQ).result == 4          # the fence holds
    # no room for the next: dropped whole; the one after it is out of order, dropped too
    sock.sndbuf = 5
    c = _post(host, app, fd, b"efgh", 0)
    d = _post(host, app, fd, b"i", c)
    assert host.sent("tcp") == [] and host.counters["posts_refused"] == 1
    assert host.counters["posts_out_of_order"] == 1
    r = _fenced(host, app, d, SYS_CLOSE, fd)
    assert (r.err, r.result) == (SYS_REPLAY, b) and fd in host.clients[app.cid].fds   # not closed
    # a post with no socket, or on one not connected, is dropped as well: nobody to answer
    assert _post(host, app, fd + 50, b"x", 0) and host.frames == []
    assert host.counters["posts_refused"] == 2
    # a fence that is no request id is refused with EINVAL, counted
    req = next(app.reqs)
    host.syscall(app.ident, encode(SYS_IOCTL, req, fd, SIOCOUTQ), b"\xc1")
    assert app.reply(req).err == errno.EINVAL


def test_the_turn_that_applies_a_post_saves_its_socket(host, app):
    """A post has no reply, and a reply was what marked a socket for saving: the turn saved
    the post as applied but the socket's older snd_sent. A restart then numbered the next
    bytes over the posted ones, which tcp held already and dropped (tens of KB lost across
    kills). The saved socket has every byte a post applied."""
    fd, sock = connected(host, app)
    host.state.commit(host)
    a = _post(host, app, fd, b"posted", 0)
    assert host.clients[app.cid].posts[app.ident] == a
    host.state.commit(host)
    _, _, socks, _ = SocketState(host.instance, *host.cfg.stream_bufs_max(2 * RMEM_MAX)).load()
    (rec,) = [s for s in socks if s.fields["id"] == sock.id]
    assert rec.fields["snd_sent"] == sock.snd_sent == 6


def test_a_threads_post_record_lasts_while_a_fence_may_need_it(host, app, monkeypatch):
    """A thread's last post applied is what its fenced call is checked against, also when the
    call is asked again after a restart: a fenced call keeps it, an unfenced one (the thread
    has nothing unconfirmed) lets it go. It is never evicted: a thread past POSTS_KEPT gets its
    posts refused (they go again as calls) rather than have another thread's record dropped,
    which would make that thread's fence replay posts that were applied."""
    import services.socket.stream as stream
    fd, _ = connected(host, app)
    posts = host.clients[app.cid].posts
    a = _post(host, app, fd, b"ab", 0)
    assert _fenced(host, app, a, SYS_IOCTL, fd, SIOCOUTQ).err == 0 and posts == {app.ident: a}
    assert app.ok(SYS_IOCTL, fd, SIOCOUTQ) == 2 and posts == {}            # unfenced: gone
    monkeypatch.setattr(stream, "POSTS_KEPT", 1)
    b = _post(host, app, fd, b"cd", 0)
    other = app.cid + b".t2"
    host.syscall(other, encode(SYS_SEND_POST, 900, fd, b"zz", 0, 0))
    assert posts == {app.ident: b} and host.counters["posts_refused"] == 1
    c = _post(host, app, fd, b"ef", b)                                     # a known thread goes on
    assert posts == {app.ident: c}
    assert [f.data for code, f in host.sent("tcp") if code == TCP_SEND] == [b"ab", b"cd", b"ef"]


def test_a_call_fenced_by_another_threads_posts_waits_until_they_are_applied(host, app):
    """A thread's posts travel on its DEALER and another thread's call on the same socket
    may overtake them: that call names them in its fence, and is answered SYS_POSTS_PENDING
    (and not done) until they are applied. Only the caller's own threads may be named."""
    fd, _ = connected(host, app)
    other = app.cid + b".t2"
    host.syscall(other, encode(SYS_SEND_POST, 900, fd, b"ab", 0, 0))
    r = _fenced(host, app, [0, [[other, 901]]], SYS_CLOSE, fd)
    assert r.err == SYS_POSTS_PENDING and fd in host.clients[app.cid].fds        # not closed
    assert host.counters["calls_waiting_for_posts"] == 1
    host.syscall(other, encode(SYS_SEND_POST, 901, fd, b"cd", 0, 900))
    assert _fenced(host, app, [0, [[other, 901]]], SYS_IOCTL, fd, SIOCOUTQ).result == 4
    r = _fenced(host, app, [0, [[b"someone-else.t1", 1]]], SYS_IOCTL, fd, SIOCOUTQ)
    assert r.err == errno.EINVAL and host.counters["bad_calls"] == 1
