"""IPv6 in the ip service: ipv6_rcv, ICMPv6 and Neighbor Discovery (RFC 8200, 4443, 4861).

Why in the ip process and not an ip6 one beside it: both families share the
devices, the link to netdev and the skb batch per turn, and Linux keeps them
in one stack too; the code stands apart here, mixed into Ip, with its own
neighbour cache (the same NUD engine as ARP's, keyed by 16-byte addresses).

What works: a device with ``addr6`` has that address and a link-local one from
its MAC (modified EUI-64), and listens on ff02::1 and the solicited-node groups
of both. Received packets are checked (header, extension chain with RFC 8200's
Parameter Problems); echo requests are answered; Neighbor Solicitations for
our addresses are answered (the sender's link-layer address learned, as RFC
4861 7.2.3), advertisements complete our own resolutions; replies go out once
the neighbour is resolved (solicitations to the solicited-node group, retried
as ARP is). Fragments are reassembled with IPv4's limits (the same Reassembler,
up to 65,535 bytes of payload; headers before the fragment header are not kept
in the whole packet) and what we send is fragmented to the device's MTU.
UDP and TCP go up to their services (L4_RCV, the skb's network header at the
IPv6 header) and come down as IP_OUTPUT items with 16-byte addresses; ip
chooses the source and next hop (route6: the link, or a configured route),
leaves the checksum (and TSO) to the TAP or finishes it for fragments, and
loops our own addresses and ::1 back through lo. ICMPv6 errors about what we
sent go to the sender's transport (L4_ERR), udp's port unreachable becomes
ICMPv6's, and raw ICMPv6 sockets get copies (RAW_DELIVER). DAD is optimistic
(RFC 4429): addresses are used while their probe is out. Not done yet,
refused or counted, never faked: other upper layers get Parameter Problem
"unrecognized next header", destinations without a route are unroutable
(Ip6OutNoRoutes), Packet Too Big does not lower a path MTU, router discovery
is not run, and datagrams to multicast groups reach no socket (Ip6InDiscards).
"""

from __future__ import annotations

import random
import struct

from services.routes import LOOPBACK_IFINDEX, Iface, fib6_from_config, local_addrs6, route6
from shared.proto.neigh import Evicted, Overflow, Solicit, Unresolved
from shared.proto.reassembly import Complete, Reassembler
from shared.skb import CSUM_PARTIAL, CSUM_VALID, NoBuffers, Skb
from shared.wire import WireError
from shared.wire.checksum import pseudo_header_sum6
from shared.wire.ethernet import ETH_P_IPV6, mac_ntoa
from shared.wire.icmp import ICMP_DEST_UNREACH, ICMP_PORT_UNREACH
from shared.wire.icmpv6 import (ERROR_QUOTE_MAX, ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST,
                                ICMPV6_ERRORS, ICMPV6_PARAMPROB, ICMPV6_PORT_UNREACH, ICMPV6_TIME_EXCEED,
                                ND_NEIGHBOR_ADVERT, ND_NEIGHBOR_SOLICIT, ND_ROUTER_ADVERT, ND_ROUTER_SOLICIT,
                                Icmp6Header, NdMessage, emit_icmpv6, emit_neighbor_advert, emit_neighbor_solicit,
                                parse_icmpv6, parse_nd)
from shared.wire.ipv6 import (DEFAULT_HOP_LIMIT, IPV6_HLEN, NEXTHDR_FRAGMENT, NEXTHDR_ICMPV6, NEXTHDR_NONE,
                              PARAMPROB_HEADER, PARAMPROB_NEXTHDR, ExtChain, FragmentHeader, Ipv6Header,
                              ParameterProblem, emit_fragment_header, emit_ipv6, ip6_ntoa, is_link_local,
                              is_multicast, multicast_mac, parse_ipv6, solicited_node, walk_extensions)
from shared.wire.ipv4 import IPPROTO_TCP, IPPROTO_UDP

# the upper layers whose services take IPv6
TRANSPORTS6 = frozenset((IPPROTO_UDP, IPPROTO_TCP))
ALL_NODES = bytes.fromhex("ff020000000000000000000000000001")
DAD_WAIT = 1.0            # RetransTimer: how long an address stays optimistic after its DAD probe (RFC 4862)
ND_HOP_LIMIT = 255


