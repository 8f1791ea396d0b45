"""The UDP layer: udp_rcv and udp_sendmsg around the port table (RFC 768, RFC 1122 4.1).

Receive: checksum and length checks, demux to a socket, datagram handed to the
socket server as an skb; no socket means ICMP port unreachable (via ip).
Send: the UDP header is pushed in front of the payload the socket server put
in the skb, and ip finishes the checksum once it has chosen the source.
ICMP errors reach connected sockets as ECONNREFUSED and friends.
The socket server holds a copy of every binding, so after a restart this
service asks for them again (UDP_RESYNC) and the port table comes back whole.
IPv6 runs through the same code: its addresses are 16 bytes where IPv4's are
ints, the checksum is mandatory (RFC 8200 8.1), and a binding's family
(AF_INET, AF_INET6 dual stack, or IPV6_V6ONLY) decides what it receives.
"""

from __future__ import annotations

import errno
import struct
import time

import zmq

from services.base import Service, main
from services.routes import local_ips
from shared.ipc.codec import encode
from shared.ipc.messages import (BIND_RESTORE, BIND_REUSEADDR, BIND_REUSEPORT, IP_ICMP_ERROR, IP_OUTPUT,
                                 IP_REGISTER, L4_ERR, L4_RCV, LOWER_UP, PMTUDISC_WANT, UDP_BIND, UDP_BOUND,
                                 UDP_CONNECT, UDP_DELIVER, UDP_RESYNC, UDP_SEND, UDP_SOCK_ERR, UDP_SYNCED,
                                 UDP_UNBIND)
from shared.proto import sockopt
from shared.proto.udp import PortTable
from shared.skb import CSUM_PARTIAL, CSUM_VALID, NoBuffers, Skb
from shared.wire import WireError
from shared.wire.icmp import (ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HOST_UNREACH, ICMP_NET_UNREACH,
                              ICMP_PORT_UNREACH, ICMP_PROT_UNREACH, ICMP_TIME_EXCEEDED)
from shared.wire.icmpv6 import (ICMPV6_ADDR_UNREACH, ICMPV6_ADM_PROHIBITED, ICMPV6_DEST_UNREACH, ICMPV6_NOROUTE,
                                ICMPV6_PARAMPROB, ICMPV6_PKT_TOOBIG, ICMPV6_PORT_UNREACH)
from shared.wire.ipv4 import IPPROTO_UDP
from shared.wire.ipv6 import IPV6_HLEN, addr_text
from shared.wire.udp import UDP_CSUM_OFF, UDP_HLEN, UdpHeader, emit_udp, parse_udp

RESYNC_RETRY = 0.02
SYNC_WAIT = 0.5            # seconds datagrams wait for the bindings after a start, at most
SYNC_HOLD = 1024           # ... and how many (skbs) wait
# ICMP destination-unreachable codes as errno (icmp_err_convert in Linux)
_UNREACH_ERRNO = {ICMP_NET_UNREACH: errno.ENETUNREACH, ICMP_HOST_UNREACH: errno.EHOSTUNREACH,
                  ICMP_PROT_UNREACH: errno.ENOPROTOOPT, ICMP_PORT_UNREACH: errno.ECONNREFUSED,
                  ICMP_FRAG_NEEDED: errno.EMSGSIZE}
_UNREACH6_ERRNO = {ICMPV6_NOROUTE: errno.ENETUNREACH, ICMPV6_ADM_PROHIBITED: errno.EACCES,
                   ICMPV6_ADDR_UNREACH: errno.EHOSTUNREACH, ICMPV6_PORT_UNREACH: errno.ECONNREFUSED}


def icmpv6_errno(type_: int, code: int) -> int:
    """An ICMPv6 error as errno (icmpv6_err_convert in Linux)."""
    if type_ == ICMPV6_DEST_UNREACH:
        return _UNREACH6_ERRNO.get(code, errno.EHOSTUNREACH)
    return {ICMPV6_PKT_TOOBIG: errno.EMSGSIZE, ICMPV6_PARAMPROB: errno.EPROTO}.get(type_, errno.EHOSTUNREACH)


