"""TCP sockets in the socket server: what tcp tells of a connection.

tcp sends one TCP_EVENTS message per turn with an item per connection event
(established, data arrived, acknowledged, urgent data, closed, reset...), and
answers requests (bind, listen, connect, TCP_INFO) with their results. Here
they move the socket's state, fill its receive buffer, free its send buffer
and wake the calls waiting on it. After a tcp restart, tcp re-announces each
connection and the bytes it still has; whatever it lost is sent again from
sndkeep.
"""

from __future__ import annotations

import errno
import os

from services.socket.stream import TCP_SEND_MAX
from services.socket.types import Sock
from shared.ipc.codec import TCP_EVENT, decode_tcp_event, encode
from shared.ipc.messages import (CLOSE_ABORT, CLOSE_FORGET, CLOSE_SHUT_WR, TCP_CLOSE, TCP_RCVD, TCP_SEND,
                                 TCP_SETOPT)
from shared.proto import sockopt
from shared.proto.tcp.info import STATE_CLOSE, idle_info, snd_mss

GONE_CONNS_KEPT = 65536           # closed connections remembered for a restarted tcp


class TcpEvents:
    """Mixed into SocketCore, beside StreamSockets."""

    def on_tcp_info(self, req: int, sock_id: int, info: bytes) -> None:
        """tcp's TCP_INFO for a getsockopt of TCP_INFO or of a connection's TCP_MAXSEG."""
        sock, call, what, _ = self.tcp_reqs.pop(req, (None, None, "", b""))
        if sock is None or call is None or self.socks.get(sock_id) is not sock or not isinstance(info, bytes):
            return
        self.state.table_dirty = True
        if not info:                         # tcp no longer has the connection: closed meanwhile
            info = idle_info(STATE_CLOSE)
        if what == "maxseg":
            self.answer(call, snd_mss(info), sock)
        else:
            self.answer(call, info, sock)

    def on_tcp_result(self, req: int, sock_id: int, err: int, addr: int, port: int) -> None:
        sock, call, what, _ = self.tcp_reqs.pop(req, (None, None, "", b""))
        if sock is None or self.socks.get(sock_id) is not sock:
            return
        self.state.table_dirty = True
        self.state.touch(sock)
        if what == "bind":
            sock.binding = False
            if not err:
                sock.bound, sock.laddr, sock.lport = True, addr, port
        elif what == "listen" and not err:
            sock.st = "listening"
            sock.bound, sock.laddr, sock.lport = True, addr, port
            self.notify(sock)
        elif what == "connect":
            if err:
                self.connect_failed(sock, err)
                return
            sock.laddr, sock.lport, sock.bound = addr, port, True
            self.conns[sock.conn] = sock
        if call is not None:
            if err:
                self.fail(call, err, os.strerror(err), sock)
            else:
                self.answer(call, 0, sock)

    def connect_failed(self, sock: Sock, err: int) -> None:
        if err == errno.ECONNRESET:            # not a peer's answer to a SYN (ECONNREFUSED): worth a line
            self.log.warning("connect of socket %d (conn %d) reset", sock.id, sock.conn)
        sock.st = "closed" if sock.st != "new" else sock.st
        sock.err = err
        call, sock.connect_call = sock.connect_call, None
        if call is not None:
            sock.err = 0
            self.fail(call, err, os.strerror(err), sock)
        self.wake_stream(sock)

    def forget_conn(self, conn: int) -> None:
        """The socket of ``conn`` is gone; remember it a while, so that tcp, restarted,
        announcing it again, gets it closed rather than a new socket."""
        if self.conns.pop(conn, None) is not None:
            self.gone_conns[conn] = None
            self.state.gone_conn(conn)
            while len(self.gone_conns) > GONE_CONNS_KEPT:
                self.gone_conns.popitem(last=False)

    def on_tcp_events(self, items: list) -> None:
        for item in items:
            ev = decode_tcp_event(item)
            if ev is None:
                self.counters["bad_messages"] += 1
                self.log.warning("bad tcp event %r", item[:3] if isinstance(item, list) else item)
                continue
            if self.tcp_wait is not None:
                # events tcp sent our predecessor that it never read died with it; those queued after
                # them reach us past that gap (an eof past its data, a 'synced' of an older resync
                # past a connection it did not name): only tcp's answer to our TCP_RESYNC starts us
                if ev.kind != "restart" or ev.token != self.tcp_wait:
                    self.counters["tcp_events_before_resync"] += 1
                    continue
                self.tcp_wait = None
            try:
                self.on_tcp_event(ev)
            except (TypeError, ValueError, IndexError) as exc:    # a value no event can have: the rest go on
                self.counters["bad_messages"] += 1
                self.log.warning("bad tcp event %r: %s", item[:3], exc)

    def on_tcp_event(self, ev: tuple) -> None:
        """One of tcp's events (shared/ipc/messages.py TCP_EVENT_FIELDS names its fields)."""
        conn, kind = ev.conn, ev.kind
        if kind == "result":
            self.on_tcp_result(ev.req, conn, ev.err, ev.addr, ev.port)
            return
        if kind == "info":
            self.on_tcp_info(ev.req, conn, ev.info)
            return
        if kind == "acc":
            self.on_accepted(conn, ev.listener, ev.raddr, ev.rport, ev.laddr, ev.lport)
            return
        if kind in ("restart", "synced", "sync"):
            self.on_tcp_restart(ev)
            return
        sock = self.conns.get(conn)
        if sock is None and kind == "est":
            opening = self.socks.get(conn)       # its connect's result was lost to a restart
            if opening is not None and opening.st == "connecting" and opening.conn == conn:
                sock = self.conns[conn] = opening
        if sock is None:
            gone = self.lingering.get(conn)
            if gone is not None:
                self.state.touch(gone)
                self.on_lingering(gone, ev)
            elif kind == "data":          # for a socket already closed: keep the window open
                self.tcp_msg(encode(TCP_RCVD, conn, ev.off + len(ev.data)))
            return
        self.state.touch(sock)
        if kind == "est":
            if sock.st != "connecting":
                return                  # told again after a restart of tcp
            sock.st = "connected"
            sock.laddr, sock.lport = ev.laddr, ev.lport
            call, sock.connect_call = sock.connect_call, None
            if call is not None:
                self.answer(call, 0, sock)
        elif kind == "data":
            off, data = ev.off, ev.data
            if off != sock.rcv_total:
                if off > sock.rcv_total or off + len(data) <= sock.rcv_total:
                    self.counters["tcp_data_dropped" if off > sock.rcv_total else "tcp_data_repeated"] += 1
                    return
                data = data[sock.rcv_total - off:]     # sent again after a restart: the new part only
            self.state.rx_write(sock, sock.rcv_total, data)
            sock.rcv_total += len(data)
            if sock.shut_rd:
                self.tcp_msg(encode(TCP_RCVD, conn, sock.rcv_total))   # discarded, as Linux
            else:
                sock.rbuf += data
                self.urgent_arrived(sock)
        elif kind == "urg":
            self.on_urgent(sock, ev.off)
        elif kind == "acked":
            self.trim_acked(sock, ev.off)
        elif kind == "resend":
            self.tcp_resend(sock, ev.off)
            return
        elif kind == "eof":
            sock.eof = True
        elif kind == "err":
            if sock.st == "connecting":
                self.connect_failed(sock, ev.errno)
                return
            sock.err = ev.errno
            sock.st = "closed"
            self.forget_conn(conn)
        elif kind == "closed":
            sock.st = "closed"
            self.forget_conn(conn)
        self.wake_stream(sock)

    def on_lingering(self, sock: Sock, ev: tuple) -> None:
        """Events for a socket the application closed while data was unacknowledged:
        tcp, if it restarts, may still need some of it again."""
        if ev.kind == "acked":
            self.trim_acked(sock, ev.off)
        elif ev.kind == "resend":
            self.tcp_resend(sock, ev.off)
        if ev.kind in ("closed", "err") or not sock.sndkeep:
            self.lingering.pop(sock.conn, None)
            self.uncharge_sent(sock, sock.sent_charged)

    def trim_acked(self, sock: Sock, off: int) -> None:
        """The peer acknowledged the stream up to ``off``: free send-buffer space."""
        acked = sock.snd_sent - len(sock.sndkeep)
        if off > acked:
            n = min(off - acked, len(sock.sndkeep))
            del sock.sndkeep[:n]
            sock.snd_pending = len(sock.sndkeep)
            self.uncharge_sent(sock, n)

    def tcp_resend(self, sock: Sock, off: int) -> None:
        """Stream data from ``off`` to tcp again (messages a restart of tcp lost)."""
        base = sock.snd_sent - len(sock.sndkeep)
        if off > sock.snd_sent:
            # tcp holds bytes our saved state does not: the next ones would be numbered over
            # them and dropped there as held. Cannot be while each turn saves what it sent
            self.counters["tcp_ahead_of_socket"] += 1
            self.log.warning("connection %d: tcp holds %d bytes past socket %d's %d", sock.conn,
                             off - sock.snd_sent, sock.id, sock.snd_sent)
        if off < base:
            self.counters["tcp_resend_unavailable"] += 1    # cannot be: tcp had acked it
            off = base
        for at in range(off - base, len(sock.sndkeep), TCP_SEND_MAX):
            self.tcp_msg(encode(TCP_SEND, sock.conn, base + at, sock.sndkeep[at:at + TCP_SEND_MAX]))
        self.counters["tcp_resent_bytes"] += sock.snd_sent - off

    def on_tcp_restart(self, ev: tuple) -> None:
        """tcp came back and took up its state: ask again what it never answered, then
        reconcile each connection it names; those it no longer has are lost (reset)."""
        conn, kind = ev.conn, ev.kind
        if kind == "restart":
            self.counters["tcp_restarts"] += 1
            self.tcp_unsynced = set(self.conns)
            for _, _, _, msg in list(self.tcp_reqs.values()):
                self.tcp_msg(msg)
            return
        if kind == "synced":
            for lost in self.tcp_unsynced:
                sock = self.conns.get(lost)
                if sock is not None and sock.conn == lost:
                    self.counters["tcp_conns_lost"] += 1
                    self.log.warning("connection %d (socket %d, %s) not named by tcp's resync: reset", lost,
                                     sock.id, sock.st)
                    self.on_tcp_event(TCP_EVENT["err"](lost, "err", errno.ECONNRESET))
            self.tcp_unsynced = set()
            return
        sock = self.conns.get(conn)
        self.tcp_unsynced.discard(conn)
        if sock is None:
            gone = self.lingering.get(conn)
            if gone is not None:                 # closed with data tcp may not have had
                self.tcp_resend(gone, ev.off)
                self.tcp_msg(encode(TCP_CLOSE, conn, CLOSE_FORGET, gone.snd_sent))
                return
            opening = self.socks.get(conn)
            if opening is None or opening.st != "connecting":     # (a connect asked again just now)
                self.tcp_msg(encode(TCP_CLOSE, conn, CLOSE_FORGET, 0))     # closed here while tcp was away
            return
        self.tcp_resend(sock, ev.off)
        if sock.st == "connected" or sock.eof:
            self.credit_now(sock)
        if sock.shut_wr:
            self.tcp_msg(encode(TCP_CLOSE, conn, CLOSE_SHUT_WR, sock.snd_sent))
        self.push_opts(sock)

    def push_opts(self, sock: Sock) -> None:
        """The options tcp's connection must have (off by default there)."""
        for name, on in (("nodelay", sock.nodelay), ("keepalive", sock.keepalive)):
            if on:
                self.tcp_msg(encode(TCP_SETOPT, sock.conn, name, 1))
        for name, value in sockopt.for_tcp(sock.tcpopts).items():
            self.tcp_msg(encode(TCP_SETOPT, sock.conn, name, value))

    def on_accepted(self, conn: int, listener: int, raddr: int, rport: int, laddr: int, lport: int) -> None:
        if conn in self.conns:
            return                      # told again after a restart of tcp
        lst = self.socks.get(listener)
        if lst is None or lst.st != "listening" or conn in self.gone_conns:
            self.tcp_msg(encode(TCP_CLOSE, conn, CLOSE_ABORT, 0))
            return
        try:
            sid = self.new_sock_id(lst.uid)
        except OSError:             # no socket can be made for it (ENFILE): reset, as a full accept queue
            self.tcp_msg(encode(TCP_CLOSE, conn, CLOSE_ABORT, 0))
            return
        s = Sock(sid, lst.client, -1, lst.family, lst.type, lst.proto, lst.rcvbuf, lst.sndbuf)
        s.conn, s.st, s.bound, s.origin = conn, "connected", True, lst.id
        self.owned(s, lst.uid)
        self.state.touch(s)
        s.laddr, s.lport, s.raddr, s.rport = laddr, lport, raddr, rport
        s.nodelay, s.keepalive, s.tcpopts = lst.nodelay, lst.keepalive, dict(lst.tcpopts)   # inherited, as Linux
        self.socks[s.id] = s
        self.conns[conn] = s
        self.push_opts(s)
        lst.acceptq.append(s)
        self.wake_stream(lst)