class Ip6:
    """Mixed into Ip."""

    def ip6_init(self) -> None:
        # ifindex -> multicast groups joined; a device is in it if IPv6 is on there (lo always: ::1)
        self.groups6: dict[int, set[bytes]] = {LOOPBACK_IFINDEX: set()}
        self.local6 = local_addrs6(self.cfg)            # our addresses -> ifindex (route6 reads it too)
        self.fib6 = fib6_from_config(self.cfg)
        for addr, ifindex in self.local6.items():
            if ifindex != LOOPBACK_IFINDEX:
                self.groups6.setdefault(ifindex, {ALL_NODES}).add(solicited_node(addr))
        self.neigh6 = self.new_neigh_table()
        # the same limits as IPv4's (net.ipv6.ip6frag_* default to them), a payload of up to 65,535 bytes
        self.reasm6 = Reassembler(timeout=self.cfg.ipfrag_time, high_thresh=self.cfg.ipfrag_high_thresh,
                                  max_payload=0xFFFF)
        self.frag_ids6 = random.getrandbits(32)
        # Duplicate Address Detection, optimistic (RFC 4429): an address is used at once, and given up
        # if another node answers its probe (or probes for it) before DAD_WAIT has passed
        self.tentative6: dict[bytes, float] = {}
        self.dad_due = set(self.local6.values()) - {LOOPBACK_IFINDEX}     # probed at once

    # -- receive ------------------------------------------------------------------
    def ip6_rcv(self, ifc: Iface, skb: Skb, reassembled: bool = False) -> None:
        c = self.counters
        if not reassembled:                              # its fragments were counted as they came
            c["Ip6InReceives"] += 1
        if ifc.ifindex not in self.groups6:              # IPv6 is off on this device
            c["Ip6InDiscards"] += 1
            self.pool.free(skb)
            return
        try:
            hdr, payload = parse_ipv6(skb.data)
        except WireError:
            c["Ip6InHdrErrors"] += 1
            self.pool.free(skb)
            return
        ours = self.local6.get(hdr.dst)
        # on lo, any of ours: what we send ourselves loops back there
        if (ours is None or ours != ifc.ifindex and ifc is not self.lo) and hdr.dst not in self.groups6[ifc.ifindex]:
            c["Ip6InAddrErrors"] += 1                    # not for us, and we forward no IPv6
            self.pool.free(skb)
            return
        if is_multicast(hdr.dst):
            c["Ip6InMcastPkts"] += 1
        try:
            chain = walk_extensions(hdr, payload)
        except ParameterProblem as pp:
            c["Ip6InHdrErrors"] += 1
            if not pp.silent:
                self.icmp6_error(ifc, skb, hdr, ICMPV6_PARAMPROB, pp.code, pp.pointer)
            self.pool.free(skb)
            return
        except WireError:
            c["Ip6InHdrErrors"] += 1
            self.pool.free(skb)
            return
        if chain.fragment is not None:
            self.ip6_defrag(ifc, skb, hdr, payload, chain)
            return
        if chain.upper == NEXTHDR_ICMPV6:
            c["Ip6InDelivers"] += 1
            if NEXTHDR_ICMPV6 in self.raw:
                self.raw6_deliver(ifc, skb, hdr, chain)
            self.icmp6_rcv(ifc, skb, hdr, payload[chain.upper_off:])
        elif chain.upper == NEXTHDR_NONE:
            self.pool.free(skb)
        elif chain.upper in TRANSPORTS6 and chain.upper in self.protocols:
            if is_multicast(hdr.dst):                    # no socket joins a group yet
                c["Ip6InDiscards"] += 1
                self.pool.free(skb)
                return
            c["Ip6InDelivers"] += 1
            skb.trim(IPV6_HLEN + hdr.payload_len)        # past it: the link's padding
            skb.network_header = skb.data_off
            skb.pull(IPV6_HLEN + chain.upper_off)
            skb.transport_header = skb.data_off
            skb.dev = ifc.ifindex
            self.l4batch.setdefault((self.protocols[chain.upper], ifc.ifindex), []).append(skb)
        else:
            c["Ip6InUnknownProtos"] += 1
            self.icmp6_error(ifc, skb, hdr, ICMPV6_PARAMPROB, PARAMPROB_NEXTHDR, chain.upper_ptr)
            self.pool.free(skb)

    # -- fragments (RFC 8200 4.5) ------------------------------------------------------
    def ip6_defrag(self, ifc: Iface, skb: Skb, hdr: Ipv6Header, payload: memoryview, chain: ExtChain) -> None:
        """Queue a fragment; a complete datagram is rebuilt as one packet (the IPv6
        header, then what followed the fragment header) and received again."""
        c = self.counters
        c["Ip6ReasmReqds"] += 1
        frag = chain.fragment
        start = chain.fragment_off + 8                   # the fragmentable part, in the payload
        length = len(payload) - start
        if frag.more and (length % 8 or length == 0):
            c["Ip6InHdrErrors"] += 1                     # 4.5: payload length not a multiple of 8
            self.icmp6_error(ifc, skb, hdr, ICMPV6_PARAMPROB, PARAMPROB_HEADER, 4)
            self.pool.free(skb)
            return
        if frag.offset + length > 0xFFFF:
            c["Ip6InHdrErrors"] += 1                     # 4.5: it would end past 65,535 bytes
            self.icmp6_error(ifc, skb, hdr, ICMPV6_PARAMPROB, PARAMPROB_HEADER, IPV6_HLEN + chain.fragment_off + 2)
            self.pool.free(skb)
            return
        key = ("ip6", hdr.src, hdr.dst, frag.ident)
        skb.dev = ifc.ifindex
        item = (skb, IPV6_HLEN + start, frag.next_header)
        self.reasm6_results(self.reasm6.add(key, frag.offset, length, frag.more, item, self.now, cost=skb.end))

    def reasm6_results(self, results: list) -> None:
        for r in results:
            if isinstance(r, Complete):
                self.reasm6_complete(r)
                continue
            if r.reason == "duplicate":
                self.counters["Ip6ReasmDuplicates"] += 1
            else:
                self.counters["Ip6ReasmFails"] += 1
                self.counters["Ip6ReasmTimeout" if r.reason == "timeout" else "Ip6ReasmDropped"] += 1
            if r.reason == "timeout" and r.first is not None:     # 4.5: only if the first one came
                first = r.first[0]
                ifc = self.ifaces.get(first.dev)
                try:
                    fhdr, _ = parse_ipv6(first.data)
                except WireError:
                    fhdr = None
                if ifc is not None and fhdr is not None:
                    self.icmp6_error(ifc, first, fhdr, ICMPV6_TIME_EXCEED, 1, 0)
            for skb, _, _ in r.items:
                self.pool.free(skb)

    def reasm6_complete(self, done: Complete) -> None:
        first, _, nxt = done.frags[0][1]
        hdr, _ = parse_ipv6(first.data)
        ifc = self.ifaces.get(first.dev)
        try:
            skb = self.pool.alloc(IPV6_HLEN + done.total)
        except NoBuffers:
            skb = None
        if skb is not None and ifc is not None:
            out = skb.put(IPV6_HLEN + done.total)
            emit_ipv6(Ipv6Header(hdr.src, hdr.dst, nxt, done.total, hdr.hop_limit, hdr.tclass, hdr.flow), out)
            for offset, (frag, start, _) in done.frags:
                data = frag.data[start:]
                out[IPV6_HLEN + offset:IPV6_HLEN + offset + len(data)] = data
        for _, (frag, _, _) in done.frags:
            self.pool.free(frag)
        if skb is None or ifc is None:
            self.counters["Ip6ReasmFails"] += 1
            if skb is not None:
                self.pool.free(skb)
            return
        self.counters["Ip6ReasmOKs"] += 1
        self.ip6_rcv(ifc, skb, reassembled=True)

    def raw6_deliver(self, ifc: Iface, skb: Skb, hdr: Ipv6Header, chain: ExtChain) -> None:
        """A copy of an ICMPv6 message for each service with raw ICMPv6 sockets (RAW_DELIVER):
        network header at the IPv6 header, data at the message, as raw(7) IPv6 sockets read it."""
        for svc in self.raw[NEXTHDR_ICMPV6]:
            try:
                copy = self.pool.copy(skb)
            except NoBuffers:
                self.counters["RawInDrops"] += 1
                continue
            copy.trim(IPV6_HLEN + hdr.payload_len)
            copy.network_header = copy.data_off
            copy.pull(IPV6_HLEN + chain.upper_off)
            self.rawbatch.setdefault((svc, ifc.ifindex), []).append(copy)

    def icmp6_rcv(self, ifc: Iface, skb: Skb, hdr: Ipv6Header, msg: memoryview) -> None:
        c = self.counters
        c["Icmp6InMsgs"] += 1
        try:
            icmp, body = parse_icmpv6(hdr.src, hdr.dst, msg)
        except WireError:
            c["Icmp6InErrors"] += 1
            self.pool.free(skb)
            return
        t = icmp.type
        c[f"Icmp6InType{t}"] += 1
        if t == ICMPV6_ECHO_REQUEST:
            self.icmp6_echo_reply(ifc, hdr, icmp, body)
        elif t in ICMPV6_ERRORS:
            self.icmp6_notify(icmp, body)
        elif t in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT, ND_ROUTER_SOLICIT, ND_ROUTER_ADVERT):
            try:
                nd = parse_nd(hdr, icmp, body)
            except WireError:
                c["Icmp6InErrors"] += 1
                nd = None
            if nd is not None and t == ND_NEIGHBOR_SOLICIT:
                self.ndisc_rcv_ns(ifc, hdr, nd)
            elif nd is not None and t == ND_NEIGHBOR_ADVERT:
                self.ndisc_rcv_na(ifc, hdr, nd)
            # router messages: we are not a router, and router discovery is not run yet
        self.pool.free(skb)

    def icmp6_echo_reply(self, ifc: Iface, hdr: Ipv6Header, icmp: Icmp6Header, body: memoryview) -> None:
        src = hdr.dst if not is_multicast(hdr.dst) else self.src6_for(ifc, hdr.src)
        msg = emit_icmpv6(src, hdr.src, Icmp6Header(ICMPV6_ECHO_REPLY, 0, icmp.rest), body)
        self.counters["Icmp6OutMsgs"] += 1
        self.counters["Icmp6OutType129"] += 1
        self.ip6_send(ifc, src, hdr.src, msg)

    def icmp6_notify(self, icmp: Icmp6Header, quoted: memoryview) -> None:
        """An error about a datagram we sent goes to the transport that sent it (icmpv6_notify);
        the quote must start with our IPv6 header and reach the ports (no extension headers
        are walked: ours carry none but a fragment header, and only first fragments are quoted)."""
        if len(quoted) < IPV6_HLEN + 8 or quoted[0] >> 4 != 6 or bytes(quoted[8:24]) not in self.local6:
            self.counters["Icmp6ErrorsNotDelivered"] += 1
            return
        svc = self.protocols.get(quoted[6]) if quoted[6] in TRANSPORTS6 else None
        if svc is not None:
            self.l4_err(svc, icmp.type, icmp.code, icmp.rest, bytes(quoted[:IPV6_HLEN + 8]), "Icmp6ErrorsNotDelivered")

    # -- Neighbor Discovery ------------------------------------------------------------
    def ndisc_rcv_ns(self, ifc: Iface, hdr: Ipv6Header, ns: NdMessage) -> None:
        if self.local6.get(ns.target) != ifc.ifindex:
            return
        if hdr.src == bytes(16) and ns.target in self.tentative6:
            self.dad_failed(ns.target, "another node probes for it too")   # RFC 4862 5.4.3: both give up
            return
        if hdr.src == bytes(16):                        # someone's duplicate address detection: ours is taken
            msg = emit_neighbor_advert(ns.target, ALL_NODES, ns.target, ifc.mac)
            self.ip6_send(ifc, ns.target, ALL_NODES, msg, hop_limit=ND_HOP_LIMIT)
            return
        if ns.source_ll is not None:
            self.neigh6_learn(ifc, hdr.src, ns.source_ll)
        msg = emit_neighbor_advert(ns.target, hdr.src, ns.target, ifc.mac, solicited=True)
        self.counters["Icmp6OutNeighborAdvertisements"] += 1
        self.ip6_send(ifc, ns.target, hdr.src, msg, hop_limit=ND_HOP_LIMIT)

    def ndisc_rcv_na(self, ifc: Iface, hdr: Ipv6Header, na: NdMessage) -> None:
        if na.target in self.local6 and na.target_ll != ifc.mac:
            who = mac_ntoa(na.target_ll) if na.target_ll is not None else "a node"
            if na.target in self.tentative6:           # RFC 4862 5.4.4: our probe was answered
                self.dad_failed(na.target, f"{who} advertises it")
            else:
                self.counters["Ip6AddrConflicts"] += 1
                self.log.warning("%s: %s advertises our address %s", ifc.name, who, ip6_ntoa(na.target))
            return
        if na.target_ll is not None:
            self.neigh6_learn(ifc, na.target, na.target_ll, create=False)

    def neigh6_learn(self, ifc: Iface, addr: bytes, mac: bytes, create: bool = True) -> None:
        for waiting in self.neigh6.update(ifc.ifindex, addr, mac, self.now, create=create):
            self.xmit6(ifc, waiting, mac)
        if self.neigh6.evicted:
            self.neigh6_actions(self.neigh6.evicted)
            self.neigh6.evicted = []

    def neigh6_actions(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, Solicit):
                ifc = self.ifaces.get(a.ifindex)
                if ifc is not None:
                    self.ndisc_solicit(ifc, a.ip, a.mac)
            elif isinstance(a, Unresolved):
                self.counters["Ndisc6ResolveFailed"] += 1
                for skb in a.items:
                    self.pool.free(skb)
            elif isinstance(a, (Overflow, Evicted)):
                self.counters["Ndisc6UnresQueueDrops"] += 1 if isinstance(a, Overflow) else len(a.items)
                for skb in ([a.item] if isinstance(a, Overflow) else a.items):
                    self.pool.free(skb)

    def ndisc_solicit(self, ifc: Iface, target: bytes, mac: bytes | None) -> None:
        """A Neighbor Solicitation: to the target's solicited-node group, or (re-confirming
        a stale entry) to its known address."""
        src = self.src6_for(ifc, target)
        dst = solicited_node(target) if mac is None else target
        msg = emit_neighbor_solicit(src, dst, target, ifc.mac)
        self.counters["Icmp6OutNeighborSolicits"] += 1
        self.ip6_send(ifc, src, dst, msg, hop_limit=ND_HOP_LIMIT, mac=mac or multicast_mac(dst))

    def dad_start(self, ifc: Iface) -> None:
        """Probe for each of our addresses on ``ifc`` (at start and when its carrier comes back):
        a solicitation from :: to the address's solicited-node group, no link-layer option."""
        for addr, ifindex in self.local6.items():
            if ifindex == ifc.ifindex:
                self.tentative6[addr] = self.now + DAD_WAIT
                msg = emit_neighbor_solicit(bytes(16), solicited_node(addr), addr, None)
                self.counters["Ip6DadProbes"] += 1
                self.ip6_send(ifc, bytes(16), solicited_node(addr), msg, hop_limit=ND_HOP_LIMIT)

    def dad_at(self) -> float | None:
        """When DAD has something to do: probes due now, or the end of an address's wait."""
        if self.dad_due:
            return 0.0
        return min(self.tentative6.values()) if self.tentative6 else None

    def dad_poll(self) -> None:
        for ifindex in self.dad_due:
            self.dad_start(self.ifaces[ifindex])
        self.dad_due = set()
        self.tentative6 = {a: t for a, t in self.tentative6.items() if t > self.now}

    def dad_failed(self, addr: bytes, why: str) -> None:
        """Another node has ``addr``: stop using it (until a restart of ip probes again)."""
        ifindex = self.local6.pop(addr)
        self.tentative6.pop(addr, None)
        if not any(i == ifindex and solicited_node(o) == solicited_node(addr) for o, i in self.local6.items()):
            self.groups6[ifindex].discard(solicited_node(addr))
        self.counters["Ip6DadFailures"] += 1
        self.log.error("%s: duplicate address %s (%s): not used", self.ifaces[ifindex].name, ip6_ntoa(addr), why)

    def src6_for(self, ifc: Iface, dst: bytes) -> bytes:
        """Our address on ``ifc`` for talking to ``dst``: in its /64 if we have one there,
        else the link-local one (RFC 6724's scope rule, reduced to a link)."""
        link_local = None
        for addr, ifindex in self.local6.items():
            if ifindex == ifc.ifindex:
                if addr[:8] == dst[:8]:
                    return addr
                if is_link_local(addr):
                    link_local = addr
        return link_local or next(addr for addr, ifindex in self.local6.items() if ifindex == ifc.ifindex)

    # -- output -------------------------------------------------------------------------
    def ip6_output(self, skb: Skb, src: bytes, dst: bytes, nh: int, tclass: int, hop_limit: int) -> None:
        """A datagram from a transport (IP_OUTPUT with a 16-byte destination): route it, choose
        the source if ``src`` is empty, finish a partial checksum, send (ip6_xmit)."""
        route = route6(self.local6, dst, self.fib6) if len(dst) == 16 else None
        if route is None or src and src not in self.local6:
            self.counters["Ip6OutRequests"] += 1
            self.counters["Ip6OutNoRoutes" if route is None else "Ip6OutDiscards"] += 1
            self.pool.free(skb)
            return
        ifc = self.ifaces[route[0]]
        src = src or route[1]
        hop = route[2]
        if skb.flags & CSUM_PARTIAL:
            if ifc is self.lo and nh in TRANSPORTS6 or ifc is not self.lo and self.offload and (
                    IPV6_HLEN + len(skb) <= ifc.mtu or skb.gso_size):
                # the TAP finishes it (and cuts a TSO segment), or on lo nobody (udp and tcp take
                # CSUM_VALID; ICMPv6 checks its own): the pseudo-header sum
                struct.pack_into("!H", skb.data, skb.csum_offset, pseudo_header_sum6(src, dst, nh, len(skb)))
                if ifc is self.lo:
                    skb.flags = skb.flags | CSUM_VALID
            else:
                self.finish_l4_csum(skb, src, dst, nh)        # fragments: whole, here
        self.ip6_xmit(ifc, skb, src, dst, nh, hop_limit or DEFAULT_HOP_LIMIT, tclass, hop=hop)

    def ip6_send(self, ifc: Iface, src: bytes, dst: bytes, msg: bytes, hop_limit: int = DEFAULT_HOP_LIMIT,
                 mac: bytes | None = None) -> None:
        """An ICMPv6 message of ours out of ``ifc`` to a neighbour on the link (or a group; to
        ourselves, on lo)."""
        route = route6(self.local6, dst, self.fib6)
        if route is not None and route[0] == LOOPBACK_IFINDEX:
            ifc = self.lo
        elif route is None:
            self.counters["Ip6OutRequests"] += 1
            self.counters["Ip6OutNoRoutes"] += 1
            return
        try:
            skb = self.pool.alloc(len(msg))
        except NoBuffers:
            self.counters["Ip6OutRequests"] += 1
            self.counters["Ip6OutDiscards"] += 1
            return
        skb.put(len(msg))[:] = msg
        self.ip6_xmit(ifc, skb, src, dst, NEXTHDR_ICMPV6, hop_limit, mac=mac, hop=route[2])

    def ip6_xmit(self, ifc: Iface, skb: Skb, src: bytes, dst: bytes, nh: int, hop_limit: int, tclass: int = 0,
                 mac: bytes | None = None, hop: bytes | None = None) -> None:
        """Push the IPv6 header in front of the upper-layer message in ``skb`` and send it: looped
        back on lo, else in fragments if it does not fit the device's MTU (RFC 8200 4.5), to
        ``mac`` or to the neighbour resolved for the next hop (``dst`` itself if on the link)."""
        self.counters["Ip6OutRequests"] += 1
        if IPV6_HLEN + len(skb) <= ifc.mtu or skb.gso_size:       # a TSO segment is cut by the device
            emit_ipv6(Ipv6Header(src, dst, nh, len(skb), hop_limit, tclass), skb.push(IPV6_HLEN))
            frames = [skb]
        else:
            frames = self.ip6_fragment(skb, src, dst, nh, hop_limit, tclass, ifc.mtu)
        if mac is None and is_multicast(dst):
            mac = multicast_mac(dst)
        for f in frames:
            f.network_header = f.data_off
            if ifc is self.lo:
                self.ip6_rcv(ifc, f)
            elif mac is not None:
                self.xmit6(ifc, f, mac)
            else:
                known, actions = self.neigh6.resolve(ifc.ifindex, hop or dst, f, self.now)
                if known is not None:
                    self.xmit6(ifc, f, known)
                if actions:
                    self.neigh6_actions(actions)

    def ip6_fragment(self, skb: Skb, src: bytes, dst: bytes, nh: int, hop_limit: int, tclass: int,
                     mtu: int) -> list[Skb]:
        """The message in ``skb`` as fragments, each with its IPv6 and fragment headers: 8-byte
        multiples of what fits (none if the buffers run out: the datagram is lost)."""
        self.frag_ids6 = (self.frag_ids6 + 1) & 0xFFFFFFFF
        size = (mtu - IPV6_HLEN - 8) & ~7
        msg = skb.data
        frames: list[Skb] = []
        for off in range(0, len(msg), size):
            data = msg[off:off + size]
            try:
                f = self.pool.alloc(IPV6_HLEN + 8 + len(data))
            except NoBuffers:
                for g in frames:
                    self.pool.free(g)
                self.pool.free(skb)
                self.counters["Ip6FragFails"] += 1
                return []
            out = f.put(IPV6_HLEN + 8 + len(data))
            emit_ipv6(Ipv6Header(src, dst, NEXTHDR_FRAGMENT, 8 + len(data), hop_limit, tclass), out)
            emit_fragment_header(FragmentHeader(nh, off, off + size < len(msg), self.frag_ids6), out, IPV6_HLEN)
            out[IPV6_HLEN + 8:] = data
            frames.append(f)
        self.pool.free(skb)
        self.counters["Ip6FragOKs"] += 1
        self.counters["Ip6FragCreates"] += len(frames)
        return frames

    def xmit6(self, ifc: Iface, skb: Skb, mac: bytes) -> None:
        self.xmit_frame(ifc, skb, mac, ETH_P_IPV6)

    def icmp6_error_request(self, skb: Skb, type_: int, code: int) -> None:
        """A transport asks for an error about a datagram it got (data at its IPv6 header):
        ICMP's port unreachable is ICMPv6's (RFC 4443 3.1, code 4); no other is asked for."""
        if (type_, code) != (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH):
            self.counters["Icmp6OutErrorsRefused"] += 1
            return
        try:
            hdr, _ = parse_ipv6(skb.data)
        except WireError:
            return
        ifc = self.ifaces.get(skb.dev)
        if ifc is not None:
            self.icmp6_error(ifc, skb, hdr, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0)

    def icmp6_error(self, ifc: Iface, orig: Skb, hdr: Ipv6Header, type_: int, code: int, rest: int) -> None:
        """An ICMPv6 error about ``orig`` (RFC 4443 2.4: not about an error message, nor
        about a packet to a multicast group except Parameter Problem code 2; rate limited)."""
        if is_multicast(hdr.dst) and not (type_ == ICMPV6_PARAMPROB and code == 2) or hdr.src == bytes(16) \
                or is_multicast(hdr.src):
            return
        data = bytes(orig.data[:ERROR_QUOTE_MAX])           # as much as fits the minimum MTU
        if hdr.next_header == NEXTHDR_ICMPV6 and len(data) > IPV6_HLEN and data[IPV6_HLEN] in ICMPV6_ERRORS:
            return
        if not self.icmp_limit.allow(self.now):
            self.counters["Icmp6RateLimited"] += 1
            return
        src = hdr.dst if not is_multicast(hdr.dst) else self.src6_for(ifc, hdr.src)
        msg = emit_icmpv6(src, hdr.src, Icmp6Header(type_, code, rest), data)
        self.counters["Icmp6OutMsgs"] += 1
        self.counters["Icmp6OutErrors"] += 1
        self.ip6_send(ifc, src, hdr.src, msg)

