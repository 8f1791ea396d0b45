"""SOCK_STREAM sockets in the socket server: listen/accept/connect, bulk data, close.

The connection itself lives in the tcp service; here is what the socket layer
owns: the receive buffer the application reads from (its free space is the
window tcp advertises, credited back with TCP_RCVD as the application reads),
the send-buffer accounting (data handed to tcp counts against SO_SNDBUF until
the peer acknowledges it), the accept queue, and the calls waiting on them.
"""

from __future__ import annotations

import errno
import os
import socket as ksock
import time

from services.socket.types import (INET_FAMILIES, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_OOB, MSG_PEEK, MSG_TRUNC,
                                   MSG_WAITALL, Client, Pending, Sock, bind_aton, check_port, err, host_text,
                                   inet_bind_flags, sock_aton, sock_ntoa)
from shared.ipc.codec import encode
from shared.ipc.messages import (CLOSE_ABORT, CLOSE_FORGET, CLOSE_SHUT_WR, SYS_ACCEPT,
                                 SYS_BIND, SYS_CLOSE, SYS_CONNECT, SYS_GETPEERNAME, SYS_LISTEN, SYS_RECVFROM,
                                 SYS_SENDTO, SYS_SHUTDOWN, TCP_ACCEPTED, TCP_BIND, TCP_CLOSE, TCP_CONNECT,
                                 TCP_LISTEN, TCP_RCVD, TCP_SEND, TCP_SEND_URG, TCP_SETOPT, WAITALL_MAX)
from shared.proto import sockopt


TCP_SEND_MAX = 256 * 1024         # stream bytes per message to tcp
LINGERING_MAX = 4096              # closed sockets whose unacknowledged data is kept for tcp
RCVD_DEFER = 0.04                 # seconds a small read's window credit may wait (a delayed ACK's time)
RCVD_BATCH = 64 * 1024            # a credit this large goes at once
POST_FLAGS = MSG_DONTWAIT | MSG_NOSIGNAL   # the flags a posted send may carry (the client library's choice)
POSTS_KEPT = 1024                 # threads per client whose last post is remembered (SYS_SEND_POST)
URG_NONE, URG_NOTYET, URG_VALID, URG_READ = 0, 1, 2, 3   # Sock.urg, as tcp_sock.urg_data
STREAM_CALLS = frozenset((SYS_BIND, SYS_CONNECT, SYS_SENDTO, SYS_RECVFROM, SYS_SHUTDOWN, SYS_CLOSE, SYS_LISTEN,
                          SYS_ACCEPT, SYS_GETPEERNAME))


