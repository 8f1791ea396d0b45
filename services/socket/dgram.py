"""Datagram sockets in the socket server: UDP (AF_INET and AF_INET6, SOCK_DGRAM), and the
receive queue every datagram socket shares (UDP, raw, AF_UNIX datagrams).

The port table lives in the udp service: a bind is a request to it (UDP_BIND),
answered with UDP_BOUND. Datagrams stay in their skbs in the receive queue
until read; the queue is bounded by SO_RCVBUF counted in slot sizes, as Linux
counts truesize, and all of them together by [socket] dgram_mem (udp_mem).
An AF_INET6 socket holds IPv6 addresses as 16 bytes and IPv4 ones (v4-mapped,
on a socket without IPV6_V6ONLY) as ints, as udp does.
"""

from __future__ import annotations

import errno
import os
import socket as ksock

from services.routes import source_for
from services.socket.types import (MSG_DONTWAIT, MSG_OOB, MSG_PEEK, Pending, Sock, bind_aton, check_port, err,
                                   host_text, inet_bind_flags, sock_aton, sock_ntoa)
from shared.ipc.codec import encode
from shared.ipc.messages import (BIND_RESTORE, SYS_BIND, SYS_CLOSE, SYS_CONNECT,
                                 SYS_GETPEERNAME, SYS_RECVFROM, SYS_SENDTO, SYS_SHUTDOWN, UDP_BIND, UDP_CONNECT,
                                 UDP_SYNCED, UDP_UNBIND)
from shared.skb import NoBuffers, Skb
from shared.wire.ipv4 import DEFAULT_TTL

MAX_UDP_PAYLOAD = 65507
MAX_UDP6_PAYLOAD = 65527          # no IP header inside IPv6's 16-bit payload length
DGRAM_RMEM_MIN = 4096             # net.ipv4.udp_rmem_min: a socket's queue may hold this much whatever the total
RECV_AHEAD_N, RECV_AHEAD_BYTES = 64, 256 * 1024   # datagrams a SYS_RECVFROM_MANY reply takes along, at most
DGRAM_CALLS = frozenset((SYS_BIND, SYS_CONNECT, SYS_SENDTO, SYS_RECVFROM, SYS_GETPEERNAME, SYS_SHUTDOWN, SYS_CLOSE))