class Udp(Service):
    kind = "udp"

    def __init__(self) -> None:
        super().__init__()
        bcast = {int.from_bytes(d.addr.network.broadcast_address.packed, "big") for d in self.cfg.devices}
        self.local = local_ips(self.cfg, self.rundir)
        self.table = PortTable(self.cfg.local_port_range, self.local, bcast)
        self.peer("ip")
        self.announce("ip", IP_REGISTER).set(self.name, [IPPROTO_UDP], [])   # inet_add_protocol
        self.peer("socket_server")
        # (item, skb) pairs waiting for the end of this loop turn, one message each
        self.deliveries: list[tuple[list, Skb]] = []
        self.outgoing: list[tuple[list, Skb]] = []
        self.icmp_requests: list[tuple[list, Skb]] = []
        # ask for the bindings until the request is on its way (the PUSH socket
        # to socket_server may not be connected yet this early)
        self.resync_at: float | None = time.monotonic()
        # until they are all back, datagrams wait (in order) instead of finding no
        # socket: a port unreachable for a bound port would be a lie, and a
        # connected peer socket would report it as ECONNREFUSED
        self.sync_until: float | None = self.resync_at + SYNC_WAIT
        self.waiting: list[tuple[int, tuple]] = []       # (code, fields) of L4_RCV and UDP_SEND
        self.waiting_skbs = 0

    def ss_send(self, msg: bytes) -> bool:
        try:
            self.peer("socket_server").send(msg, zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.counters["socket_server_unreachable"] += 1
            return False

    def on_message(self, code: int, fields: tuple) -> None:
        if self.sync_until is not None and code in (L4_RCV, UDP_SEND):
            n = len(fields[-1])
            if self.waiting_skbs + n <= SYNC_HOLD:
                self.waiting.append((code, fields))
                self.waiting_skbs += n
                self.counters["waited_for_bindings"] += n
                return
            self.synced()                   # too many to hold: let them through as they are
        if code == L4_RCV:
            for skb in self.pool.take_many(fields.handles):
                try:
                    self.udp_rcv(skb)
                except Exception as exc:
                    self.pool.free(skb)
                    self.fault("rcv", exc)
        elif code == UDP_SEND:
            self.udp_send(fields.items)
        elif code == UDP_BIND:
            req, sock, addr, port, flags = fields
            reuse, reuseport = bool(flags & BIND_REUSEADDR), bool(flags & BIND_REUSEPORT)
            fam = sockopt.bind_family(flags)
            if type(addr) is bytes and len(addr) != 16:
                e, got = errno.EINVAL, (0, 0)
            elif flags & BIND_RESTORE:     # a re-announced binding after our restart
                e = self.table.restore(sock, addr, port, reuse, reuseport=reuseport, fam=fam)
                got = (addr, port)
            else:
                e, *got = self.table.bind(sock, addr, port, reuse, reuseport, fam)
            self.ss_send(encode(UDP_BOUND, req, sock, e, *got))
        elif code == UDP_CONNECT:
            sock, laddr, raddr, rport = fields
            if sock in self.table.socks:
                self.table.connect(sock, laddr, raddr, rport)
        elif code == UDP_UNBIND:
            self.table.unbind(fields.sock)
        elif code == UDP_SYNCED:
            if self.sync_until is not None:
                self.synced()
        elif code == L4_ERR:
            self.udp_err(fields.items)
        elif code == LOWER_UP:
            pass                  # datagrams lost below stay lost: UDP promises nothing
        else:
            self.counters["unexpected_messages"] += 1
        self.flush()

    def synced(self) -> None:
        """The bindings are back (or we waited long enough): handle what waited, in order."""
        self.sync_until = None
        waiting, self.waiting, self.waiting_skbs = self.waiting, [], 0
        for code, fields in waiting:
            self.on_message(code, fields)

    def flush(self) -> None:
        for service, code, batch in (("socket_server", UDP_DELIVER, self.deliveries),
                                     ("ip", IP_OUTPUT, self.outgoing), ("ip", IP_ICMP_ERROR, self.icmp_requests)):
            if batch:
                self.send_items(service, code, [item for item, _ in batch], [skb for _, skb in batch])
                batch.clear()

    # -- receive ----------------------------------------------------------------
    def udp_rcv(self, skb: Skb) -> None:
        src, dst = skb.ip_addrs()
        mib = "Udp6" if len(src) == 16 else "Udp"         # IPv6's counters apart, as /proc/net/snmp6 keeps them
        try:
            hdr, _ = parse_udp(skb.data, src, dst, verify=not skb.flags & CSUM_VALID)
        except WireError as exc:
            self.counters[mib + "InErrors"] += 1
            if "checksum" in str(exc):
                self.counters[mib + "InCsumErrors"] += 1
            self.pool.free(skb)
            return
        if len(src) == 16:
            saddr, daddr = src, dst
        else:
            saddr, daddr = int.from_bytes(src, "big"), int.from_bytes(dst, "big")
        socks = self.table.lookup(saddr, hdr.sport, daddr, hdr.dport)
        if not socks:
            self.counters[mib + "NoPorts"] += 1
            if daddr in self.local:
                self.icmp_requests.append(([self.pool.give(skb, self.owner_ids["ip"]),
                                            ICMP_DEST_UNREACH, ICMP_PORT_UNREACH], skb))
            else:
                self.pool.free(skb)
            return
        skb.trim(hdr.length)
        skb.pull(UDP_HLEN)
        self.counters[mib + "InDatagrams"] += 1
        for sock in socks[1:]:      # a broadcast for several sockets: each gets a copy
            try:
                copy = self.pool.alloc(len(skb))
            except NoBuffers:
                self.counters["UdpRcvbufErrors"] += 1
                continue
            copy.put(len(skb))[:] = skb.data
            self.deliver(sock, copy, saddr, hdr.sport)
        self.deliver(socks[0], skb, saddr, hdr.sport)

    def deliver(self, sock: int, skb: Skb, saddr: int | bytes, sport: int) -> None:
        handle = self.pool.give(skb, self.owner_ids["socket_server"])
        self.deliveries.append(([sock, handle, saddr, sport], skb))

    def udp_err(self, items: list) -> None:
        """ICMP errors about datagrams we sent; only connected sockets hear of them (as Linux)."""
        for item in items:
            if not (isinstance(item, list) and len(item) == 4 and isinstance(item[3], bytes)):
                continue
            type_, code, _rest, quoted = item
            if quoted and quoted[0] >> 4 == 6:                 # ICMPv6, about an IPv6 datagram
                if len(quoted) < IPV6_HLEN + 8:
                    continue
                laddr, raddr = quoted[8:24], quoted[24:40]
                lport, rport = struct.unpack_from("!HH", quoted, IPV6_HLEN)
                s = self.table.find_sender(laddr, lport, raddr, rport)
                if s is not None:
                    self.counters["Udp6IcmpErrors"] += 1
                    self.ss_send(encode(UDP_SOCK_ERR, s.sock, icmpv6_errno(type_, code)))
                continue
            hlen = (quoted[0] & 0xF) * 4
            if len(quoted) < hlen + 8:
                continue
            laddr, raddr = (int.from_bytes(quoted[i:i + 4], "big") for i in (12, 16))
            lport, rport = struct.unpack_from("!HH", quoted, hlen)
            s = self.table.find_sender(laddr, lport, raddr, rport)
            if s is None:
                continue
            if type_ == ICMP_DEST_UNREACH:
                err = _UNREACH_ERRNO.get(code, errno.EHOSTUNREACH)
            elif type_ == ICMP_TIME_EXCEEDED:
                err = errno.EHOSTUNREACH
            else:
                err = errno.EPROTO
            self.counters["UdpIcmpErrors"] += 1
            self.ss_send(encode(UDP_SOCK_ERR, s.sock, err))

    # -- send -------------------------------------------------------------------
    def udp_send(self, items: list) -> None:
        ip_id = self.owner_ids["ip"]
        for (sock, _, daddr, dport, tos, ttl), skb in self.skb_items(items, 6, 1, addrs=(2,)):
            s = self.table.socks.get(sock)
            if s is None or not 0 < dport <= 0xFFFF:
                self.counters["UdpOutDrops"] += 1
                self.pool.free(skb)
                continue
            saddr = s.laddr if s.laddr not in self.table.broadcasts else 0
            if saddr and type(saddr) is not type(daddr):     # refused by the socket layer before
                self.counters["UdpOutDrops"] += 1
                self.pool.free(skb)
                continue
            length = len(skb) + UDP_HLEN
            emit_udp(UdpHeader(s.lport, dport, length), skb.push(UDP_HLEN))
            skb.transport_header = skb.data_off
            skb.flags = skb.flags | CSUM_PARTIAL
            skb.csum_offset = UDP_CSUM_OFF
            self.counters["Udp6OutDatagrams" if type(daddr) is bytes else "UdpOutDatagrams"] += 1
            self.outgoing.append(([self.pool.give(skb, ip_id), saddr, daddr, IPPROTO_UDP, tos & 0xFF, ttl & 0xFF,
                                   PMTUDISC_WANT], skb))

    def timer_at(self) -> float | None:
        if self.sync_until is None:
            return self.resync_at
        return self.sync_until if self.resync_at is None else min(self.resync_at, self.sync_until)

    def on_timer(self, now: float) -> None:
        if self.sync_until is not None and now >= self.sync_until:
            self.counters["bindings_sync_timeouts"] += 1
            self.synced()
        if self.resync_at is None or now < self.resync_at:
            return
        try:
            self.peer("socket_server").send(encode(UDP_RESYNC), zmq.NOBLOCK)
            self.resync_at = None
        except zmq.Again:
            self.resync_at = now + RESYNC_RETRY

    def show(self, what: str) -> object:
        if what == "ports":
            return [{"sock": s.sock, "laddr": addr_text(s.laddr), "lport": s.lport, "raddr": addr_text(s.raddr),
                     "rport": s.rport} for s in self.table.socks.values()]
        return super().show(what)


if __name__ == "__main__":
    main(Udp)