class StreamSockets:
    """Mixed into SocketCore; uses its answer/fail/notify/park machinery."""

    # -- calls ---------------------------------------------------------------------
    def stream_call(self, sock: Sock, call: Pending) -> None:
        code, f = call.code, call.fields
        if code == SYS_BIND:
            self.stream_bind(sock, call, f.addr, f.port)
        elif code == SYS_LISTEN:
            self.stream_listen(sock, call, f.backlog)
        elif code == SYS_ACCEPT:
            self.stream_accept(sock, call)
        elif code == SYS_CONNECT:
            self.stream_connect(sock, call, f.addr, f.port, f.timeout)
        elif code == SYS_SENDTO:
            self.stream_send(sock, call)
        elif code == SYS_RECVFROM:
            self.stream_recv(sock, call)
        elif code == SYS_SHUTDOWN:
            self.stream_shutdown(sock, f.how)
            self.answer(call, 0, sock)
        elif code == SYS_GETPEERNAME:
            if sock.st not in ("connected", "closed") or not sock.raddr:
                raise err(errno.ENOTCONN)
            self.answer(call, self.peer_name(sock), sock)
        elif code == SYS_CLOSE:
            self.close_sock(sock)
            self.answer(call, 0)

    def tcp_request(self, sock: Sock, call: Pending | None, what: str, msg_code: int, *args: object) -> None:
        req = self.new_req()
        msg = encode(msg_code, req, sock.id, *args)
        self.tcp_reqs[req] = (sock, call, what, msg)     # kept until answered: tcp may restart first
        self.state.table_dirty = True
        self.tcp_msg(msg)

    def resume_stream(self, sock: Sock, call: Pending) -> bool:
        """A bind, listen or connect asked again after our restart, which found it
        pending: it waits for what it waited for before (or has its answer now)."""
        what = {SYS_BIND: "bind", SYS_LISTEN: "listen", SYS_CONNECT: "connect"}.get(call.code)
        if what is None:
            return False
        for req, (s, c, w, msg) in self.tcp_reqs.items():
            if s is sock and w == what and c is None and what != "connect":
                self.tcp_reqs[req] = (s, call, w, msg)
                return True
        if what == "connect" and sock.st == "connecting":
            sock.connect_call = call
            if call.fields.timeout is not None:
                self.arm(call, call.fields.timeout)
            return True
        if what == "connect" and sock.err:
            self.fail_with_error(sock, call)
            return True
        done = {"bind": sock.bound, "listen": sock.st == "listening", "connect": sock.st == "connected"}[what]
        if done:
            self.answer(call, 0, sock)
        return done

    def stream_bind(self, sock: Sock, call: Pending, addr: str, port: int) -> None:
        if sock.bound or sock.binding or sock.st != "new":
            raise err(errno.EINVAL)
        a = bind_aton(sock, addr)
        if a and a not in self.local:
            raise err(errno.EADDRNOTAVAIL)
        sock.binding = True
        self.tcp_request(sock, call, "bind", TCP_BIND, a, check_port(port), inet_bind_flags(sock))

    def stream_listen(self, sock: Sock, call: Pending, backlog: int) -> None:
        if sock.st not in ("new", "listening"):
            raise err(errno.EINVAL)
        sock.backlog = max(1, min(backlog, 4096)) if backlog > 0 else 1
        self.tcp_request(sock, call, "listen", TCP_LISTEN, sock.backlog, sock.rcvbuf)

    def stream_accept(self, sock: Sock, call: Pending) -> None:
        if sock.st != "listening":
            raise err(errno.EINVAL)
        if not self.try_accept(sock, call):
            timeout = call.fields.timeout
            if timeout is not None and timeout <= 0:
                raise err(errno.EAGAIN)
            self.park(sock, sock.readers, call, timeout)

    def try_accept(self, sock: Sock, call: Pending) -> bool:
        if not sock.acceptq:
            return False
        new = sock.acceptq.popleft()
        client = self.clients.get(call.ident.split(b".", 1)[0], sock.client)   # whoever called accept
        new.client = client
        try:
            new.fd = self.new_fd(client)
        except OSError as exc:
            sock.acceptq.appendleft(new)
            self.fail(call, exc.errno, exc.strerror, sock)
            return True
        client.fds[new.fd] = new
        self.state.touch(new)
        if sock.family in INET_FAMILIES:
            self.tcp_msg(encode(TCP_ACCEPTED, sock.id))
        self.answer(call, [new.fd, *self.peer_name(new), new.id, *new.readiness()], sock)
        self.notify(sock)
        return True

    def stream_connect(self, sock: Sock, call: Pending, addr: str, port: int, timeout: float | None) -> None:
        if sock.st == "connected":
            raise err(errno.EISCONN)
        if sock.st == "connecting":
            raise err(errno.EALREADY)
        if sock.st != "new":
            raise err(errno.EINVAL)
        raddr, rport = sock_aton(sock, addr), check_port(port)
        self.check_dest_family(sock, raddr)
        self.route_src(raddr)
        sock.raddr, sock.rport = raddr, rport
        sock.st = "connecting"
        self.tcp_request(sock, None, "connect", TCP_CONNECT, raddr, rport, sock.rcvbuf, sock.nodelay,
                         sock.keepalive, sockopt.for_tcp(sock.tcpopts))
        if timeout is not None and timeout <= 0:
            raise err(errno.EINPROGRESS)
        sock.connect_call = call
        if timeout is not None:
            self.arm(call, timeout)

    def stream_send(self, sock: Sock, call: Pending) -> None:
        data, flags, timeout = call.fields.data, call.fields.flags, call.fields.timeout
        if sock.err:
            raise self.take_error(sock)
        if sock.shut_wr or sock.st in ("closed", "new", "listening"):
            raise err(errno.EPIPE)          # Linux: sending on an unconnected stream is EPIPE
        if sock.st != "connected":
            raise err(errno.ENOTCONN)
        if not data:
            self.answer(call, 0, sock)
            return
        if not self.try_send(sock, call):
            if timeout is not None and timeout <= 0 or flags & MSG_DONTWAIT:
                raise err(errno.EAGAIN)
            self.park(sock, sock.writers, call, timeout)

    def stream_post(self, client: Client, ident: bytes, f: tuple) -> None:
        """SYS_SEND_POST: a send nobody waits for. Applied only in order (after the caller's
        previous post, ``f.prev``) and only whole, on a connected TCP socket with room for it;
        anything else is dropped and counted, and the caller's next (fenced) call has it sent
        again as a call, which waits, and raises what a send raises, as any send does."""
        applied = client.posts.get(ident, 0)
        sock = client.fds.get(f.fd)
        data = f.data
        if f.req <= applied or f.prev not in (0, applied):
            self.counters["posts_out_of_order"] += 1     # one before it is missing
            return
        if (sock is None or not sock.stream or sock.family not in INET_FAMILIES or sock.st != "connected"
                or sock.err or sock.shut_wr or f.flags & ~POST_FLAGS or not 0 < len(data) <= TCP_SEND_MAX
                or sock.sndbuf - sock.snd_pending < len(data) or self.users.left("mem", sock.uid) < len(data)
                or not applied and len(client.posts) >= POSTS_KEPT):
            # (a thread's record is never forgotten while it may be fenced on: past POSTS_KEPT
            # threads with one, a new thread's posts are refused and go again as calls)
            self.counters["posts_refused"] += 1
            return
        self.counters["posts"] += 1
        self.try_send(sock, Pending(ident, f.req, SYS_SENDTO, f, None, nowait=True))
        client.posts[ident] = f.req
        self.state.touch_post(client, ident)

    def posts_confirmed(self, client: Client, ident: bytes) -> None:
        """An unfenced call: its thread has no post unconfirmed, so its record is no longer
        needed (a fenced call keeps it: that call may be asked again after our restart)."""
        if client.posts.pop(ident, None) is not None:
            self.state.touch_post(client, ident)

    def try_send(self, sock: Sock, call: Pending) -> bool:
        if sock.family == ksock.AF_UNIX:
            return self.unix_try_send(sock, call)
        room = sock.sndbuf - sock.snd_pending
        if room <= 0:
            return False
        left = self.users.left("mem", sock.uid)
        if left <= 0:
            # the user's programs hold mem_per_user already: wait as under tcp_mem pressure
            # (sk_stream_wait_memory) until some of it is acknowledged or read
            self.counters["user_mem_full"] += 1
            self.mem_waiters.setdefault(sock.uid, set()).add(sock)
            return False
        data, flags = call.fields.data, call.fields.flags
        n = min(len(data), room, TCP_SEND_MAX, left)
        # MSG_OOB: the last byte this call queues is urgent (tcp_push -> tcp_mark_urg)
        code = TCP_SEND_URG if flags & MSG_OOB else TCP_SEND
        chunk = data[:n] if n < len(data) else data
        self.state.tx_write(sock, sock.snd_sent, chunk)
        self.tcp_msg(encode(code, sock.conn, sock.snd_sent, chunk))
        sock.snd_sent += n
        sock.sndkeep += chunk
        sock.snd_pending = len(sock.sndkeep)
        # saved with this turn whoever asked: a post has no reply to mark the socket, and a
        # restart that took up an older snd_sent would number later bytes over these
        self.state.touch(sock)
        self.charge_sent(sock, n)
        self.answer(call, n, sock)
        return True

    def charge_sent(self, sock: Sock, n: int) -> None:
        """``n`` more bytes of ``sock``'s are kept until acknowledged: its user's memory."""
        sock.sent_charged += n
        self.users.take("mem", sock.uid, n)

    def uncharge_sent(self, sock: Sock, n: int) -> None:
        n = min(n, sock.sent_charged)
        if n > 0:
            sock.sent_charged -= n
            self.users.give("mem", sock.uid, n)
            self.mem_freed(sock.uid)

    def mem_freed(self, uid: int) -> None:
        """Some of ``uid``'s memory came back: its sends waiting for it try again."""
        waiting = self.mem_waiters.get(uid)
        if waiting and self.users.left("mem", uid) > 0:
            del self.mem_waiters[uid]
            for sock in waiting:
                if sock.id in self.socks:
                    self.wake_stream(sock)

    def stream_recv(self, sock: Sock, call: Pending) -> None:
        bufsize, flags, timeout = call.fields.bufsize, call.fields.flags, call.fields.timeout
        if bufsize < 0:
            raise err(errno.EINVAL)
        if sock.st in ("new", "listening", "connecting") and not sock.err:
            raise err(errno.ENOTCONN)
        if flags & MSG_OOB:
            self.answer(call, [self.recv_urgent(sock, bufsize, flags), None, 0, 1, *([[]] if call.want_fds else [])],
                        sock)
            return
        if timeout is None and flags & MSG_WAITALL and not flags & (MSG_PEEK | MSG_DONTWAIT):
            call.got = bytearray()   # only a blocking socket waits for all (CPython polls otherwise)
            # gathered here until all has come: at most WAITALL_MAX (the client library asks for more in turns)
            call.fields = call.fields._replace(bufsize=min(bufsize, WAITALL_MAX))
        if sock.readers_waiting() or not self.try_stream_recv(sock, call):
            if timeout is not None and timeout <= 0 or flags & MSG_DONTWAIT:
                raise err(errno.EAGAIN)
            self.park(sock, sock.readers, call, timeout)

    def recv_urgent(self, sock: Sock, bufsize: int, flags: int) -> bytes:
        """recv(MSG_OOB), as tcp_recv_urg: the urgent byte once, never blocking."""
        if sock.oobinline or sock.urg in (URG_NONE, URG_READ):
            raise err(errno.EINVAL)
        if sock.urg == URG_VALID:
            if not flags & MSG_PEEK:
                sock.urg = URG_READ
            return bytes([sock.oob]) if bufsize > 0 else b""
        if sock.st == "closed" or sock.eof:
            return b""
        raise err(errno.EAGAIN)

    def try_stream_recv(self, sock: Sock, call: Pending) -> bool:
        """Read what is there (tcp_recvmsg): never across the urgent mark, the
        urgent byte skipped unless SO_OOBINLINE; MSG_WAITALL gathers in ``call.got``.
        A read that may wait waits for SO_RCVLOWAT bytes (CPython's timeout then
        ends it with TimeoutError: its poll never saw the socket readable)."""
        bufsize, flags = call.fields.bufsize, call.fields.flags
        got = call.got
        ended = sock.eof or sock.shut_rd or sock.st == "closed" or bool(sock.err)
        timeout = call.fields.timeout
        # with a timeout CPython polls first, and poll says readable at SO_RCVLOWAT bytes whatever
        # the read's size; a blocking read waits for min(SO_RCVLOWAT, size), as tcp_recvmsg
        need = sock.rcvlowat if timeout is not None else min(sock.rcvlowat, bufsize)
        if (need > 1 and got is None and not ended and 0 < len(sock.rbuf) < need and not sock.urg
                and timeout != 0 and not flags & MSG_DONTWAIT):
            return False
        want = bufsize - (len(got) if got is not None else 0)
        data, at_mark = b"", False
        if sock.rbuf and want > 0:
            start, n = 0, min(want, len(sock.rbuf))
            if sock.urg:
                rel = sock.urg_off - sock.consumed
                if rel == 0 and not sock.oobinline:
                    start, n = 1, min(want, len(sock.rbuf) - 1)
                elif 0 < rel <= n:
                    n, at_mark = rel, True
            data = sock.rbuf[start:start + n]
            if got is None:                      # where the reply's bytes lie, to send it again
                call.rx = [sock.id, sock.consumed + start, n, bool(flags & MSG_TRUNC), call.want_fds]
            if not flags & MSG_PEEK:
                self.consume(sock, start + n)
        elif sock.rbuf and bufsize == 0:
            self.answer(call, self.stream_reply(sock, call, b""), sock)
            return True
        if got is not None:
            got += data
            if len(got) < bufsize and not at_mark and not ended:
                return False
            data = bytes(got)
        if data:
            if flags & MSG_TRUNC:
                data = bytes(len(data))       # TCP with MSG_TRUNC: the data is discarded
            self.answer(call, self.stream_reply(sock, call, data), sock)
            self.notify(sock)
            return True
        if sock.err:
            self.fail_with_error(sock, call)
            return True
        if ended:
            self.answer(call, self.stream_reply(sock, call, b""), sock)
            return True
        return False

    def stream_reply(self, sock: Sock, call: Pending, data: bytes) -> list:
        """[data, None, 0, len] and, for recvmsg, the sockets passed with the bytes read
        (they are closed when the reader takes no descriptors, as Linux does)."""
        passed = []
        if sock.scm:
            consumed = sock.consumed
            while sock.scm and sock.scm[0][0] < consumed:
                passed += sock.scm.pop(0)[1]
        reply = [data, None, 0, len(data)]
        fds = self.deliver_passed(sock.client if call.want_fds else None, passed or None)
        return reply + [fds] if call.want_fds else reply

    def consume(self, sock: Sock, n: int) -> None:
        """The application took ``n`` bytes: credit tcp's window; past the mark,
        the urgent state ends."""
        del sock.rbuf[:n]
        if sock.family == ksock.AF_UNIX:
            self.unix_consumed(sock)
        elif sock.st == "connected" or sock.eof:
            self.credit(sock)
        if sock.urg and sock.urg_off < sock.consumed:
            sock.urg = URG_NONE

    def credit(self, sock: Sock) -> None:
        """Give tcp back the window the application's reads freed. A small credit while
        tcp still sees most of the buffer free waits up to RCVD_DEFER, gathered with
        later ones: a 1-byte read costs no message to tcp (Linux, too, announces a
        window only once it grew by much: tcp_cleanup_rbuf). One that may open a
        shrinking window goes at once."""
        owed = sock.consumed - sock.credited
        if owed <= 0:
            return
        if owed >= RCVD_BATCH or 2 * (sock.rcv_total - sock.credited) >= sock.rcvbuf:
            self.credit_now(sock)
            return
        self.credits_owed[sock.id] = sock
        if self.credit_due is None:
            self.credit_due = time.monotonic() + RCVD_DEFER

    def credit_now(self, sock: Sock) -> None:
        self.credits_owed.pop(sock.id, None)
        sock.credited = sock.consumed
        self.tcp_msg(encode(TCP_RCVD, sock.conn, sock.consumed))

    def credits_due(self) -> None:
        self.credit_due = None
        for sock in list(self.credits_owed.values()):
            if self.socks.get(sock.id) is sock and (sock.st == "connected" or sock.eof):
                self.credit_now(sock)
        self.credits_owed.clear()

    def on_urgent(self, sock: Sock, off: int) -> None:
        """The peer announced an urgent byte at stream offset ``off`` (tcp_check_urg)."""
        consumed = sock.consumed
        if off < consumed or (sock.urg and off <= sock.urg_off):
            return
        # a previous urgent byte next in line, never read inline, is dropped; one
        # further on stays in the stream as ordinary data
        if sock.urg and sock.urg_off == consumed and not sock.oobinline and sock.rbuf:
            self.consume(sock, 1)
        sock.urg, sock.urg_off = URG_NOTYET, off
        self.urgent_arrived(sock)

    @staticmethod
    def urgent_arrived(sock: Sock) -> None:
        if sock.urg == URG_NOTYET and sock.urg_off < sock.rcv_total:
            sock.oob = sock.rbuf[sock.urg_off - sock.consumed]
            sock.urg = URG_VALID

    def at_mark(self, sock: Sock) -> bool:
        """SIOCATMARK: the next byte to read is the urgent one."""
        return bool(sock.urg) and sock.urg_off == sock.consumed

    def stream_shutdown(self, sock: Sock, how: int) -> None:
        if how not in (ksock.SHUT_RD, ksock.SHUT_WR, ksock.SHUT_RDWR):
            raise err(errno.EINVAL)
        if sock.st not in ("connected", "connecting"):
            if sock.st == "listening" and how != ksock.SHUT_WR:
                self.stop_listening(sock)
                return
            raise err(errno.ENOTCONN)
        if how in (ksock.SHUT_RD, ksock.SHUT_RDWR):
            sock.shut_rd = True
        if how in (ksock.SHUT_WR, ksock.SHUT_RDWR) and not sock.shut_wr:
            sock.shut_wr = True
            self.tcp_msg(encode(TCP_CLOSE, sock.conn, CLOSE_SHUT_WR, sock.snd_sent))
        self.wake_stream(sock)

    def stop_listening(self, sock: Sock) -> None:
        sock.st = "closed"
        while sock.acceptq:
            pending = sock.acceptq.popleft()
            self.tcp_msg(encode(TCP_CLOSE, pending.conn, CLOSE_ABORT, 0))
            self.forget_conn(pending.conn)
        self.tcp_msg(encode(TCP_CLOSE, sock.id, CLOSE_FORGET, 0))
        self.wake_stream(sock)

    def close_stream(self, sock: Sock) -> None:
        """close(2) on a stream socket: FIN after queued data, or RST when unread
        data would be lost or SO_LINGER is 0 (as tcp_close does)."""
        self.forget_conn(sock.conn)
        if sock.st == "listening":
            self.stop_listening(sock)
        elif sock.st in ("connected", "connecting"):
            abort = bool(sock.rbuf) or sock.linger == 0 or sock.st == "connecting"
            if sock.sndkeep and not abort and len(self.lingering) < LINGERING_MAX:
                self.lingering[sock.conn] = sock     # its unacknowledged data, until tcp is done with it
            self.tcp_msg(encode(TCP_CLOSE, sock.conn, CLOSE_ABORT if abort else CLOSE_FORGET, sock.snd_sent))
        else:
            self.tcp_msg(encode(TCP_CLOSE, sock.conn, CLOSE_FORGET, sock.snd_sent))
        if self.lingering.get(sock.conn) is not sock:
            self.uncharge_sent(sock, sock.sent_charged)   # kept (and charged to its user) only while lingering
        for call in list(sock.writers) + ([sock.connect_call] if sock.connect_call else []):
            self.fail(call, errno.EBADF, "Bad file descriptor")
        sock.writers.clear()
        sock.connect_call = None
        sock.st = "closed"

    def set_stream_opt(self, sock: Sock, name: str, value: int) -> None:
        if name == "nodelay":
            sock.nodelay = bool(value)
        else:
            sock.keepalive = bool(value)
        if sock.st in ("connecting", "connected"):
            self.tcp_msg(encode(TCP_SETOPT, sock.conn, name, int(bool(value))))

    def wake_stream(self, sock: Sock) -> None:
        """Retry parked readers/accepters and writers, then push readiness."""
        self.state.touch(sock)
        while sock.readers:
            call = sock.readers[0]
            if call.done:
                sock.readers.popleft()
                continue
            ok = self.try_accept(sock, call) if call.code == SYS_ACCEPT else self.try_stream_recv(sock, call)
            if not ok:
                if sock.st == "closed" and call.code == SYS_ACCEPT:
                    self.fail(call, errno.EINVAL, "Invalid argument", sock)
                    sock.readers.popleft()
                    continue
                break
            sock.readers.popleft()
        while sock.writers:
            call = sock.writers[0]
            if call.done:
                sock.writers.popleft()
                continue
            if sock.err or sock.st == "closed" or sock.shut_wr:
                err = sock.err or errno.EPIPE
                self.fail(call, err, os.strerror(err), sock)
                sock.writers.popleft()
                continue
            if not self.try_send(sock, call):
                break
            sock.writers.popleft()
        if sock.fd >= 0:
            self.notify(sock)

    def peer_name(self, s: Sock) -> list:
        """[address, port] of the other end, as getpeername and accept give it."""
        if s.family == ksock.AF_UNIX:
            return [(s.peer.uname if s.peer else None) or "", 0]
        return [sock_ntoa(s, s.raddr, self.scope6), s.rport]

    def stream_row(self, s: Sock) -> dict:
        state = {"new": "CLOSE", "listening": "LISTEN", "connecting": "SYN-SENT", "connected": "ESTAB",
                 "closed": "CLOSE"}[s.st]
        if s.st == "connected" and s.eof:
            state = "CLOSE-WAIT"
        return {"proto": "tcp", "local": f"{host_text(s, s.laddr)}:{s.lport}" if s.bound else "*:*",
                "remote": f"{host_text(s, s.raddr)}:{s.rport}" if s.raddr else "*:*", "state": state,
                "recv_q": len(s.rbuf) if s.st != "listening" else len(s.acceptq),
                "send_q": s.snd_pending if s.st != "listening" else s.backlog,
                "pid": s.client.pid, "fd": s.fd}