class DgramSockets:
    """Mixed into SocketCore; uses its answer/fail/notify/park machinery."""

    def dgram_call(self, sock: Sock, call: Pending) -> None:
        code, f = call.code, call.fields
        if code == SYS_CLOSE:
            self.close_sock(sock)
            self.answer(call, 0)
        elif code == SYS_BIND:
            self.sys_bind(sock, call, bind_aton(sock, f.addr), check_port(f.port))
        elif code == SYS_CONNECT:
            self.sys_connect(sock, call, f.addr, f.port)
        elif code == SYS_SENDTO:
            self.sys_sendto(sock, call)
        elif code == SYS_RECVFROM:
            self.sys_recvfrom(sock, call)
        elif code == SYS_GETPEERNAME:
            if not sock.raddr:
                raise err(errno.ENOTCONN)
            self.answer(call, [sock_ntoa(sock, sock.raddr, self.scope6), sock.rport], sock)
        elif code == SYS_SHUTDOWN:
            self.sys_shutdown(sock, f.how)
            self.answer(call, 0, sock)

    def sys_bind(self, sock: Sock, call: Pending, addr: int | bytes, port: int) -> None:
        if sock.bound or sock.binding:
            raise OSError(errno.EINVAL, "Invalid argument")
        if addr and addr not in self.local and addr not in self.bcast:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        sock.after_bind.append(call)
        self.request_bind(sock, addr, port)

    def request_bind(self, sock: Sock, addr: int | bytes, port: int, restore: bool = False) -> None:
        req = self.new_req()
        self.pending_binds[req] = sock
        sock.binding = not restore
        flags = inet_bind_flags(sock) | (BIND_RESTORE if restore else 0)
        self.udp_msg(encode(UDP_BIND, req, sock.id, addr, port, flags))

    def autobind(self, sock: Sock, call: Pending) -> bool:
        """Bind an unbound socket to an ephemeral port first (as inet_autobind); the
        call is retried once the port is known. Returns True if it had to wait."""
        if sock.bound:
            return False
        sock.after_bind.append(call)
        if not sock.binding:
            self.request_bind(sock, 0, 0)
        return True

    def on_bound(self, req: int, sock_id: int, err: int, addr: int | bytes, port: int) -> None:
        sock = self.pending_binds.pop(req, None)
        if sock is None or sock.id != sock_id or self.socks.get(sock_id) is not sock:
            if err == 0 and sock_id not in self.socks:
                self.udp_msg(encode(UDP_UNBIND, sock_id))   # closed meanwhile
            return
        was_binding = sock.binding
        sock.binding = False
        self.state.touch(sock)
        if err == 0:
            sock.bound, sock.laddr, sock.lport = True, addr, port
            if sock.raddr:
                self.udp_msg(encode(UDP_CONNECT, sock.id, sock.laddr, sock.raddr, sock.rport))
        waiting, sock.after_bind = sock.after_bind, []
        if not was_binding:
            return
        for call in waiting:
            if err:
                self.fail(call, err, os.strerror(err), sock)
            elif call.code == SYS_BIND:
                self.answer(call, 0, sock)
            else:
                self.redo(sock, call)

    def redo(self, sock: Sock, call: Pending) -> None:
        try:
            if call.code == SYS_SENDTO:
                self.sys_sendto(sock, call)
            elif call.code == SYS_CONNECT:
                self.sys_connect(sock, call, call.fields.addr, call.fields.port)
        except OSError as exc:
            self.fail(call, exc.errno or errno.EINVAL, exc.strerror or str(exc), sock)

    def route_src(self, daddr: int | bytes) -> int | bytes:
        src = source_for(self.fib, self.local6, self.fib6, daddr)
        if src is None:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return src

    @staticmethod
    def check_dest_family(sock: Sock, daddr: int | bytes) -> None:
        """An AF_INET6 socket reaches IPv4 (v4-mapped) only without IPV6_V6ONLY, and only if its
        own address is not an IPv6 one; one bound to IPv4 reaches no IPv6 address."""
        if sock.family != ksock.AF_INET6:
            return
        if type(daddr) is int and sock.tcpopts.get("v6only"):
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        if sock.laddr and type(sock.laddr) is not type(daddr):
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    def sys_connect(self, sock: Sock, call: Pending, addr: str, port: int) -> None:
        if addr == "":                           # AF_UNSPEC: dissolve the association
            sock.raddr = sock.rport = 0
            if sock.bound:
                self.udp_msg(encode(UDP_CONNECT, sock.id, 0, 0, 0))
            self.answer(call, 0, sock)
            return
        raddr, rport = sock_aton(sock, addr), check_port(port)
        if rport == 0:
            raise OSError(errno.ECONNREFUSED, "Connection refused")
        self.check_dest_family(sock, raddr)
        src = self.route_src(raddr)
        if raddr in self.bcast and not sock.broadcast:
            raise OSError(errno.EACCES, "Permission denied")
        if self.autobind(sock, call):
            sock.raddr, sock.rport = raddr, rport
            return
        sock.raddr, sock.rport = raddr, rport
        if not sock.laddr:
            sock.laddr = src
        sock.err = 0
        self.udp_msg(encode(UDP_CONNECT, sock.id, sock.laddr, raddr, rport))
        self.answer(call, 0, sock)

    def sys_sendto(self, sock: Sock, call: Pending) -> None:
        f = call.fields
        data, flags, addr, port = f.data, f.flags, f.addr, f.port
        if flags & MSG_OOB:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        if sock.err:
            raise self.take_error(sock)
        if sock.shut_wr:
            raise OSError(errno.EPIPE, "Broken pipe")
        if addr is None:
            if not sock.raddr:
                raise OSError(errno.EDESTADDRREQ, "Destination address required")
            daddr, dport = sock.raddr, sock.rport
        else:
            daddr, dport = sock_aton(sock, addr), check_port(port)
            if dport == 0:
                raise OSError(errno.EINVAL, "Invalid argument")
            self.check_dest_family(sock, daddr)
        if len(data) > (MAX_UDP6_PAYLOAD if type(daddr) is bytes else MAX_UDP_PAYLOAD):
            raise OSError(errno.EMSGSIZE, "Message too long")
        if daddr in self.bcast and not sock.broadcast:
            raise OSError(errno.EACCES, "Permission denied")
        self.route_src(daddr)
        if self.autobind(sock, call):
            return
        try:
            skb = self.pool.alloc(len(data))
        except NoBuffers:
            raise OSError(errno.ENOBUFS, "No buffer space available") from None
        skb.put(len(data))[:] = data
        opts = sock.tcpopts
        self.udp_sends.append(([sock.id, self.pool.give(skb, self.owner_ids["udp"]), daddr, dport,
                                opts.get("tos", 0), opts.get("ttl", DEFAULT_TTL)], skb))
        self.counters["datagrams_sent"] += 1
        self.answer(call, len(data), sock)

    def sys_recvfrom(self, sock: Sock, call: Pending) -> None:
        bufsize, flags, timeout = call.fields.bufsize, call.fields.flags, call.fields.timeout
        if bufsize < 0:
            raise OSError(errno.EINVAL, "negative buffersize in recvfrom")
        if sock.readers_waiting() or not self.try_recv(sock, call):
            if timeout is not None and timeout <= 0 or flags & MSG_DONTWAIT:
                raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
            self.park(sock, sock.readers, call, timeout)

    def try_recv(self, sock: Sock, call: Pending) -> bool:
        bufsize, flags = call.fields.bufsize, call.fields.flags
        if sock.rcvq:
            skb, saddr, sport, passed = sock.rcvq[0]
            data = bytes(skb.data[:bufsize])
            truelen = len(skb)
            if not flags & MSG_PEEK:
                self.dgram_pop(sock)
                self.pool.free(skb)
                fds = self.deliver_passed(sock.client if call.want_fds else None, passed)
                self.dgram_room(sock)
            else:
                fds = []
            addr = saddr if sock.family == ksock.AF_UNIX else sock_ntoa(sock, saddr, self.scope6)   # AF_UNIX: its name
            if call.many:
                extra = self.take_queued(sock) if not flags & MSG_PEEK else []
                self.answer(call, [data, addr, sport, truelen, extra], sock)
            else:
                self.answer(call, [data, addr, sport, truelen, *([fds] if call.want_fds else [])], sock)
            self.notify(sock)
            return True
        if sock.err:
            self.fail_with_error(sock, call)
            return True
        if sock.shut_rd:
            self.answer(call, [b"", None, 0, 0, *([[]] if call.want_fds else [])], sock)
            return True
        return False

    def take_queued(self, sock: Sock) -> list:
        """The datagrams queued behind the one a SYS_RECVFROM_MANY read, whole, up to
        RECV_AHEAD_N of them and RECV_AHEAD_BYTES: they leave the socket for the
        client library's queue, which serves the next reads without a call."""
        out: list = []
        size = 0
        while sock.rcvq and len(out) < RECV_AHEAD_N and size < RECV_AHEAD_BYTES:
            skb, saddr, sport, _ = self.dgram_pop(sock)
            out.append([bytes(skb.data), sock_ntoa(sock, saddr, self.scope6), sport])
            size += len(skb)
            self.pool.free(skb)
        if out:
            self.counters["datagrams_received_ahead"] += len(out)
        return out

    def sys_shutdown(self, sock: Sock, how: int) -> None:
        if how not in (ksock.SHUT_RD, ksock.SHUT_WR, ksock.SHUT_RDWR):
            raise OSError(errno.EINVAL, "Invalid argument")
        if not sock.raddr:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        if how in (ksock.SHUT_RD, ksock.SHUT_RDWR):
            sock.shut_rd = True
        if how in (ksock.SHUT_WR, ksock.SHUT_RDWR):
            sock.shut_wr = True
        self.wake_readers(sock)
        self.notify(sock)

    def udp_deliver(self, items: list) -> None:
        for (sid, _, saddr, sport), skb in self.skb_items(items, 4, 1, addrs=(2,)):
            sock = self.socks.get(sid)
            if sock is None:
                self.pool.free(skb)
                continue
            self.queue_datagram(sock, skb, saddr, sport)

    def queue_datagram(self, sock: Sock, skb: Skb, saddr: object, sport: int, passed: list | None = None) -> None:
        # past the total, as past udp_mem's hard limit: only a socket holding less than
        # udp_rmem_min still gets its datagram, so hoarders cannot silence everyone else
        over_mem = (self.dgram_mem + skb.end > self.cfg.socket_limits.dgram_mem
                    and sock.rcvq_mem >= DGRAM_RMEM_MIN)
        users = self.users
        if sock.shut_rd or sock.rcvq_mem + skb.end > sock.rcvbuf or over_mem or not (
                users.room("skbs", sock.uid) and users.room("mem", sock.uid, skb.end)):
            self.counters["RcvbufErrors"] += 1   # sk_rmem_alloc over sk_rcvbuf (or udp_mem): dropped
            if over_mem:
                self.counters["dgram_mem_drops"] += 1
            self.pool.free(skb)
            self.deliver_passed(None, passed)
            return
        sock.rcvq.append((skb, saddr, sport, passed))
        sock.rcvq_mem += skb.end
        self.dgram_mem += skb.end
        users.take("skbs", sock.uid)
        users.take("mem", sock.uid, skb.end)
        self.counters["datagrams_received"] += 1
        self.wake_readers(sock)
        if sock.rcvq and sock.rcvq[-1][0] is skb and not self.pool.owns(skb):
            self.dgram_adopt(sock)
        self.notify(sock)

    def dgram_adopt(self, sock: Sock) -> None:
        """A datagram left waiting in a queue moves into a slot of our own partition: in
        the one it came in (the driver's, udp's) it would keep that service from receiving,
        and unread queues of many sockets could hold all of it."""
        skb, saddr, sport, passed = sock.rcvq[-1]
        try:
            mine = self.pool.copy(skb)
        except NoBuffers:
            return                           # ours is full: it stays where it is
        sock.rcvq[-1] = (mine, saddr, sport, passed)
        sock.rcvq_mem += mine.end - skb.end
        self.dgram_mem += mine.end - skb.end
        self.users.take("mem", sock.uid, mine.end - skb.end)
        self.pool.free(skb)
        self.counters["datagrams_adopted"] += 1

    def dgram_pop(self, sock: Sock) -> tuple:
        entry = sock.rcvq.popleft()
        sock.rcvq_mem -= entry[0].end
        self.dgram_mem -= entry[0].end
        self.users.give("skbs", sock.uid)
        self.users.give("mem", sock.uid, entry[0].end)
        if self.mem_waiters:
            self.mem_freed(sock.uid)
        return entry

    def resync_udp(self) -> None:
        """udp restarted with an empty port table: announce every binding again."""
        for sock in self.socks.values():
            if sock.bound:
                self.request_bind(sock, sock.laddr, sock.lport, restore=True)
                if sock.raddr:
                    self.udp_msg(encode(UDP_CONNECT, sock.id, sock.laddr, sock.raddr, sock.rport))
            elif sock.binding:
                self.request_bind(sock, sock.laddr, 0)
        self.udp_msg(encode(UDP_SYNCED))      # behind the binds, in the same ordered queue
        self.counters["udp_resyncs"] += 1

    @staticmethod
    def dgram_row(s: Sock) -> dict:
        """The socket's line in netstat."""
        return {"proto": "raw" if s.type == ksock.SOCK_RAW else "udp",
                "local": f"{host_text(s, s.laddr)}:{s.lport}" if s.bound else "*:*",
                "remote": f"{host_text(s, s.raddr)}:{s.rport}" if s.raddr else "*:*",
                "state": "ESTAB" if s.raddr else ("UNCONN" if s.bound else "CLOSE"),
                "recv_q": sum(len(e[0]) for e in s.rcvq), "send_q": 0,
                "pid": s.client.pid, "fd": s.fd}
