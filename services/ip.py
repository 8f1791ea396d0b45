"""The IPv4 layer: ip_rcv/ip_output, ARP, ICMP, fragments and routing.

Receive (RFC 791, RFC 1122 3.2.1): full header checks, martian filtering,
reassembly (RFC 815 bookkeeping), local delivery by protocol number to the
transport services that registered for it (IP_REGISTER, as inet_add_protocol),
copies to raw sockets; an unclaimed protocol gets ICMP protocol unreachable.
ICMP echo is answered in place in the received skb; ICMP errors are passed to
the transport that sent the quoted datagram. Registrations are kept in the run
directory, so a restarted ip knows its protocols before anyone re-announces. Output: FIB
lookup, the transport's checksum finished (CHECKSUM_PARTIAL), fragmentation
to the device MTU, neighbour resolution (packets wait in the neighbour's queue
while ARP resolves), Ethernet header pushed in place, one batch per device per
loop turn to netdev.

Why one file: it is the loop around the engines that already stand apart (header
codecs in shared/wire, FIB, neighbour table, reassembly and netfilter in shared/proto,
routes and devices in services/routes.py, the hooks in ip_filter.py); what is left is
ip_rcv/ip_output's order of steps, which reads best in one place, as in Linux's ip_input.c.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import struct
import time

import msgpack
import zmq

from services.base import Service, main
from services.ip6 import Ip6
from services.ip_filter import NetfilterHooks
from services.routes import (LOOPBACK_ADDR, LOOPBACK_IFINDEX, LOOPBACK_MTU, Iface, add_connected, check_addr,
                             drop_connected, extra_addrs, fib_from_config, save_addrs, save_routes)
from shared.ipc.codec import encode
from shared.ipc.messages import (ANNOUNCE_ACK, CTL_ADDR, CTL_FILTER, CTL_ROUTE, DEV_QUEUE_XMIT, IP_ICMP_ERROR,
                                 IP_OUTPUT, IP_RAW_OUTPUT, IP_RCV, IP_REGISTER, L4_ERR, L4_RCV, LOWER_UP, NETDEV_UP,
                                 PMTUDISC_DO, PMTUDISC_DONT, PMTUDISC_WANT, RAW_DELIVER)
from shared.proto.fib import FibRoute
from shared.proto.ipid import IpIdents
from shared.proto.neigh import Evicted, NeighTable, Overflow, Solicit, Unresolved
from shared.proto.reassembly import Complete, Discard, Reassembler
from shared.skb import CSUM_PARTIAL, CSUM_VALID, NoBuffers, Skb
from shared.wire import WireError
from shared.wire.arp import ARP_LEN, ARPOP_REPLY, ARPOP_REQUEST, ArpPacket, emit_arp, parse_arp
from shared.wire.checksum import ones_sum, pseudo_header_sum, pseudo_header_sum6
from shared.wire.ethernet import BROADCAST, ETH_HLEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, EthHeader, emit_eth, mac_ntoa
from shared.wire.icmp import (ICMP_DEST_UNREACH, ICMP_ECHO, ICMP_ECHOREPLY, ICMP_ERRORS, ICMP_FRAG_NEEDED,
                              ICMP_HLEN, ICMP_HOST_UNREACH, ICMP_NET_UNREACH, ICMP_PROT_UNREACH, ICMP_TIME_EXCEEDED,
                              IcmpHeader, emit_icmp, parse_icmp)
from shared.wire.ipv4 import DEFAULT_TTL, IPPROTO_ICMP, IPV4_HLEN, Ipv4Header, emit_ipv4, ip_ntoa, parse_ipv4
from shared.wire.ipv6 import ip6_ntoa

LIMITED_BROADCAST = b"\xff\xff\xff\xff"
ICMP_QUOTE_MAX = 576 - IPV4_HLEN - ICMP_HLEN   # RFC 1812 4.3.2.3: fill up to 576 bytes
ICMP_EXC_FRAGTIME = 1
PROTOCOLS_FILE = "ip.protocols"   # in the run directory: registrations outlive an ip restart


class TokenBucket:
    """ICMP output rate limit (net.ipv4.icmp_msgs_per_sec/_burst)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, 0.0

    def allow(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def martian_source(src: bytes) -> bool:
    """Addresses that may never appear as a source (RFC 1122 3.2.1.3)."""
    return src[0] in (0, 127) or src[0] >= 224


class Ip(NetfilterHooks, Ip6, Service):
    kind = "ip"

    def __init__(self) -> None:
        super().__init__()
        self.ifaces = {d.ifindex: Iface(d.ifindex, d.name, d.mac, d.addr.ip.packed, d.addr.network, d.mtu)
                       for d in self.cfg.devices}
        self.lo = Iface(LOOPBACK_IFINDEX, "lo", bytes(6), LOOPBACK_ADDR.ip.packed, LOOPBACK_ADDR.network,
                        LOOPBACK_MTU)
        self.ifaces[LOOPBACK_IFINDEX] = self.lo
        self.fib = fib_from_config(self.cfg, self.rundir)
        self.local_ifaces = {i.addr: i for i in self.ifaces.values()}
        self.extra = extra_addrs(self.cfg, self.rundir)          # added with `launcher.py addr add`
        for iface, dev in self.extra:
            self.local_ifaces[iface.ip.packed] = self.ifaces[self.cfg.device(dev).ifindex]
        self.registrations: dict[str, tuple[list[int], list[int]]] = self.load_registrations()
        self.protocols: dict[int, str] = {}      # protocol number -> the service handling it
        self.raw: dict[int, list[str]] = {}      # protocol number -> services with raw sockets for it
        self.rebuild_protocols()
        self.rawbatch: dict[tuple[str, int], list[Skb]] = {}
        self.reasm = Reassembler(timeout=self.cfg.ipfrag_time, high_thresh=self.cfg.ipfrag_high_thresh)
        self.l4batch: dict[tuple[str, int], list[Skb]] = {}
        self.neigh = self.new_neigh_table()
        self.icmp_limit = TokenBucket(1000.0, 50.0)
        self.ip6_init()
        self.offload = self.cfg.offload   # the TAPs finish checksums and cut TSO segments
        self.filter_init()
        self.idents = IpIdents()
        self.txbatch: dict[int, list[Skb]] = {}
        self.now = time.monotonic()
        self.peer("netdev")
        for svc in self.registrations:
            self.peer(svc)
        if self.epoch > 1:          # restarted: the segments inside the old process are lost
            self.lower_up()

    # -- dispatch -----------------------------------------------------------
    def on_message(self, code: int, fields: tuple) -> None:
        self.now = time.monotonic()
        if code == IP_OUTPUT:
            self.ip_output_batch(fields.items)
        elif code == IP_ICMP_ERROR:
            self.icmp_error_batch(fields.items)
        elif code == IP_RCV:
            self.ip_rcv_batch(*fields)
        elif code == IP_RAW_OUTPUT:
            self.raw_output_batch(fields.items)
        elif code == IP_REGISTER:
            self.register(*fields)
        elif code == NETDEV_UP:
            self.arp_notify(fields.ifindex)
        else:
            self.counters["unexpected_messages"] += 1
        self.flush()

    def ip_rcv_batch(self, ifindex: int, handles: list) -> None:
        ifc = self.ifaces.get(ifindex)
        if ifc is None:
            self.counters["unexpected_messages"] += 1
            self.pool.free_handles(handles)
            return
        for skb in self.pool.take_many(handles):
            try:
                if skb.protocol == ETH_P_ARP:
                    self.arp_rcv(ifc, skb)
                elif skb.protocol == ETH_P_IP:
                    self.ip_rcv(ifc, skb)
                elif skb.protocol == ETH_P_IPV6:
                    self.ip6_rcv(ifc, skb)
                else:
                    self.counters["IpInUnknownEthertype"] += 1
                    self.pool.free(skb)
            except Exception as exc:
                self.pool.free(skb)
                self.fault("rcv", exc)

    def flush(self) -> None:
        for (svc, ifindex), skbs in self.l4batch.items():
            self.send_skbs(svc, L4_RCV, ifindex, skbs)
        self.l4batch.clear()
        for (svc, ifindex), skbs in self.rawbatch.items():
            self.send_skbs(svc, RAW_DELIVER, ifindex, skbs)
        self.rawbatch.clear()
        for ifindex, skbs in self.txbatch.items():
            self.send_skbs("netdev", DEV_QUEUE_XMIT, ifindex, skbs)
        self.txbatch.clear()

    def timer_at(self) -> float | None:
        due = [t for t in (self.neigh.poll_at(), self.neigh6.poll_at(), self.reasm.poll_at(), self.reasm6.poll_at(),
                           self.dad_at()) if t is not None]
        return min(due) if due else None

    def on_timer(self, now: float) -> None:
        self.now = now
        self.neigh_actions(self.neigh.poll(now))
        self.neigh6_actions(self.neigh6.poll(now))
        self.reasm_results(self.reasm.poll(now))
        self.reasm6_results(self.reasm6.poll(now))
        self.dad_poll()
        self.flush()

    # -- ARP ----------------------------------------------------------------
    def arp_rcv(self, ifc: Iface, skb: Skb) -> None:
        try:
            arp = parse_arp(skb.data)
        except WireError:
            self.counters["ArpInErrors"] += 1
            self.pool.free(skb)
            return
        self.counters["ArpInRequests" if arp.op == ARPOP_REQUEST else "ArpInReplies"] += 1
        for_us = arp.tpa == ifc.addr or self.local_ifaces.get(arp.tpa) is ifc
        if arp.spa != b"\0\0\0\0" and not martian_source(arp.spa) and arp.spa != ifc.addr:
            for waiting in self.neigh.update(ifc.ifindex, arp.spa, arp.sha, self.now, create=for_us):
                self.neigh_output(ifc, waiting, arp.sha)
            if self.neigh.evicted:
                self.neigh_actions(self.neigh.evicted)
                self.neigh.evicted = []
        if not (for_us and arp.op == ARPOP_REQUEST):
            self.pool.free(skb)
            return
        # answer in place: the request's buffer becomes the reply
        skb.trim(ARP_LEN)
        emit_arp(ArpPacket(ARPOP_REPLY, ifc.mac, arp.tpa, arp.sha, arp.spa), skb.data)
        self.counters["ArpOutReplies"] += 1
        self.xmit_frame(ifc, skb, arp.sha, ETH_P_ARP)

    def arp_solicit(self, s: Solicit) -> None:
        ifc = self.ifaces.get(s.ifindex)
        if ifc is not None:
            self.arp_request(ifc, ifc.addr, s.ip, s.mac or BROADCAST)

    def arp_request(self, ifc: Iface, sip: bytes, tip: bytes, to: bytes) -> None:
        try:
            skb = self.pool.alloc(ARP_LEN)
        except NoBuffers:
            self.counters["ArpOutDrops"] += 1
            return
        emit_arp(ArpPacket(ARPOP_REQUEST, ifc.mac, sip, b"\0" * 6, tip), skb.put(ARP_LEN))
        self.counters["ArpOutRequests"] += 1
        self.xmit_frame(ifc, skb, to, ETH_P_ARP)

    def arp_notify(self, ifindex: object) -> None:
        """The device's carrier came back (its driver restarted): a gratuitous ARP
        for each of our addresses on it, as Linux sends with arp_notify. The
        kernel across the link flushed its neighbour entries when the carrier
        went; packets it queued meanwhile would wait for its own ARP retry
        (1 s later); our announcement completes those entries now."""
        ifc = self.ifaces.get(ifindex) if type(ifindex) is int else None
        if ifc is None:
            self.counters["unexpected_messages"] += 1
            return
        for addr in [a for a, i in self.local_ifaces.items() if i is ifc]:
            self.arp_request(ifc, addr, addr, BROADCAST)
            self.counters["ArpOutGratuitous"] += 1
        if ifindex in self.groups6:
            self.dad_due.add(ifc.ifindex)       # IPv6's addresses are probed again, as addrconf does on link up
        self.lower_up()

    def lower_up(self) -> None:
        """Tell every transport that frames below it were lost (the netdev notifier
        chain's NETDEV_UP reaching the protocols), so TCP resends at once."""
        for svc in {s for s in self.protocols.values()}:
            self.notify(svc, encode(LOWER_UP))

    def new_neigh_table(self) -> NeighTable:
        """A neighbour cache with the config's [neigh] parameters (ARP's, and NDP's on 16-byte keys)."""
        n = self.cfg.neigh
        return NeighTable(n.reachable_time, n.retrans_time, n.mcast_solicit, n.unres_qlen, n.gc_stale_time,
                          n.gc_thresh3, n.unres_total)

    def neigh_actions(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, Solicit):
                self.arp_solicit(a)
            elif isinstance(a, Unresolved):
                self.counters["ArpResolveFailed"] += 1
                for skb in a.items:
                    self.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_HOST_UNREACH, ifc=self.ifaces.get(a.ifindex))
                    self.pool.free(skb)
            elif isinstance(a, Overflow):
                self.counters["ArpUnresQueueDrops"] += 1
                self.pool.free(a.item)
            elif isinstance(a, Evicted):
                self.counters["ArpForcedGcRuns"] += 1      # /proc/net/stat/arp_cache's forced_gc_runs
                self.counters["ArpUnresQueueDrops"] += len(a.items)
                for skb in a.items:
                    self.pool.free(skb)

    # -- IPv4 receive ---------------------------------------------------------
    def ip_rcv(self, ifc: Iface, skb: Skb) -> None:
        self.counters["IpInReceives"] += 1
        try:
            hdr, _ = parse_ipv4(skb.data)
        except WireError:
            self.counters["IpInHdrErrors"] += 1
            self.pool.free(skb)
            return
        skb.trim(hdr.total_len)  # drop Ethernet padding
        if not self.nf_hook("PREROUTING", skb, ifc, None):
            return
        if martian_source(hdr.src) or hdr.src in self.local_ifaces or hdr.src == ifc.broadcast:
            self.counters["IpInAddrErrors"] += 1
            self.pool.free(skb)
            return
        if hdr.dst in self.local_ifaces or hdr.dst in (ifc.broadcast, LIMITED_BROADCAST):
            self.ip_local_deliver(ifc, skb, hdr)
            return
        self.ip_forward(ifc, skb, hdr)

    def ip_forward(self, ifc: Iface, skb: Skb, hdr: Ipv4Header) -> None:
        """A datagram for another host (RFC 1812 5.2): route it out another device
        with its TTL decremented, or answer with the ICMP error that says why not."""
        if not self.cfg.forwarding or hdr.dst[0] >= 224 or hdr.dst == ifc.broadcast:
            self.counters["IpInAddrErrors"] += 1      # net.ipv4.ip_forward = 0, or not unicast
            self.pool.free(skb)
            return
        route = self.fib.lookup(hdr.dst)
        if route is None or route.ifindex == LOOPBACK_IFINDEX:
            self.counters["IpOutNoRoutes"] += 1
            self.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_NET_UNREACH, ifc=ifc)
            self.pool.free(skb)
            return
        out = self.ifaces[route.ifindex]
        if not self.nf_hook("FORWARD", skb, ifc, out):
            return
        if hdr.ttl <= 1:
            self.counters["IpInHdrErrors"] += 1
            self.icmp_send(skb, ICMP_TIME_EXCEEDED, 0, ifc=ifc)    # code 0: TTL exceeded in transit
            self.pool.free(skb)
            return
        if len(skb) > out.mtu and hdr.df:
            self.counters["IpFragFails"] += 1
            self.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ifc=ifc, rest=out.mtu)
            self.pool.free(skb)
            return
        data = skb.data
        data[8] = hdr.ttl - 1
        data[10:12] = b"\0\0"
        struct.pack_into("!H", data, 10, ~ones_sum(data[:hdr.hlen]) & 0xFFFF)
        self.counters["IpForwDatagrams"] += 1
        skb.network_header = skb.data_off
        self.ip_finish_output(skb, route, hdr.dst)

    def ip_local_deliver(self, ifc: Iface, skb: Skb, hdr: Ipv4Header) -> None:
        if hdr.is_fragment:
            self.counters["IpReasmReqds"] += 1
            key = (hdr.src, hdr.dst, hdr.proto, hdr.ident)
            self.reasm_results(self.reasm.add(key, hdr.frag_off, hdr.total_len - hdr.hlen, hdr.mf, skb,
                                              self.now, cost=skb.end), ifc)
            return
        if not self.nf_hook("INPUT", skb, ifc, None):
            return
        raw = self.raw_deliver(ifc, skb, hdr.proto)
        if hdr.proto == IPPROTO_ICMP:
            self.counters["IpInDelivers"] += 1
            self.icmp_rcv(ifc, skb, hdr)
            return
        svc = self.protocols.get(hdr.proto)
        if svc is not None:
            self.counters["IpInDelivers"] += 1
            skb.network_header = skb.data_off
            skb.pull(hdr.hlen)
            skb.transport_header = skb.data_off
            self.l4batch.setdefault((svc, ifc.ifindex), []).append(skb)
            return
        if raw:
            self.counters["IpInDelivers"] += 1   # a raw socket took it: no error (ip_local_deliver_finish)
        else:
            self.counters["IpInUnknownProtos"] += 1
            if hdr.dst in self.local_ifaces:
                self.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_PROT_UNREACH, ifc=ifc)
        self.pool.free(skb)

    def raw_deliver(self, ifc: Iface, skb: Skb, proto: int) -> bool:
        """A copy of the datagram (from its IP header) for each service with raw sockets for ``proto``."""
        services = self.raw.get(proto)
        if not services:
            return False
        for svc in services:
            try:
                copy = self.pool.copy(skb)
            except NoBuffers:
                self.counters["RawInDrops"] += 1
                continue
            copy.network_header = copy.data_off
            self.rawbatch.setdefault((svc, ifc.ifindex), []).append(copy)
        return True

    # -- protocol registration ----------------------------------------------------
    def load_registrations(self) -> dict[str, tuple[list[int], list[int]]]:
        try:
            with open(os.path.join(self.rundir, PROTOCOLS_FILE), "rb") as f:
                saved = msgpack.unpackb(f.read(), raw=False)
            return {str(k): (list(v[0]), list(v[1])) for k, v in saved.items()}
        except (OSError, ValueError, TypeError, IndexError, msgpack.UnpackException):
            return {}

    def save_registrations(self) -> None:
        path = os.path.join(self.rundir, PROTOCOLS_FILE)
        with open(path + ".tmp", "wb") as f:
            f.write(msgpack.packb({k: [list(p), list(r)] for k, (p, r) in self.registrations.items()}))
        os.replace(path + ".tmp", path)

    def rebuild_protocols(self) -> None:
        self.protocols = {p: svc for svc, (protos, _) in self.registrations.items() for p in protos}
        self.raw = {}
        for svc, (_, raw) in self.registrations.items():
            for p in raw:
                self.raw.setdefault(p, []).append(svc)

    def register(self, token: int, service: str, protos: list, raw: list) -> None:
        """IP_REGISTER: ``service`` handles ``protos`` and wants raw copies of ``raw``."""
        if service not in self.cfg.services or service == self.name:
            self.counters["bad_messages"] += 1
            return
        err = 0
        if not all(type(p) is int and 0 < p < 256 for p in [*protos, *raw]):
            err = errno.EINVAL
        elif any(p == IPPROTO_ICMP or self.protocols.get(p, service) != service for p in protos):
            err = errno.EADDRINUSE                 # inet_add_protocol: one handler per number
        elif self.registrations.get(service) != (protos, raw):
            self.registrations[service] = (list(protos), list(raw))
            self.rebuild_protocols()
            self.save_registrations()
            self.counters["ProtoRegistrations"] += 1
        try:
            self.peer(service).send(encode(ANNOUNCE_ACK, IP_REGISTER, token, err), zmq.NOBLOCK)
        except zmq.Again:
            pass                                   # it repeats the announcement

    def reasm_results(self, results: list, ifc: Iface | None = None) -> None:
        for r in results:
            if isinstance(r, Discard):
                if r.reason == "duplicate":
                    self.counters["IpReasmDuplicates"] += 1
                else:
                    self.counters["IpReasmFails"] += 1
                    self.counters["IpReasmTimeout" if r.reason == "timeout" else "IpReasmDropped"] += 1
                if r.reason == "timeout" and r.first is not None:
                    self.icmp_send(r.first, ICMP_TIME_EXCEEDED, ICMP_EXC_FRAGTIME, ifc=None)
                for skb in r.items:
                    self.pool.free(skb)
            elif isinstance(r, Complete):
                self.reasm_complete(r)

    def reasm_complete(self, done: Complete) -> None:
        """Copy the fragments into one skb and deliver it as a whole datagram."""
        first = done.frags[0][1]
        hdr, _ = parse_ipv4(first.data)
        ifc = self.ifaces.get(first.dev) or next(iter(self.ifaces.values()))
        try:
            skb = self.pool.alloc(IPV4_HLEN + done.total)
        except NoBuffers:
            skb = None
        if skb is not None:
            payload = skb.put(IPV4_HLEN + done.total)
            for offset, frag in done.frags:
                _, fdata = parse_ipv4(frag.data)
                payload[IPV4_HLEN + offset:IPV4_HLEN + offset + len(fdata)] = fdata
            whole = Ipv4Header(src=hdr.src, dst=hdr.dst, proto=hdr.proto, total_len=IPV4_HLEN + done.total,
                               ttl=hdr.ttl, tos=hdr.tos, ident=hdr.ident)
            emit_ipv4(whole, payload)
            skb.dev = ifc.ifindex
        for _, frag in done.frags:
            self.pool.free(frag)
        if skb is None:
            self.counters["IpReasmFails"] += 1
            return
        self.counters["IpReasmOKs"] += 1
        self.ip_local_deliver(ifc, skb, whole)

    # -- ICMP -----------------------------------------------------------------
    def icmp_rcv(self, ifc: Iface, skb: Skb, hdr: Ipv4Header) -> None:
        self.counters["IcmpInMsgs"] += 1
        try:
            icmp, _ = parse_icmp(skb.data[hdr.hlen:])
        except WireError:
            self.counters["IcmpInErrors"] += 1
            self.pool.free(skb)
            return
        if icmp.type == ICMP_ECHO:
            self.counters["IcmpInEchos"] += 1
            if hdr.dst not in self.local_ifaces:   # icmp_echo_ignore_broadcasts = 1
                self.pool.free(skb)
                return
            self.icmp_echo_reply(skb, hdr, icmp)
            return
        if icmp.type == ICMP_ECHOREPLY:
            self.counters["IcmpInEchoReps"] += 1
        elif icmp.type in ICMP_ERRORS:
            self.counters["IcmpInDestUnreachs" if icmp.type == ICMP_DEST_UNREACH else "IcmpInOtherErrors"] += 1
            self.icmp_error_up(icmp, bytes(skb.data[hdr.hlen + ICMP_HLEN:]))
        self.pool.free(skb)

    def icmp_error_up(self, icmp: IcmpHeader, quoted: bytes) -> None:
        """Pass an ICMP error to the transport that sent the quoted datagram (RFC 1122 3.2.2)."""
        if len(quoted) < IPV4_HLEN + 8 or quoted[0] >> 4 != 4:
            self.counters["IcmpInErrors"] += 1
            return
        hlen = (quoted[0] & 0xF) * 4
        svc = self.protocols.get(quoted[9])
        if svc is None or len(quoted) < hlen + 8 or quoted[12:16] not in self.local_ifaces:
            return
        self.l4_err(svc, icmp.type, icmp.code, icmp.rest, quoted[:hlen + 8], "IcmpErrorsNotDelivered")

    def l4_err(self, svc: str, type_: int, code: int, rest: int, quoted: bytes, not_delivered: str) -> None:
        """Hand an ICMP or ICMPv6 error to the transport service ``svc`` (L4_ERR); counted if it cannot take it."""
        try:
            self.peer(svc).send(encode(L4_ERR, [[type_, code, rest, quoted]]), zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counters[not_delivered] += 1

    def icmp_error_batch(self, items: list) -> None:
        """Transports ask for ICMP errors (port unreachable) about datagrams they got."""
        for (_, type_, code), skb in self.skb_items(items, 3, 0):
            skb.reset_network_header()
            if skb.data[0] >> 4 == 6:
                self.icmp6_error_request(skb, type_, code)
            else:
                self.icmp_send(skb, type_, code, ifc=self.ifaces.get(skb.dev))
            self.pool.free(skb)

    def icmp_echo_reply(self, skb: Skb, hdr: Ipv4Header, icmp: IcmpHeader) -> None:
        """Turn the request into the reply in its own buffer (options dropped)."""
        if hdr.options:
            payload = bytes(skb.data[hdr.hlen + ICMP_HLEN:])
            skb.trim(0)
            skb.put(IPV4_HLEN + ICMP_HLEN)
            skb.put(len(payload))[:] = payload
        data = skb.data
        plen = len(data) - IPV4_HLEN - ICMP_HLEN
        emit_icmp(IcmpHeader(ICMP_ECHOREPLY, 0, icmp.rest), data, IPV4_HLEN, plen)
        self.counters["IcmpOutMsgs"] += 1
        self.counters["IcmpOutEchoReps"] += 1
        self.ip_send(skb, src=hdr.dst, dst=hdr.src, proto=IPPROTO_ICMP, tos=hdr.tos, header_room=True)

    def icmp_send(self, orig: Skb, type_: int, code: int, ifc: Iface | None, rest: int = 0) -> None:
        """Send an ICMP error about ``orig`` (whose data starts at its IP header).

        RFC 1122 3.2.2: never about an ICMP error, a non-first fragment, or a
        broadcast/multicast datagram; rate limited.
        """
        data = orig.data
        try:
            hdr, payload = parse_ipv4(data)
        except WireError:
            return
        if hdr.frag_off or hdr.dst[0] >= 224 or (ifc and hdr.dst == ifc.broadcast) or \
                (martian_source(hdr.src) and hdr.src not in self.local_ifaces):   # 127.0.0.1 on lo is ours
            return
        if hdr.proto == IPPROTO_ICMP and (len(payload) < 1 or payload[0] in ICMP_ERRORS):
            return
        if not self.icmp_limit.allow(self.now):
            self.counters["IcmpRateLimited"] += 1
            return
        quote = min(hdr.total_len, ICMP_QUOTE_MAX)
        try:
            skb = self.pool.alloc(IPV4_HLEN + ICMP_HLEN + quote)
        except NoBuffers:
            self.counters["IcmpOutErrors"] += 1
            return
        skb.put(IPV4_HLEN + ICMP_HLEN)
        skb.put(quote)[:] = data[:quote]
        emit_icmp(IcmpHeader(type_, code, rest), skb.data, IPV4_HLEN, quote)
        src = hdr.dst if hdr.dst in self.local_ifaces else (ifc.addr if ifc else None)
        if src is None:
            self.pool.free(skb)
            return
        self.counters["IcmpOutMsgs"] += 1
        self.counters["IcmpOutDestUnreachs" if type_ == ICMP_DEST_UNREACH else "IcmpOutOtherErrors"] += 1
        self.ip_send(skb, src=src, dst=hdr.src, proto=IPPROTO_ICMP, header_room=True)

    # -- IPv4 output ------------------------------------------------------------
    def raw_output_batch(self, items: list) -> None:
        """IP_HDRINCL datagrams (raw_send_hdrinc): the header is the caller's; ip
        fills in what is zero (source, id) and always the length and checksum."""
        for (_, daddr), skb in self.skb_items(items, 2, 0):
            data = skb.data
            hlen = (data[0] & 0xF) * 4 if len(data) else 0
            if len(data) < IPV4_HLEN or data[0] >> 4 != 4 or not IPV4_HLEN <= hlen <= len(data) or daddr >> 32:
                self.counters["RawOutErrors"] += 1
                self.pool.free(skb)
                continue
            dst = daddr.to_bytes(4, "big")
            route = self.fib.lookup(dst)
            if route is None:
                self.counters["IpOutNoRoutes"] += 1
                self.pool.free(skb)
                continue
            if data[12:16] == b"\0\0\0\0":
                data[12:16] = route.src
            if data[4:6] == b"\0\0":
                struct.pack_into("!H", data, 4, self.idents.reserve(bytes(data[12:16]), dst, data[9]))
            struct.pack_into("!H", data, 2, len(data))
            data[10:12] = b"\0\0"
            struct.pack_into("!H", data, 10, ~ones_sum(data[:hlen]) & 0xFFFF)
            try:
                hdr, _ = parse_ipv4(data)
            except WireError:
                self.counters["RawOutErrors"] += 1
                self.pool.free(skb)
                continue
            self.counters["IpOutRequests"] += 1
            self.counters["RawOutDatagrams"] += 1
            self.ip_local_out(skb, route, dst, hdr)

    def ip_output_batch(self, items: list) -> None:
        """Segments from a transport: [[handle, saddr, daddr, proto, tos, ttl, df], ...]; IPv6 ones
        have 16-byte addresses (saddr 0 still lets ip choose), tos is the traffic class, ttl the hop limit."""
        for (_, saddr, daddr, proto, tos, ttl, df), skb in self.skb_items(items, 7, 0, addrs=(1, 2)):
            try:
                if type(daddr) is bytes:
                    self.ip6_output(skb, saddr or b"", daddr, proto & 0xFF, tos & 0xFF, ttl & 0xFF)
                    continue
                src = saddr.to_bytes(4, "big") if saddr else b""
                self.ip_send(skb, src, daddr.to_bytes(4, "big"), proto & 0xFF, tos & 0xFF, ttl & 0xFF or DEFAULT_TTL,
                             df=df)
            except (OverflowError, ValueError) as exc:
                self.pool.free(skb)
                self.fault("output", exc)

    def ip_send(self, skb: Skb, src: bytes, dst: bytes, proto: int, tos: int = 0,
                ttl: int = DEFAULT_TTL, df: int = PMTUDISC_DONT, header_room: bool = False) -> None:
        """Route and send; the IP header is written in the first 20 bytes of the
        data (``header_room``) or pushed in front of it. An empty ``src`` takes
        the route's preferred source."""
        route = self.fib.lookup(dst)
        if route is None:
            self.counters["IpOutNoRoutes"] += 1
            self.pool.free(skb)
            return
        src = src or route.src
        mtu = self.ifaces[route.ifindex].mtu
        if skb.flags & CSUM_PARTIAL:
            local = dst in self.local_ifaces or route.ifindex == LOOPBACK_IFINDEX
            fits = len(skb) + (0 if header_room else IPV4_HLEN) <= mtu or skb.gso_size
            if local or (self.offload and fits):
                # the device (or, on lo, nobody) finishes it: leave the pseudo-header sum (CHECKSUM_PARTIAL)
                struct.pack_into("!H", skb.data, skb.csum_offset, pseudo_header_sum(src, dst, proto, len(skb)))
                if local:
                    skb.flags = skb.flags | CSUM_VALID
            else:
                self.finish_l4_csum(skb, src, dst, proto)
        if not header_room:
            skb.push(IPV4_HLEN)
        # a TSO segment becomes len/gso_size datagrams numbered on from its ID (over-reserving costs nothing)
        ident = self.idents.reserve(src, dst, proto, len(skb) // skb.gso_size + 1 if skb.gso_size else 1)
        hdr = Ipv4Header(src=src, dst=dst, proto=proto, total_len=len(skb), ttl=ttl, tos=tos, ident=ident,
                         df=df == PMTUDISC_DO or (df == PMTUDISC_WANT and len(skb) <= mtu) or bool(skb.gso_size))
        emit_ipv4(hdr, skb.data)
        self.counters["IpOutRequests"] += 1
        self.ip_local_out(skb, route, dst, hdr)

    def ip_local_out(self, skb: Skb, route: FibRoute, dst: bytes, hdr: Ipv4Header) -> None:
        """A datagram of ours, header written: the OUTPUT chain, then a device or lo."""
        if not self.nf_hook("OUTPUT", skb, None, self.ifaces[route.ifindex]):
            return
        if dst in self.local_ifaces or route.ifindex == LOOPBACK_IFINDEX:
            # to ourselves (all of 127/8 is lo's): loop back without touching a device
            skb.network_header = skb.data_off
            self.ip_local_deliver(self.lo, skb, hdr)
            return
        self.ip_finish_output(skb, route, dst)

    @staticmethod
    def finish_l4_csum(skb: Skb, src: bytes, dst: bytes, proto: int) -> None:
        """Complete a transport checksum left partial (the CHECKSUM_PARTIAL contract); 16-byte
        addresses take IPv6's pseudo-header."""
        data = skb.data
        off = skb.csum_offset
        data[off:off + 2] = b"\0\0"
        pseudo = pseudo_header_sum6 if len(src) == 16 else pseudo_header_sum
        csum = ~ones_sum(data, pseudo(src, dst, proto, len(data))) & 0xFFFF
        struct.pack_into("!H", data, off, csum or 0xFFFF)   # RFC 768: a computed 0 is sent as all ones
        skb.flags = skb.flags & ~CSUM_PARTIAL

    def ip_finish_output(self, skb: Skb, route: FibRoute, dst: bytes) -> None:
        ifc = self.ifaces[route.ifindex]
        if not self.nf_hook("POSTROUTING", skb, None, ifc):
            return
        if len(skb) > ifc.mtu and not skb.gso_size:     # a TSO segment is cut by the device, not here
            self.ip_fragment(skb, route, dst, ifc.mtu)
            return
        self.ip_neigh_output(skb, route, dst)

    def ip_fragment(self, skb: Skb, route: FibRoute, dst: bytes, mtu: int) -> None:
        """Split a datagram whose header is at skb.data into MTU-sized fragments (RFC 791)."""
        hdr, payload = parse_ipv4(skb.data)
        if hdr.df:
            self.counters["IpFragFails"] += 1
            self.pool.free(skb)
            return
        step = (mtu - hdr.hlen) & ~7
        frags = []
        for off in range(0, len(payload), step):
            chunk = payload[off:off + step]
            try:
                f = self.pool.alloc(hdr.hlen + len(chunk))
            except NoBuffers:
                for g in frags:
                    self.pool.free(g)
                self.counters["IpFragFails"] += 1
                self.pool.free(skb)
                return
            buf = f.put(hdr.hlen + len(chunk))
            buf[hdr.hlen:] = chunk
            emit_ipv4(Ipv4Header(src=hdr.src, dst=hdr.dst, proto=hdr.proto, total_len=len(buf), ttl=hdr.ttl,
                                 tos=hdr.tos, ident=hdr.ident, mf=off + step < len(payload) or hdr.mf,
                                 frag_off=hdr.frag_off + off, options=hdr.options), buf)
            frags.append(f)
        self.pool.free(skb)
        self.counters["IpFragOKs"] += 1
        self.counters["IpFragCreates"] += len(frags)
        for f in frags:
            self.ip_neigh_output(f, route, dst)

    def ip_neigh_output(self, skb: Skb, route: FibRoute, dst: bytes) -> None:
        ifc = self.ifaces[route.ifindex]
        skb.network_header = skb.data_off
        mac, actions = self.neigh.resolve(ifc.ifindex, route.next_hop(dst), skb, self.now)
        if mac is not None:
            self.neigh_output(ifc, skb, mac)
        if actions:
            self.neigh_actions(actions)

    def neigh_output(self, ifc: Iface, skb: Skb, mac: bytes) -> None:
        self.xmit_frame(ifc, skb, mac, ETH_P_IP)

    def xmit_frame(self, ifc: Iface, skb: Skb, dst_mac: bytes, ethertype: int) -> None:
        emit_eth(EthHeader(dst_mac, ifc.mac, ethertype), skb.push(ETH_HLEN))
        skb.mac_header = skb.data_off
        self.txbatch.setdefault(ifc.ifindex, []).append(skb)

    # -- introspection ----------------------------------------------------------
    def stats(self) -> dict:
        out = super().stats()
        out["IpForwarding"] = 1 if self.cfg.forwarding else 2   # RFC 4293: 1 forwarding, 2 not
        out["IpDefaultTTL"] = DEFAULT_TTL
        return out

    def on_control(self, code: int, fields: tuple) -> object:
        if code == CTL_FILTER:
            return self.filter_control(fields.op, fields.args)
        if code == CTL_ADDR:
            return self.ip_change_addr(*fields)
        result = super().on_control(code, fields)
        if code == CTL_ROUTE:
            save_routes(self.fib, self.cfg, self.rundir)   # the others read it when they restart
        return result

    def ip_change_addr(self, op: str, text: str, dev: str) -> dict:
        """addr add|del: a further address on a device (the config's own stays)."""
        iface, d = check_addr(self.cfg, text, dev)
        ifc, packed = self.ifaces[d.ifindex], iface.ip.packed
        if op == "add":
            if packed in self.local_ifaces:
                raise OSError(errno.EEXIST, f"{iface.ip} is already an address of mkstack")
            self.local_ifaces[packed] = ifc
            self.extra.append((iface, dev))
            add_connected(self.fib, iface, d)
        elif op == "del":
            if (iface, dev) not in self.extra:
                if packed == ifc.addr:
                    raise OSError(errno.EPERM, f"{iface} is {dev}'s configured address; change it in the config")
                raise OSError(errno.EADDRNOTAVAIL, f"{iface} is not an address of {dev}")
            self.extra.remove((iface, dev))
            del self.local_ifaces[packed]
            drop_connected(self.fib, iface, d)
        else:
            raise OSError(errno.EINVAL, f"unknown addr operation {op!r}")
        save_addrs(self.extra, self.rundir)
        return {"addr": str(iface), "dev": dev}

    def show(self, what: str) -> object:
        if what == "neigh":
            return [{"ip": ip_ntoa(e.ip) if len(e.ip) == 4 else ip6_ntoa(e.ip), "dev": self.ifaces[e.ifindex].name,
                     "mac": mac_ntoa(e.mac) if e.mac else None, "state": e.state.value,
                     "queued": len(e.queue)} for table in (self.neigh, self.neigh6) for e in table.entries.values()]
        if what == "routes":
            return [{"dst": f"{ipaddress.IPv4Address(r.dst)}/{r.plen}", "dev": self.ifaces[r.ifindex].name,
                     "via": ip_ntoa(r.gateway) if r.gateway else None, "src": ip_ntoa(r.src),
                     "metric": r.metric} for r in self.fib.routes()] + [
                {"dst": f"{ipaddress.IPv6Address(r.dst)}/{r.plen}", "dev": self.ifaces[r.ifindex].name,
                 "via": ip6_ntoa(r.gateway) if r.gateway else None, "src": None, "metric": r.metric}
                for r in self.fib6.routes()]
        if what == "protocols":
            return {"handlers": {str(p): svc for p, svc in sorted(self.protocols.items())},
                    "raw": {str(p): svcs for p, svcs in sorted(self.raw.items())}}
        if what == "addrs":
            return ([{"dev": i.name, "addr": f"{ip_ntoa(i.addr)}/{i.net.prefixlen}"} for i in self.ifaces.values()]
                    + [{"dev": dev, "addr": str(iface)} for iface, dev in self.extra])
        return super().show(what)


if __name__ == "__main__":
    main(Ip)
