"""The TCP layer: tcp_v4_rcv, tcp_sendmsg and the timers around the engine.

Segments from ip are checked (length, checksum, options), demuxed to a
connection by the exact 4-tuple or to a listener, and fed to its Tcb; what
the engines emit is built into skbs (the checksum left to ip, CSUM_PARTIAL)
and handed to ip in one batch per loop turn. Segments for no connection are
answered with RST as RFC 9293 says. Stream data goes to and comes from the
socket server as bytes in bulk, with send-buffer and window credits.

Why one file: the engine (shared/proto/tcp/tcb.py), the connection types
(tcp_conn.py) and the restart store (tcp_store.py) stand apart; what is left is
tcp_v4_rcv's demux, the output batch, the timer heap and the socket layer's
requests, which all work on the same connection tables within one loop turn.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import itertools
import os
import time

import zmq

from services.base import Service, main
from services.routes import fib6_from_config, fib_from_config, local_addrs6, local_ips, route6, source_for
from services.tcp_conn import Conn, Listener
from services.tcp_store import TcpStore
from shared.ipc.codec import encode
from shared.ipc.messages import (BIND_REUSEADDR, BIND_REUSEPORT, CLOSE_ABORT, CLOSE_SHUT_WR, IP_OUTPUT,
                                 IP_REGISTER, L4_ERR, L4_RCV, LOWER_UP, PMTUDISC_DO, RMEM_MAX, TCP_ACCEPTED,
                                 TCP_BIND, TCP_CLOSE, TCP_CONNECT, TCP_EVENTS, TCP_GETINFO, TCP_LISTEN, TCP_RCVD,
                                 TCP_RESYNC, TCP_SEND, TCP_SEND_URG, TCP_SETOPT)
from shared.proto.tcp import seq as S
from shared.proto.tcp import syncookie
from shared.proto.tcp.info import tcp_info
from shared.proto.tcp.tcb import Segment, State, Tcb, TcpConfig, reset_for, with_opts
from shared.proto import sockopt
from shared.proto.udp import V4, V6, PortTable, family_of, flow_hash
from shared.skb import CSUM_PARTIAL, CSUM_VALID, NoBuffers, Skb
from shared.wire import WireError
from shared.wire.icmp import ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_PORT_UNREACH
from shared.wire.icmpv6 import ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH
from shared.wire.ipv4 import DEFAULT_TTL, IPPROTO_TCP
from shared.wire.ipv6 import IPV6_HLEN, addr_text
from shared.wire.tcp import ACK, RST, SYN, TCP_CSUM_OFF, TcpHeader, emit_tcp, parse_tcp, tcp_hlen

PASSIVE_BASE = 1 << 40        # conn ids tcp makes for accepted connections
SOMAXCONN = 4096
EVENTS_BATCH_BYTES = 256 * 1024   # stream data per TCP_EVENTS message (the codec refuses > 1 MiB)
RESYNC_RETRY = 0.02               # seconds between attempts to reach the socket layer after a restart
COOKIE_KEY_FILE = "tcp.cookie-key"   # in the run directory: the SYN-cookie secret
DEFAULT_MTU, LOOPBACK_MTU = 1500, 65536


ANY6 = bytes(16)            # the IPv6 wildcard as a key of ``listeners`` (IPv4's is 0)
# a connection's event counts (Tcb.stats) -> the stack's counters (TcpExt* as in /proc/net/netstat)
STAT_MIBS = (("fin_wait2_timeouts", "TcpExtFinWait2Timeouts"), ("ooo_dropped", "TcpExtTCPOFODrop"),
             ("challenge_acks", "TcpExtTCPChallengeACK"), ("acks_skipped", "TcpExtTCPACKSkipped"))


class Tcp(Service):
    kind = "tcp"

    def __init__(self) -> None:
        super().__init__()
        self.local6 = local_addrs6(self.cfg)
        self.fib6 = fib6_from_config(self.cfg)
        self.local = local_ips(self.cfg, self.rundir)
        self.fib = fib_from_config(self.cfg, self.rundir)
        self.ports = PortTable(self.cfg.local_port_range, self.local)
        self.bound: dict[int, tuple[int, int]] = {}          # sock -> (addr, port)
        self.conns: dict[tuple[int, int, int, int], Conn] = {}
        self.by_id: dict[int, Conn] = {}
        self.listeners: dict[tuple[int, int], Listener] = {}
        self.listener_of: dict[int, Listener] = {}
        self.next_passive = PASSIVE_BASE
        self.timers: list[tuple[float, int, Conn]] = []
        self.tseq = itertools.count()
        self.touched: dict[int, Conn] = {}
        self.orphans: set[int] = set()       # closed by the application, not yet in TIME-WAIT or gone
        self.time_wait: set[int] = set()
        self.events: list[list] = []
        # events that could not go while the socket layer was away, or since: they follow the resync
        self.held: list[list] = []
        self.out: list[tuple[list, Skb]] = []
        self.rcvd: list[Skb] = []     # segments of this turn: freed once its state is saved
        self.tcfg = TcpConfig(mss=min(d.mtu for d in self.cfg.devices) - 40,
                              tso=self.cfg.offload, **self.cfg.tcp)
        self.tcfg6 = with_opts(self.tcfg, {"maxseg": self.tcfg.mss - 20})    # IPv6's header is 20 bytes longer
        self.now = time.monotonic()
        self.cookie_secret = self.load_cookie_secret()
        self.peer("ip")
        self.announce("ip", IP_REGISTER).set(self.name, [IPPROTO_TCP], [])   # inet_add_protocol
        self.peer("socket_server")
        self.state = TcpStore(self.instance, *self.cfg.stream_bufs_max(2 * RMEM_MAX))
        self.restore()
        self.resync_at: float | None = self.now      # tell the socket layer what we hold (after a restart)
        self.resync_token = 0          # the latest TCP_RESYNC's: our resyncs carry it (its sender waits for it)

    # -- dispatch ---------------------------------------------------------------------
    def on_message(self, code: int, fields: tuple) -> None:
        self.now = time.monotonic()
        if code == L4_RCV:
            skbs = self.pool.take_many(fields.handles)
            self.rcvd += skbs
            for skb in skbs:
                try:
                    self.tcp_rcv(skb)
                except Exception as exc:
                    self.fault("rcv", exc)
        elif code in (TCP_SEND, TCP_SEND_URG):
            c = self.by_id.get(fields.conn)
            if c is not None and (not c.orphan or c.fin_at is not None):
                self.tcp_send(c, fields.off, fields.data, code == TCP_SEND_URG)
        elif code == TCP_RCVD:
            c = self.by_id.get(fields.conn)
            # an absolute offset: a repeated one (after a restart) credits nothing twice
            n = min(fields.off, c.tcb.rcv_total) - c.consumed if c is not None else 0
            if n > 0:
                c.consumed += n
                c.tcb.read_credit(n, self.now)
                self.touch(c)
        elif code == TCP_BIND:
            self.tcp_bind(*fields)
        elif code == TCP_LISTEN:
            self.tcp_listen(*fields)
        elif code == TCP_CONNECT:
            self.tcp_connect(*fields)
        elif code == TCP_CLOSE:
            self.tcp_close(*fields)
        elif code == TCP_SETOPT:
            c = self.by_id.get(fields.conn)
            if c is not None:
                if fields.name == "nodelay":
                    c.tcb.nodelay = bool(fields.value)
                    c.tcb.output_data(self.now)
                elif fields.name == "keepalive":
                    c.tcb.set_keepalive(bool(fields.value), self.now)
                else:
                    self.setopts(c.tcb, {fields.name: fields.value})
                self.touch(c)
        elif code == TCP_GETINFO:
            req, sock, conn = fields
            c = self.by_id.get(conn)
            info = tcp_info(c.tcb, self.now, c.acked, self.pmtu(c.raddr)) if c is not None else b""
            self.events.append([sock, "info", req, info])
        elif code == TCP_RESYNC:          # the socket server restarted: tell it everything again
            self.resync_token = max(self.resync_token, fields.token)   # a dead incarnation's may come late
            self.resync_at = self.now
        elif code == TCP_ACCEPTED:
            lst = self.listener_of.get(fields.listener)
            if lst is not None and lst.pending:
                lst.pending -= 1
                self.state.table_dirty = True
        elif code == L4_ERR:
            self.tcp_err(fields.items)
        elif code == LOWER_UP:
            for c in self.by_id.values():
                if c.tcb.probe_after_restart(self.now):
                    self.counters["lower_restart_resends"] += 1
                    self.touch(c)
        else:
            self.counters["unexpected_messages"] += 1

    def result(self, req: int, sock: int, err: int, addr: int = 0, port: int = 0) -> None:
        """The answer to a request, in order with the events (and, like them, sent
        only once the turn's state is saved)."""
        self.events.append([sock, "result", req, err, addr, port])

    def ss_send(self, msg: bytes) -> bool:
        try:
            self.peer("socket_server").send(msg, zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.counters["socket_server_unreachable"] += 1
            return False

    def tcp_send(self, c: Conn, off: int, data: bytes, urgent: bool) -> None:
        """Stream bytes ``data`` at stream offset ``off``: a part we hold already (sent
        again after a restart) is skipped; a gap (a message lost to a restart) makes
        us ask the socket layer for the bytes from where we are."""
        if off > c.snd_total:
            self.ask_resend(c)
            return
        if off < c.snd_total:
            data = data[c.snd_total - off:]
            if not data:
                return
        try:
            c.tcb.send(data, self.now, urgent=urgent)
        except OSError:
            # the connection closed or failed in this same turn: service()
            # reports its own error (ECONNRESET...), which must win over EPIPE
            self.counters["TcpSendsAfterClose"] += 1
            return
        c.snd_total += len(data)
        self.state.tx_append(c, data)
        if c.fin_at is not None and c.snd_total >= c.fin_at:
            c.fin_at = None
            c.tcb.close(self.now)
        self.touch(c)

    def ask_resend(self, c: Conn) -> None:
        """A message of the stream was lost to our restart: ask the socket layer for the
        bytes from where we are, once per gap."""
        if c.resend_asked != c.snd_total:
            c.resend_asked = c.snd_total
            self.events.append([c.id, "resend", c.snd_total])
            self.touch(c)

    # -- requests from the socket layer ---------------------------------------------------
    def tcp_bind(self, req: int, sock: int, addr: int, port: int, flags: int) -> None:
        if sock in self.bound:
            # the socket layer binds a socket once: this is its request again, after our restart
            self.result(req, sock, 0, *self.bound[sock])
            return
        err, a, p = self.ports.bind(sock, addr, port, bool(flags & BIND_REUSEADDR), bool(flags & BIND_REUSEPORT),
                                    sockopt.bind_family(flags))
        if err == 0:
            self.bound[sock] = (a, p)
            self.state.table_dirty = True
        self.result(req, sock, err, a, p)

    def tcp_listen(self, req: int, sock: int, backlog: int, rcvbuf: int) -> None:
        if sock not in self.bound:
            err, a, p = self.ports.bind(sock, 0, 0)      # listen() on an unbound socket: autobind
            if err:
                self.result(req, sock, err)
                return
            self.bound[sock] = (a, p)
        self.state.table_dirty = True
        addr, port = self.bound[sock]
        grouped = self.reuseport(sock)
        takes = self.takes(sock)
        for other in self.listener_of.values():
            la = other.laddr
            if other.lport == port and other.sock != sock and self.takes(other.sock) & takes and (
                    la == 0 or addr == 0 or la == addr) and not (grouped and la == addr and self.reuseport(other.sock)):
                self.result(req, sock, errno.EADDRINUSE)
                return
        lst = self.listener_of.get(sock)
        if lst is None:
            lst = Listener(sock, addr, port, 0, rcvbuf)
            for key in self.listen_keys(lst):
                self.listeners.setdefault(key, lst)     # the first of an SO_REUSEPORT group stands for it
            self.listener_of[sock] = lst
        lst.backlog = max(1, min(backlog, SOMAXCONN))
        lst.rcvbuf = rcvbuf
        self.result(req, sock, 0, addr, port)

    def tcp_connect(self, req: int, sock: int, raddr: int, rport: int, rcvbuf: int, nodelay: bool,
                    keepalive: bool, opts: dict) -> None:
        c = self.by_id.get(sock)
        if c is not None:
            # the socket layer connects a socket once: its request again, after our restart
            self.result(req, sock, 0, c.laddr, c.lport)
            return
        src = source_for(self.fib, self.local6, self.fib6, raddr)
        if src is None:
            self.result(req, sock, errno.ENETUNREACH)
            return
        if sock not in self.bound:
            err, a, p = self.ports.bind(sock, 0, 0, fam=family_of(raddr))
            if err:
                self.result(req, sock, errno.EADDRNOTAVAIL)
                return
            self.bound[sock] = (a, p)
        addr, port = self.bound[sock]
        laddr = addr or src
        if (laddr, port, raddr, rport) in self.conns:
            self.result(req, sock, errno.EADDRINUSE)
            return
        tcfg = self.tcfg_for(raddr)
        if "maxseg" in opts and type(opts["maxseg"]) is int:
            tcfg = with_opts(tcfg, {"maxseg": opts["maxseg"]})      # the MSS option of our SYN
        tcb = Tcb.connect(tcfg, self.iss(), self.now, ts_offset=self.iss(), rcv_space=rcvbuf)
        tcb.nodelay = nodelay
        tcb.keepalive = keepalive
        self.setopts(tcb, opts)
        c = Conn(sock, tcb, laddr, port, raddr, rport)
        self.add_conn(c)
        self.result(req, sock, 0, laddr, port)
        self.counters["TcpActiveOpens"] += 1
        self.touch(c)

    def takes(self, sock: int) -> int:
        """The address families a bound socket receives (V4, V6 or both: shared/proto/udp.py)."""
        b = self.ports.socks.get(sock)
        return b.takes if b is not None else V4

    def listen_keys(self, lst: Listener) -> list[tuple[int | bytes, int]]:
        """Where ``listeners`` files a listener: by its address, or, bound to a wildcard, under
        each family's wildcard it takes (0 for IPv4, ANY6 for IPv6)."""
        if lst.laddr:
            return [(lst.laddr, lst.lport)]
        takes = self.takes(lst.sock)
        return [key for fam, key in ((V4, (0, lst.lport)), (V6, (ANY6, lst.lport))) if takes & fam]

    def reuseport(self, sock: int) -> bool:
        b = self.ports.socks.get(sock)
        return b is not None and b.reuseport

    def group_of(self, lst: Listener) -> list[Listener]:
        """The other listeners of ``lst``'s SO_REUSEPORT group, in the order they bound."""
        others = [o for o in self.listener_of.values()
                  if o is not lst and (o.laddr, o.lport) == (lst.laddr, lst.lport) and self.reuseport(o.sock)]
        return sorted(others, key=lambda o: self.ports.socks[o.sock].order)

    def setopts(self, tcb: Tcb, opts: dict) -> None:
        """Options the socket layer set on a connection (it checked them as the kernel does)."""
        for name, value in opts.items():
            try:
                tcb.setopt(name, value, self.now)
            except (ValueError, TypeError):
                self.counters["TcpBadOptions"] += 1

    def tcfg_for(self, raddr: int | bytes) -> TcpConfig:
        """The configuration a connection with ``raddr`` starts from: over IPv6, an MSS 20 bytes smaller."""
        return self.tcfg6 if type(raddr) is bytes else self.tcfg

    def pmtu(self, raddr: int | bytes) -> int:
        """The MTU of the route to ``raddr`` (TCP_INFO's tcpi_pmtu)."""
        mtus = {d.ifindex: d.mtu for d in self.cfg.devices}
        if type(raddr) is bytes:
            r6 = route6(self.local6, raddr, self.fib6)
            return mtus.get(r6[0], LOOPBACK_MTU) if r6 is not None else DEFAULT_MTU
        route = self.fib.lookup(raddr.to_bytes(4, "big"))
        return mtus.get(route.ifindex, LOOPBACK_MTU) if route is not None else DEFAULT_MTU

    def tcp_close(self, conn: int, how: int, off: int) -> None:
        lst = self.listener_of.pop(conn, None)
        if lst is not None:
            self.state.table_dirty = True
            rest = self.group_of(lst)
            for key in self.listen_keys(lst):
                if self.listeners.get(key) is lst:
                    if rest:
                        self.listeners[key] = rest[0]
                    else:
                        del self.listeners[key]
            for cid in list(lst.embryonic):            # handshakes in progress die with it
                c = self.by_id.get(cid)
                if c is not None:
                    c.tcb.abort(self.now)
                    self.touch(c)
        c = self.by_id.get(conn)
        if c is None:
            if conn in self.bound:
                self.ports.unbind(conn)
                del self.bound[conn]
                self.state.table_dirty = True
            return
        if how == CLOSE_ABORT:
            c.tcb.abort(self.now)
            self.counters["TcpAborts"] += 1
        elif off > c.snd_total:
            # data before the FIN was lost to our restart: it is on its way again
            c.fin_at = off
            self.ask_resend(c)
        else:
            c.tcb.close(self.now)
        if how != CLOSE_SHUT_WR:
            c.orphan = True          # the socket is gone: tcp finishes the close alone
            c.tcb.orphan(self.now)
            if c.tcb.state not in (State.CLOSED, State.TIME_WAIT):
                if len(self.orphans) >= self.tcfg.max_orphans:
                    # as tcp_close under tcp_check_oom: no room to finish it alone, reset it
                    c.tcb.abort(self.now)
                    self.counters["TcpExtTCPAbortOnMemory"] += 1
                else:
                    self.orphans.add(c.id)
        self.touch(c)

    # -- receive --------------------------------------------------------------------------
    def tcp_rcv(self, skb: Skb) -> None:
        src, dst = skb.ip_addrs()
        try:
            hdr, payload = parse_tcp(skb.data, src, dst, verify=not skb.flags & CSUM_VALID)
        except WireError as exc:
            self.counters["TcpInErrs"] += 1
            if "checksum" in str(exc):
                self.counters["TcpInCsumErrors"] += 1
            return
        self.counters["TcpInSegs"] += 1
        if len(src) == 16:
            saddr, daddr = src, dst
        else:
            saddr, daddr = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
        seg = Segment(hdr.seq, hdr.ack, hdr.flags, hdr.wnd, bytes(payload), hdr.opts, hdr.urg)
        c = self.conns.get((daddr, hdr.dport, saddr, hdr.sport))
        lst = None
        if c is not None:
            if not (c.tcb.state is State.TIME_WAIT and c.tcb.new_syn_ends_time_wait(seg)):
                c.tcb.receive(seg, self.now)
                self.touch(c)
                return
            lst = self.listener_for(daddr, hdr.dport, saddr, hdr.sport)
            if lst is None:
                c.tcb.receive(seg, self.now)
                self.touch(c)
                return
            # RFC 6191: a new incarnation of the 4-tuple; its ISN is beyond anything the old one
            # sent (Linux: snd_nxt + 65537), so old duplicates still in flight fall outside it
            iss = S.add(c.tcb.snd_nxt, 65537)
            c.tcb.end_time_wait()
            self.touched.pop(c.id, None)
            self.service(c)
            self.counters["TcpExtTWRecycled"] += 1
            self.syn_rcv(lst, seg, saddr, hdr.sport, daddr, iss)
            return
        lst = self.listener_for(daddr, hdr.dport, saddr, hdr.sport)
        if lst is not None and seg.flags & SYN and not seg.flags & (ACK | RST):
            self.syn_rcv(lst, seg, saddr, hdr.sport, daddr)
            return
        if lst is not None and seg.flags & ACK and not seg.flags & (SYN | RST) and self.cookie_ack(
                lst, seg, saddr, hdr.sport, daddr):
            return
        rst = reset_for(seg)
        if rst is not None and daddr in self.local:
            self.counters["TcpOutRsts"] += 1
            self.xmit(daddr, hdr.dport, saddr, hdr.sport, rst)

    def listener_for(self, laddr: int, lport: int, raddr: int, rport: int) -> Listener | None:
        """The listener a new connection to laddr:lport from raddr:rport goes to (a
        SO_REUSEPORT group's member is picked by the flow's hash)."""
        lst = self.listeners.get((laddr, lport)) or self.listeners.get((ANY6 if type(laddr) is bytes else 0, lport))
        if lst is not None and self.reuseport(lst.sock):
            group = [lst, *self.group_of(lst)]
            lst = group[flow_hash(raddr, rport, laddr, lport) % len(group)]
        return lst

    def syn_rcv(self, lst: Listener, syn: Segment, raddr: int, rport: int, laddr: int,
                iss: int | None = None) -> None:
        """A SYN for a listener: a half-open connection, or a SYN cookie when the
        listener's half-open queue is full (Linux: the SYN queue, as long as the
        backlog); dropped only while the accept queue itself is full."""
        if lst.pending >= lst.backlog:
            self.counters["ListenOverflows"] += 1      # dropped: the peer retries its SYN
            return
        if len(lst.embryonic) >= lst.backlog:
            if not self.tcfg.syncookies:
                self.counters["ListenOverflows"] += 1
                return
            self.cookie_synack(lst, syn, raddr, rport, laddr)
            return
        tcb = Tcb.accept(self.tcfg_for(raddr), syn=syn, iss=self.iss() if iss is None else iss, now=self.now,
                         ts_offset=self.iss(), rcv_space=lst.rcvbuf)
        self.passive_open(lst, tcb, laddr, raddr, rport)

    def passive_open(self, lst: Listener, tcb: Tcb, laddr: int, raddr: int, rport: int) -> Conn:
        c = Conn(self.passive_id(), tcb, laddr, lst.lport, raddr, rport, listener=lst.sock, origin=lst.sock)
        lst.embryonic.add(c.id)
        self.add_conn(c)
        self.counters["TcpPassiveOpens"] += 1
        self.touch(c)
        return c

    def cookie_synack(self, lst: Listener, syn: Segment, raddr: int, rport: int, laddr: int) -> None:
        """Answer with a SYN-ACK whose ISN (and TSval) hold what we would have kept."""
        iss = syncookie.make(self.cookie_secret, laddr, lst.lport, raddr, rport, syn.seq, syn.opts.mss, self.now)
        syn = dataclasses.replace(syn, opts=syncookie.synack_options(syn.opts))
        t = Tcb.accept(self.tcfg_for(raddr), syn=syn, iss=iss, now=self.now,
                       rcv_space=lst.rcvbuf, ts_offset=self.cookie_ts_offset(laddr, lst.lport, raddr, rport))
        synack = t.output[0]
        if synack.opts.ts is not None:
            marked = syncookie.mark_tsval(synack.opts.ts[0], syn.opts)
            synack = dataclasses.replace(synack, opts=dataclasses.replace(synack.opts, ts=(marked, synack.opts.ts[1])))
        self.counters["TcpExtSyncookiesSent"] += 1
        self.xmit(laddr, lst.lport, raddr, rport, synack)

    def cookie_ack(self, lst: Listener, seg: Segment, raddr: int, rport: int, laddr: int) -> bool:
        """An ACK for a listener with no connection: if it carries one of our
        cookies, the connection is established from it. False: not a cookie."""
        if not self.tcfg.syncookies:
            return False
        mss = syncookie.check(self.cookie_secret, laddr, lst.lport, raddr, rport, seg.seq, seg.ack, self.now)
        if mss is None:
            self.counters["TcpExtSyncookiesFailed"] += 1
            return False
        if lst.pending >= lst.backlog:
            self.counters["ListenOverflows"] += 1      # as Linux: the ACK is dropped, the peer retries
            return True
        sseq, flags, opts = syncookie.rebuild_syn(seg.seq, mss, seg.opts)
        t = Tcb.accept(self.tcfg_for(raddr), syn=Segment(sseq, 0, flags, seg.wnd, b"", opts), iss=S.add(seg.ack, -1),
                       now=self.now, rcv_space=lst.rcvbuf,
                       ts_offset=self.cookie_ts_offset(laddr, lst.lport, raddr, rport))
        t.output.clear()                # the SYN-ACK went out long ago, from no state
        t.receive(seg, self.now)
        self.counters["TcpExtSyncookiesRecv"] += 1
        self.passive_open(lst, t, laddr, raddr, rport)
        return True

    def load_cookie_secret(self) -> bytes:
        """The SYN-cookie key of the instance (in its root-only run directory): the
        same across restarts, so a cookie handshake under way survives a kill."""
        path = os.path.join(self.rundir, COOKIE_KEY_FILE)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            with open(path, "rb") as f:
                key = f.read()
            if len(key) == 32:
                return key
            self.log.warning("%s: not a key; using one for this process only", path)
            return os.urandom(32)
        key = os.urandom(32)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key

    def cookie_ts_offset(self, laddr: int, lport: int, raddr: int, rport: int) -> int:
        """The timestamp offset of a cookie connection: the same when its ACK comes."""
        return syncookie.ts_offset(self.cookie_secret, laddr, lport, raddr, rport)

    def tcp_err(self, items: list) -> None:
        for item in items:
            if not (isinstance(item, list) and len(item) == 4 and isinstance(item[3], bytes)):
                continue
            type_, code, _, quoted = item
            if quoted and quoted[0] >> 4 == 6:                 # ICMPv6 about an IPv6 segment
                hlen, laddr, raddr = IPV6_HLEN, quoted[8:24], quoted[24:40]
                # as ICMP's: only port unreachable is hard (RFC 4443 3.1 code 4)
                type_, code = (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH) if (type_, code) == (
                    ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH) else (-1, -1)
            else:
                hlen = (quoted[0] & 0xF) * 4
                laddr, raddr = int.from_bytes(quoted[12:16], "big"), int.from_bytes(quoted[16:20], "big")
            lport = int.from_bytes(quoted[hlen:hlen + 2], "big")
            rport = int.from_bytes(quoted[hlen + 2:hlen + 4], "big")
            c = self.conns.get((laddr, lport, raddr, rport))
            if c is None or type_ != ICMP_DEST_UNREACH or code == ICMP_FRAG_NEEDED:
                continue
            # RFC 5927 4.1: an error must quote a segment we have in flight, or anyone
            # who can guess the ports could abort the connection with a forged one
            qseq = int.from_bytes(quoted[hlen + 4:hlen + 8], "big") if len(quoted) >= hlen + 8 else None
            if qseq is None or not (S.le(c.tcb.snd_una, qseq) and S.lt(qseq, c.tcb.snd_max)):
                self.counters["TcpExtOutOfWindowIcmps"] += 1
                continue
            # hard errors abort only a connection still opening (RFC 1122 4.2.3.9)
            if c.tcb.state is State.SYN_SENT and code == ICMP_PORT_UNREACH:
                c.tcb.abort(self.now)
                c.tcb.error = errno.ECONNREFUSED
                self.touch(c)

    # -- output and events ------------------------------------------------------------------
    def iss(self) -> int:
        return int.from_bytes(os.urandom(4), "big")

    def passive_id(self) -> int:
        cid = self.next_passive
        self.next_passive += 1
        if self.next_passive >= self.state.ids_reserved:
            self.state.table_dirty = True          # reserve more before any is seen outside
        return cid

    def add_conn(self, c: Conn) -> None:
        self.conns[c.key] = c
        self.by_id[c.id] = c

    def touch(self, c: Conn) -> None:
        self.touched[c.id] = c

    def xmit(self, laddr: int, lport: int, raddr: int, rport: int, seg: Segment, mss: int = 0,
             ttl: int = DEFAULT_TTL, tos: int = 0) -> None:
        """One segment into an skb for ip; longer than ``mss``, it is a TSO segment
        the device cuts into ``mss``-byte pieces (skb.gso_size)."""
        hdr = TcpHeader(lport, rport, seg.seq, seg.ack, seg.flags, seg.wnd, seg.urg, seg.opts)
        hlen = tcp_hlen(seg.opts)
        try:
            skb = self.pool.alloc(hlen + len(seg.data))
        except NoBuffers:
            self.counters["TcpOutDrops"] += 1
            return
        buf = skb.put(hlen + len(seg.data))
        emit_tcp(hdr, buf)
        if seg.data:
            buf[hlen:] = seg.data
        skb.flags = skb.flags | CSUM_PARTIAL
        skb.csum_offset = TCP_CSUM_OFF
        if mss and len(seg.data) > mss:
            skb.gso_size = mss
            self.counters["TcpOutTsoSegs"] += 1
        self.counters["TcpOutSegs"] += 1
        self.out.append(([self.pool.give(skb, self.owner_ids["ip"]), laddr, raddr, IPPROTO_TCP, tos, ttl,
                          PMTUDISC_DO], skb))

    def service(self, c: Conn) -> None:
        """Move what a connection produced to the wire and the socket layer."""
        t = c.tcb
        ttl, tos = t.opts.get("ttl", DEFAULT_TTL), t.opts.get("tos", 0)
        for seg in t.output:
            self.xmit(c.laddr, c.lport, c.raddr, c.rport, seg, t.seg_size(), ttl, tos)  # type: ignore[arg-type]
        t.output.clear()
        retrans = t.stats["retrans"]
        if retrans:
            self.counters["TcpRetransSegs"] += retrans
            t.stats["retrans"] = 0
        for key, mib in STAT_MIBS:
            if t.stats[key]:
                self.counters[mib] += t.stats[key]
                t.stats[key] = 0
        if c.listener is not None:
            lst = self.listener_of.get(c.listener)
            if t.state is State.CLOSED or lst is None:
                if lst is not None:
                    lst.embryonic.discard(c.id)
            elif t.state is not State.SYN_RCVD and not c.announced:
                lst.embryonic.discard(c.id)
                lst.pending += 1
                self.state.table_dirty = True
                c.announced = True
                self.events.append([c.id, "acc", lst.sock, c.raddr, c.rport, c.laddr, c.lport])
                c.listener = None
        elif t.state is not State.SYN_SENT and not c.announced and t.state is not State.CLOSED:
            c.announced = True
            self.events.append([c.id, "est", c.laddr, c.lport])
        if not c.orphan:
            if t.delivered:
                self.state.rx_delivered(c, t.delivered)
                self.deliver(c, t.rcv_total - len(t.delivered), t.delivered)
                t.delivered.clear()
            for off in t.urgent:
                self.events.append([c.id, "urg", off])
            t.urgent.clear()
            if t.eof and not c.eof_sent:
                c.eof_sent = True
                self.events.append([c.id, "eof"])
        else:
            t.delivered.clear()
            t.urgent.clear()
        if t.acked:
            # absolute, so idempotent; also for orphans: the socket layer keeps a closed
            # socket's unacknowledged data until then, in case we restart
            self.events.append([c.id, "acked", c.acked])
            t.acked = 0
        if t.state is State.TIME_WAIT and c.id not in self.time_wait:
            self.orphans.discard(c.id)
            if len(self.time_wait) >= self.tcfg.max_tw_buckets:
                t.end_time_wait()                  # "time wait bucket table overflow": closed at once
                self.counters["TcpExtTCPTimeWaitOverflow"] += 1
            else:
                self.time_wait.add(c.id)
        if t.state is State.CLOSED:
            if t.error is not None and not c.orphan:
                self.events.append([c.id, "err", t.error])
                self.counters["TcpEstabResets" if t.error in (errno.ECONNRESET, errno.EPIPE)
                              else "TcpAttemptFails"] += 1
            else:
                self.events.append([c.id, "closed"])
            self.remove(c)
            return
        at = t.poll_at()
        if at != c.timer:
            # one live heap entry per connection; an older one left in the heap is
            # stale and skipped, so a timer that moved (re-armed every round trip)
            # does not wake the loop for nothing
            c.timer = at
            if at is not None:
                heapq.heappush(self.timers, (at, next(self.tseq), c))

    def deliver(self, c: Conn, off: int, data: bytes | bytearray) -> None:
        """Data events at stream offset ``off`` (the socket layer drops what it has).
        A filled gap can release a whole window at once: never more than a batch per
        message, or the codec refuses it (and the data, and the window it holds, are lost)."""
        view = memoryview(data)
        for at in range(0, len(view), EVENTS_BATCH_BYTES):
            chunk = bytes(view[at:at + EVENTS_BATCH_BYTES])
            self.events.append([c.id, "data", off + at, chunk])
        view.release()

    def remove(self, c: Conn) -> None:
        self.conns.pop(c.key, None)
        self.by_id.pop(c.id, None)
        self.orphans.discard(c.id)
        self.time_wait.discard(c.id)
        self.state.drop(c.id)
        if c.id in self.bound and c.id < PASSIVE_BASE:
            self.ports.unbind(c.id)
            del self.bound[c.id]

    def end_of_turn(self) -> None:
        for c in self.touched.values():
            self.service(c)
        # write-ahead: the saved state covers everything this turn lets out
        for c in self.touched.values():
            if c.id in self.by_id:
                self.save(c)
        self.touched.clear()
        if self.state.table_dirty:
            self.state.save_table(self)
        self.state.write_turn()
        # a segment is freed only now: if tcp dies before the turn is saved, the
        # skbs are still its own, and ip hands them to the next incarnation
        # (base.Service._peer_gone) instead of the peer's retransmission timer
        if self.rcvd:
            free = self.pool.free
            for skb in self.rcvd:
                free(skb)
            self.rcvd = []
        if self.out:
            self.send_items("ip", IP_OUTPUT, [i for i, _ in self.out], [s for _, s in self.out])
            self.out = []
        if not self.events_flush() and self.resync_at is None:
            # the socket layer missed events (restarting, or its queue full while it
            # catches up): data, eof, errors; tell it everything again until it hears
            self.resync_at = self.now + RESYNC_RETRY

    def save(self, c: Conn) -> None:
        b = self.bound.get(c.id) if c.id < PASSIVE_BASE else None
        reuse = b is not None and c.id in self.ports.socks and self.ports.socks[c.id].reuse
        self.state.save(c, [b[0], b[1], reuse] if b is not None else None)

    def events_flush(self) -> bool:
        """Send this turn's events; False if the socket layer could not take them all (it
        is restarting, or its queue is full). From then on no event goes out before a
        resync has got through: one sent past a lost one could overtake it (an eof past
        the data it ends, a 'synced' past a connection's 'sync'), and the socket layer
        would act on it (an empty read, a connection reset). The unsent events are held
        for the resync, all but data and acks, which it carries afresh (from the store)."""
        events, self.events = self.events, []
        if self.resync_at is not None:
            self.hold(events)
            return False
        sent = self.send_events(events)
        if sent < len(events):
            self.hold(events[sent:])
            return False
        return True

    def send_events(self, events: list[list]) -> int:
        """Send ``events`` in order, in messages of at most a batch of data; how many went
        (up to the first message the socket layer could not take: none after it)."""
        msg: list = []
        size = sent = 0
        for i, item in enumerate(events):
            msg.append(item)
            if item[1] == "data":
                size += len(item[3])
            if size >= EVENTS_BATCH_BYTES or i == len(events) - 1:
                if not self.ss_send(encode(TCP_EVENTS, msg)):
                    return sent
                sent += len(msg)
                msg, size = [], 0
        return sent

    def hold(self, events: list[list]) -> None:
        self.held += [e for e in events if e[1] not in ("data", "acked")]

    # -- restart ------------------------------------------------------------------------------
    def restore(self) -> None:
        """Take up what the previous incarnation saved: ports, listeners, connections."""
        reserved, bound, listeners = self.state.load_table()
        self.next_passive = max(self.next_passive, reserved)
        for sock, a, p, reuse, *more in bound:
            fam = more[1] if len(more) > 1 else V4
            if self.ports.bind(sock, a, p, reuse, bool(more and more[0]), fam)[0] == 0:
                self.bound[sock] = (a, p)
        for sock, a, p, backlog, rcvbuf, pending in listeners:
            lst = Listener(sock, a, p, backlog, rcvbuf, pending)
            for key in self.listen_keys(lst):
                self.listeners.setdefault(key, lst)
            self.listener_of[sock] = lst
        conns, bad = self.state.load_conns(self.tcfg)     # (the MSS a connection sends with is in its state)
        self.counters["TcpRestoreErrors"] += bad
        for head, tcb in conns:
            (cid, laddr, lport, raddr, rport, listener, origin, orphan, announced, eof_sent, snd_total, consumed,
             fin_at, b) = head
            c = Conn(cid, tcb, laddr, lport, raddr, rport, listener, origin, orphan, announced, eof_sent,
                     snd_total, consumed, fin_at=fin_at)
            self.add_conn(c)
            if orphan and tcb.state is not State.TIME_WAIT:
                self.orphans.add(cid)
            if b is not None and self.ports.bind(cid, b[0], b[1], True)[0] == 0:
                self.bound[cid] = (b[0], b[1])
            lst = self.listener_of.get(listener) if listener is not None else None
            if lst is not None:
                lst.embryonic.add(cid)
            if cid >= PASSIVE_BASE:
                self.next_passive = max(self.next_passive, cid + 1)
            # the state is saved before a turn's segments leave: the last turn's may have died here
            if tcb.probe_after_restart(self.now):
                self.counters["restart_probes"] += 1
            self.touch(c)                       # re-arms its timers
        self.counters["TcpRestored"] += len(conns)
        if conns or bound or listeners:
            self.log.info("took up %d connections, %d listeners, %d bound ports", len(conns), len(listeners),
                          len(bound))

    def resync(self) -> None:
        """Tell the socket layer what we hold, so it can make up for messages a restart
        lost either way: each connection's announcement, the data it may not have,
        what was acked, then 'sync' with how much of its stream we took (it sends the
        rest again, its read offset, and closes what it no longer knows)."""
        saved, self.events = self.events, [[0, "restart", self.resync_token]]
        for c in self.by_id.values():
            if c.orphan:
                if c.fin_at is not None:        # closed by the application: the data before its FIN
                    self.events.append([c.id, "sync", c.snd_total])
                continue
            if c.announced and c.origin is not None:
                self.events.append([c.id, "acc", c.origin, c.raddr, c.rport, c.laddr, c.lport])
            elif c.announced:
                self.events.append([c.id, "est", c.laddr, c.lport])
            elif c.listener is not None:
                continue                        # still opening: nothing the socket layer knows of
            data = self.state.undelivered(c)
            if data:
                self.deliver(c, c.consumed, data)
            self.events.append([c.id, "acked", c.acked])
            if c.eof_sent:
                self.events.append([c.id, "eof"])
            self.events.append([c.id, "sync", c.snd_total])
        # then what could not go since the last resync (results, eofs, closes: older than
        # the data above, never before it), and the end, which the socket layer hears only
        # if all before it went
        events = self.events + self.held + [[0, "synced"]]
        if self.send_events(events) == len(events):
            self.held = []
            self.resync_at = None
            self.counters["TcpResyncs"] += 1
        else:
            self.resync_at = self.now + RESYNC_RETRY
        self.events = saved

    def timer_at(self) -> float | None:
        while self.timers:
            due, _, c = self.timers[0]
            if c.id in self.by_id and c.timer == due:
                break
            heapq.heappop(self.timers)           # a gone connection's, or a stale one of a moved timer
        at = self.timers[0][0] if self.timers else None
        if self.resync_at is not None:
            at = self.resync_at if at is None else min(at, self.resync_at)
        return at

    def on_timer(self, now: float) -> None:
        self.now = now
        if self.resync_at is not None and now >= self.resync_at:
            self.resync()
        while self.timers and self.timers[0][0] <= now:
            at, _, c = heapq.heappop(self.timers)
            if c.id in self.by_id and c.timer == at:
                c.timer = None
                at = c.tcb.poll_at()
                if at is not None and at <= now:
                    c.tcb.poll(now)
                self.touch(c)

    # -- introspection ------------------------------------------------------------------------
    def show(self, what: str) -> object:
        if what == "tcp":
            def ip(a: int | bytes) -> str:
                return f"[{addr_text(a)}]" if type(a) is bytes else addr_text(a)
            rows = [{"state": "LISTEN", "local": f"{ip(lst.laddr)}:{lst.lport}", "remote": "*:*", "conn": lst.sock,
                     "recv_q": lst.pending, "send_q": lst.backlog} for lst in self.listener_of.values()]
            for c in self.by_id.values():
                t = c.tcb
                rows.append({"state": t.state.value, "local": f"{ip(c.laddr)}:{c.lport}",
                             "remote": f"{ip(c.raddr)}:{c.rport}", "conn": c.id, "recv_q": 0,
                             "send_q": len(t.sndq), "cwnd": t.cc.cwnd, "srtt": t.rtt.srtt, "rto": t.rtt.rto,
                             "sack": t.sack_ok, "ts": t.ts_ok, "wscale": [t.snd_wscale, t.rcv_wscale],
                             "rcv_space": t.rcv_space, "rcv_wnd": (t.rcv_adv - t.rcv_nxt) & 0xFFFFFFFF,
                             "ooo": len(t.ooo)})
            return rows
        return super().show(what)

    def stats(self) -> dict:
        out = super().stats()
        out["TcpCurrEstab"] = sum(1 for c in self.by_id.values() if c.tcb.state in (State.ESTABLISHED,
                                                                                      State.CLOSE_WAIT))
        return out


if __name__ == "__main__":
    main(Tcp)
