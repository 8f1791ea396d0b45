"""SOCK_RAW sockets in the socket server (raw(7)): IP datagrams, header and all; and
AF_INET6 raw ICMPv6 sockets (the message without its IPv6 header, checksum done by
the stack, as Linux's raw ICMPv6 sockets).

The socket server tells ip, in one IP_REGISTER announcement, every protocol
number some raw socket is open for; ip sends a copy of each local datagram of
those protocols (RAW_DELIVER, data at the IP header) and this layer hands it to
every raw socket whose protocol, bound address and connected address match, as
raw_v4_input does. Sending goes straight to ip: the payload with a header ip
builds (IP_OUTPUT), or with IP_HDRINCL (always for IPPROTO_RAW) the caller's
own header (IP_RAW_OUTPUT). Opening one needs CAP_NET_RAW, as with the kernel.
"""

from __future__ import annotations

import errno
import socket as ksock

from services.socket.credentials import CAP_NET_RAW, creds_of
from services.socket.types import Client, MSG_OOB, Pending, Sock, err, sock_aton, sock_ntoa
from shared.ipc.messages import (IP_OUTPUT, IP_RAW_OUTPUT, IP_REGISTER, PMTUDISC_WANT, SYS_BIND, SYS_CLOSE,
                                 SYS_CONNECT, SYS_GETPEERNAME, SYS_GETSOCKNAME, SYS_RECVFROM, SYS_SENDTO,
                                 SYS_SHUTDOWN)
from shared.skb import CSUM_PARTIAL, NoBuffers, Skb
from shared.wire.ipv4 import DEFAULT_TTL


MAX_RAW_PAYLOAD = 0xFFFF
ICMPV6_HLEN_MIN, ICMPV6_CSUM_OFF = 4, 2          # type, code, checksum
RAW_CALLS = frozenset((SYS_BIND, SYS_CONNECT, SYS_SENDTO, SYS_RECVFROM, SYS_SHUTDOWN, SYS_CLOSE, SYS_GETSOCKNAME,
                       SYS_GETPEERNAME))


class RawSockets:
    """Mixed into SocketCore; uses its answer/fail/notify/park machinery."""

    def raw_init(self) -> None:
        self.raw_protocols = self.announce("ip", IP_REGISTER)
        self.raw_protocols.set(self.name, [], [])
        self.ip_sends: list[tuple[list, Skb]] = []
        self.ip_raw_sends: list[tuple[list, Skb]] = []

    def raw_socket_check(self, client: Client, proto: int, family: int = ksock.AF_INET) -> None:
        if not 0 < proto < 256:
            raise err(errno.EPROTONOSUPPORT)
        if family == ksock.AF_INET6 and proto != ksock.IPPROTO_ICMPV6:
            raise OSError(errno.EPROTONOSUPPORT, "mkstack: AF_INET6 raw sockets are IPPROTO_ICMPV6 only yet")
        if not creds_of(client.pid, client.start).capable(CAP_NET_RAW):
            raise err(errno.EPERM)

    def raw_opened(self, sock: Sock) -> None:
        sock.hdrincl = sock.proto == ksock.IPPROTO_RAW and sock.family == ksock.AF_INET
        self.raw_update()

    def raw_update(self) -> None:
        """Announce the protocols raw sockets are open for (IPPROTO_RAW only sends)."""
        protos = sorted({s.proto for s in self.socks.values()
                         if s.type == ksock.SOCK_RAW and s.proto != ksock.IPPROTO_RAW})
        self.raw_protocols.set(self.name, [], protos)

    # -- calls ---------------------------------------------------------------------
    def raw_call(self, sock: Sock, call: Pending) -> None:
        code, f = call.code, call.fields
        if code == SYS_BIND:
            addr = self.raw_addr(sock, f.addr)
            if addr and addr not in self.local and addr not in self.bcast:
                raise err(errno.EADDRNOTAVAIL)
            sock.laddr, sock.bound = addr, True
            self.answer(call, 0, sock)
        elif code == SYS_CONNECT:
            sock.raddr = self.raw_addr(sock, f.addr) if f.addr else 0
            if sock.raddr:
                self.route_src(sock.raddr)
            self.answer(call, 0, sock)
        elif code == SYS_SENDTO:
            self.raw_send(sock, call)
        elif code == SYS_RECVFROM:
            self.sys_recvfrom(sock, call)
        elif code == SYS_GETSOCKNAME:
            self.answer(call, [sock_ntoa(sock, sock.laddr, self.scope6), sock.proto], sock)
        elif code == SYS_GETPEERNAME:
            if not sock.raddr:
                raise err(errno.ENOTCONN)
            self.answer(call, [sock_ntoa(sock, sock.raddr, self.scope6), 0], sock)
        elif code == SYS_SHUTDOWN:
            self.sys_shutdown(sock, f.how)
            self.answer(call, 0, sock)
        elif code == SYS_CLOSE:
            self.close_sock(sock)
            self.answer(call, 0)

    @staticmethod
    def raw_addr(sock: Sock, addr: str) -> int | bytes:
        """An address for a raw socket: an AF_INET6 one takes IPv6 only (no v4-mapped)."""
        a = sock_aton(sock, addr)
        if sock.family == ksock.AF_INET6 and type(a) is int and a:
            raise err(errno.EINVAL)
        return a

    def raw_send(self, sock: Sock, call: Pending) -> None:
        data, flags, addr = call.fields.data, call.fields.flags, call.fields.addr
        if flags & MSG_OOB:
            raise err(errno.EOPNOTSUPP)
        if sock.err:
            raise self.take_error(sock)
        if sock.shut_wr:
            raise err(errno.EPIPE)
        if len(data) > MAX_RAW_PAYLOAD:
            raise err(errno.EMSGSIZE)
        if addr is None:
            if not sock.raddr:
                raise err(errno.EDESTADDRREQ)
            daddr = sock.raddr
        else:
            daddr = self.raw_addr(sock, addr)
        six = sock.family == ksock.AF_INET6
        if six and (not daddr or len(data) < ICMPV6_HLEN_MIN):
            raise err(errno.EINVAL)
        if daddr in self.bcast and not sock.broadcast:
            raise err(errno.EACCES)
        self.route_src(daddr)
        if sock.hdrincl and len(data) < 20:
            raise err(errno.EINVAL)
        try:
            skb = self.pool.alloc(len(data))
        except NoBuffers:
            raise err(errno.ENOBUFS) from None
        skb.put(len(data))[:] = data
        if six:                                  # ICMPv6's checksum is always the stack's (RFC 3542 3.1)
            skb.flags = skb.flags | CSUM_PARTIAL
            skb.csum_offset = ICMPV6_CSUM_OFF
        handle = self.pool.give(skb, self.owner_ids["ip"])
        if six:
            opts = sock.tcpopts
            self.ip_sends.append(([handle, sock.laddr, daddr, sock.proto, opts.get("tos", 0),
                                   opts.get("ttl", DEFAULT_TTL), PMTUDISC_WANT], skb))
        elif sock.hdrincl:
            self.ip_raw_sends.append(([handle, daddr], skb))
        else:
            self.ip_sends.append(([handle, sock.laddr, daddr, sock.proto, 0, DEFAULT_TTL, PMTUDISC_WANT], skb))
        self.counters["raw_sent"] += 1
        self.answer(call, len(data), sock)

    def flush_raw(self) -> None:
        for code, sends in ((IP_OUTPUT, self.ip_sends), (IP_RAW_OUTPUT, self.ip_raw_sends)):
            if sends:
                self.send_items("ip", code, [i for i, _ in sends], [s for _, s in sends])
                sends.clear()

    # -- from ip -------------------------------------------------------------------
    def raw_deliver(self, handles: list) -> None:
        """Copies of datagrams for raw sockets: to each that matches (raw_v4_input)."""
        for skb in self.pool.take_many(handles):
            data = skb.data
            if skb.network_header < skb.data_off:     # ICMPv6: data at the message, past its IPv6 header
                saddr, daddr = skb.ip_addrs()
                family, proto = ksock.AF_INET6, ksock.IPPROTO_ICMPV6
            elif len(data) < 20:
                self.pool.free(skb)
                continue
            else:
                family, proto = ksock.AF_INET, data[9]
                saddr, daddr = int.from_bytes(data[12:16], "big"), int.from_bytes(data[16:20], "big")
            takers = [s for s in self.socks.values()
                      if s.type == ksock.SOCK_RAW and s.family == family and s.proto == proto and not s.shut_rd
                      and (not s.laddr or s.laddr == daddr) and (not s.raddr or s.raddr == saddr)]
            for i, sock in enumerate(takers):
                try:
                    mine = skb if i == len(takers) - 1 else self.pool.copy(skb)
                except NoBuffers:
                    self.counters["RawRcvbufErrors"] += 1
                    continue
                self.queue_datagram(sock, mine, saddr, 0)
            if not takers:
                self.pool.free(skb)

    def raw_setsockopt(self, sock: Sock, name: int, value: int) -> None:
        if sock.type != ksock.SOCK_RAW or name != ksock.IP_HDRINCL:
            raise err(errno.ENOPROTOOPT)
        sock.hdrincl = bool(value) or sock.proto == ksock.IPPROTO_RAW
