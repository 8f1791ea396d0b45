"""IPv6, its extension headers, ICMPv6 and Neighbor Discovery against frames the Linux
kernel sent; RFC 8200's rules for unknown options and headers; garbage never gets
past a WireError."""

import random
import struct

import pytest

from shared.wire import WireError
from shared.wire.checksum import checksum, pseudo_header_sum6
from shared.wire.icmpv6 import (ICMPV6_DEST_UNREACH, ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, ND_NEIGHBOR_ADVERT,
                                ND_NEIGHBOR_SOLICIT, ND_OPT_SOURCE_LL, ND_ROUTER_SOLICIT, UNREACH_PORT,
                                Icmp6Header, emit_icmpv6, emit_neighbor_advert, emit_neighbor_solicit, nd_option,
                                parse_icmpv6, parse_nd)
from shared.wire.ipv6 import (IPV6_HLEN, NEXTHDR_DEST, NEXTHDR_FRAGMENT, NEXTHDR_HOP, NEXTHDR_ICMPV6,
                              NEXTHDR_ROUTING, NEXTHDR_UDP, OPT_ROUTER_ALERT, PARAMPROB_HEADER, PARAMPROB_NEXTHDR,
                              PARAMPROB_OPTION, FragmentHeader, Ipv6Header, ParameterProblem, emit_fragment_header,
                              emit_ipv6, ip6_aton, ip6_ntoa, addr_text, link_local_from_mac, multicast_mac, parse_ipv6,
                              solicited_node, walk_extensions)
from tests.unit.wire import golden6 as G

A, B = ip6_aton("fd66::1"), ip6_aton("fd66::2")
MAC_A, MAC_B = bytes.fromhex("026d6b000001"), bytes.fromhex("026d6b000002")


def ip_of(frame: bytes):
    assert frame[12:14] == b"\x86\xdd"
    return parse_ipv6(frame[14:])


def test_the_kernels_echo_request_and_our_reply_to_it():
    hdr, payload = ip_of(G.ECHO6_REQUEST)
    assert (hdr.src, hdr.dst, hdr.next_header, hdr.hop_limit, hdr.payload_len) == (A, B, NEXTHDR_ICMPV6, 64, 16)
    assert hdr.flow == 0x80A00
    icmp, body = parse_icmpv6(hdr.src, hdr.dst, payload)
    assert (icmp.type, icmp.code, icmp.rest) == (ICMPV6_ECHO_REQUEST, 0, 0x7361 << 16 | 1)    # id, seq
    assert bytes(body) == bytes(range(8))
    # the reply the kernel sent, byte for byte, from the same fields
    rhdr, rpayload = ip_of(G.ECHO6_REPLY)
    msg = emit_icmpv6(B, A, Icmp6Header(ICMPV6_ECHO_REPLY, 0, icmp.rest), body)
    assert msg == bytes(rpayload)
    out = bytearray(IPV6_HLEN)
    emit_ipv6(Ipv6Header(B, A, NEXTHDR_ICMPV6, len(msg), 64, 0, rhdr.flow), out)
    assert bytes(out) + msg == G.ECHO6_REPLY[14:]


def test_a_bad_checksum_truncation_or_version_is_refused():
    hdr, payload = ip_of(G.ECHO6_REQUEST)
    bad = bytearray(payload)
    bad[-1] ^= 1
    with pytest.raises(WireError, match="checksum"):
        parse_icmpv6(hdr.src, hdr.dst, bad)
    with pytest.raises(WireError, match="payload length"):
        parse_ipv6(G.ECHO6_REQUEST[14:-1])
    v4 = bytearray(G.ECHO6_REQUEST[14:])
    v4[0] = 0x45
    with pytest.raises(WireError, match="version"):
        parse_ipv6(v4)
    with pytest.raises(WireError, match="shorter"):
        parse_ipv6(G.ECHO6_REQUEST[14:40])


def test_neighbor_solicitation_and_advertisement_as_the_kernel_sends_them():
    hdr, payload = ip_of(G.NS)
    assert hdr.dst == solicited_node(B) and G.NS[:6] == multicast_mac(hdr.dst)
    icmp, body = parse_icmpv6(hdr.src, hdr.dst, payload)
    ns = parse_nd(hdr, icmp, body)
    assert (ns.type, ns.target, ns.source_ll) == (ND_NEIGHBOR_SOLICIT, B, MAC_A)
    assert emit_neighbor_solicit(A, hdr.dst, B, MAC_A) == bytes(payload)
    hdr, payload = ip_of(G.NA)
    icmp, body = parse_icmpv6(hdr.src, hdr.dst, payload)
    na = parse_nd(hdr, icmp, body)
    assert (na.type, na.target, na.target_ll, na.solicited, na.override, na.router) == \
        (ND_NEIGHBOR_ADVERT, B, MAC_B, True, True, False)
    assert emit_neighbor_advert(B, A, B, MAC_B, solicited=True) == bytes(payload)


def test_duplicate_address_detection_and_router_solicitation():
    hdr, payload = ip_of(G.NS_DAD)
    assert hdr.src == bytes(16)
    ns = parse_nd(hdr, *parse_icmpv6(hdr.src, hdr.dst, payload))
    assert ns.target == link_local_from_mac(MAC_B) and ns.source_ll is None
    assert [t for t, _ in ns.options] == [14]                  # the nonce of RFC 7527, kept as it came
    hdr, payload = ip_of(G.RS)
    rs = parse_nd(hdr, *parse_icmpv6(hdr.src, hdr.dst, payload))
    assert (rs.type, rs.source_ll) == (ND_ROUTER_SOLICIT, MAC_A) and hdr.src == link_local_from_mac(MAC_A)


def test_nd_validity_checks_of_rfc_4861():
    hdr, payload = ip_of(G.NS)
    icmp, body = parse_icmpv6(hdr.src, hdr.dst, payload)
    hdr.hop_limit = 254
    with pytest.raises(WireError, match="hop limit"):
        parse_nd(hdr, icmp, body)
    hdr.hop_limit = 255
    with pytest.raises(WireError, match="multicast target"):
        parse_nd(hdr, icmp, solicited_node(B) + bytes(body[16:]))
    with pytest.raises(WireError, match="bad length"):
        parse_nd(hdr, icmp, bytes(body[:16]) + b"\x01\x00" + bytes(6))
    unspecified = Ipv6Header(bytes(16), hdr.dst, NEXTHDR_ICMPV6, 32, 255)
    with pytest.raises(WireError, match="from ::"):
        parse_nd(unspecified, icmp, bytes(body[:16]) + nd_option(ND_OPT_SOURCE_LL, MAC_A))
    na_hdr, na_payload = ip_of(G.NA)
    na_icmp, na_body = parse_icmpv6(na_hdr.src, na_hdr.dst, na_payload)
    na_hdr.dst = ip6_aton("ff02::1")
    with pytest.raises(WireError, match="solicited advertisement to a multicast"):
        parse_nd(na_hdr, na_icmp, na_body)


def test_hop_by_hop_router_alert_of_an_mld_report():
    hdr, payload = ip_of(G.MLD2_REPORT_HBH)
    chain = walk_extensions(hdr, payload)
    assert (hdr.next_header, chain.upper, chain.upper_off) == (NEXTHDR_HOP, NEXTHDR_ICMPV6, 8)
    assert chain.hop_options == [(OPT_ROUTER_ALERT, b"\x00\x00")]
    icmp, _ = parse_icmpv6(hdr.src, hdr.dst, payload[chain.upper_off:])
    assert icmp.type == 143                                     # MLDv2 report


def test_fragments_of_the_kernels_3000_byte_ping():
    firsts = []
    for frame in (G.FRAG_1, G.FRAG_2, G.FRAG_3):
        hdr, payload = ip_of(frame)
        chain = walk_extensions(hdr, payload)
        assert hdr.next_header == NEXTHDR_FRAGMENT and chain.upper == NEXTHDR_ICMPV6
        firsts.append((chain.fragment.offset, chain.fragment.more, len(payload) - chain.upper_off))
        assert chain.fragment.ident == 0xA0BCC390
    assert firsts == [(0, True, 1448), (1448, True, 1448), (2896, False, 112)]
    out = bytearray(8)
    emit_fragment_header(FragmentHeader(NEXTHDR_ICMPV6, 1448, True, 0xA0BCC390), out)
    assert bytes(out) == ip_of(G.FRAG_2)[1][:8].tobytes()


def test_udp_checksum_over_the_ipv6_pseudo_header_and_the_port_unreachable_it_got():
    hdr, payload = ip_of(G.UDP6)
    assert hdr.next_header == NEXTHDR_UDP and bytes(payload[8:]) == b"hello"
    # veth passes the kernel's CHECKSUM_PARTIAL on: the field holds the pseudo-header sum it seeded
    partial = pseudo_header_sum6(hdr.src, hdr.dst, NEXTHDR_UDP, len(payload))
    assert struct.unpack_from("!H", payload, 6)[0] == partial
    seg = bytearray(payload)
    seg[6:8] = b"\0\0"
    full = checksum(seg, partial)
    seg[6:8] = full.to_bytes(2, "big")
    assert checksum(seg, partial) == 0                            # and the finished one verifies
    ehdr, epayload = ip_of(G.PORT_UNREACH6)
    icmp, body = parse_icmpv6(ehdr.src, ehdr.dst, epayload)
    assert (icmp.type, icmp.code) == (ICMPV6_DEST_UNREACH, UNREACH_PORT)
    assert bytes(body) == G.UDP6[14:]                            # the whole datagram quoted


def _with_ext(nxt_first: int, ext: bytes, upper: int = NEXTHDR_UDP, dst: bytes = B) -> tuple:
    hdr = Ipv6Header(A, dst, nxt_first, len(ext) + 8)
    return hdr, ext + bytes(8)


def test_unknown_options_act_as_their_high_bits_say():
    def dest_opts(otype: int) -> bytes:
        return bytes((NEXTHDR_UDP, 0, otype, 2, 0, 0, 1, 0))       # the option, then PadN of 0 bytes' data
    hdr, payload = _with_ext(NEXTHDR_DEST, dest_opts(0x1E))     # 00: skip it
    assert walk_extensions(hdr, payload).dest_options == [(0x1E, b"\0\0")]
    for otype, silent in ((0x5E, True), (0x9E, False), (0xDE, False)):
        hdr, payload = _with_ext(NEXTHDR_DEST, dest_opts(otype))
        with pytest.raises(ParameterProblem) as e:
            walk_extensions(hdr, payload)
        assert (e.value.code, e.value.pointer, e.value.silent) == (PARAMPROB_OPTION, 42, silent)
    hdr, payload = _with_ext(NEXTHDR_DEST, dest_opts(0xDE), dst=ip6_aton("ff02::1"))
    with pytest.raises(ParameterProblem) as e:                   # 11 to a multicast address: no ICMP
        walk_extensions(hdr, payload)
    assert e.value.silent


def test_headers_rfc_8200_refuses():
    # hop-by-hop anywhere but first
    ext = bytes((NEXTHDR_HOP, 0, 1, 4, 0, 0, 0, 0)) + bytes((NEXTHDR_UDP, 0, 1, 4, 0, 0, 0, 0))
    hdr, payload = _with_ext(NEXTHDR_DEST, ext)
    with pytest.raises(ParameterProblem) as e:
        walk_extensions(hdr, payload)
    assert (e.value.code, e.value.pointer) == (PARAMPROB_NEXTHDR, 40)
    # a routing header with segments left (we route nothing through ourselves)
    hdr, payload = _with_ext(NEXTHDR_ROUTING, bytes((NEXTHDR_UDP, 0, 4, 1, 0, 0, 0, 0)))
    with pytest.raises(ParameterProblem) as e:
        walk_extensions(hdr, payload)
    assert (e.value.code, e.value.pointer) == (PARAMPROB_HEADER, 42)
    # with none left it is skipped
    hdr, payload = _with_ext(NEXTHDR_ROUTING, bytes((NEXTHDR_UDP, 0, 4, 0, 0, 0, 0, 0)))
    chain = walk_extensions(hdr, payload)
    assert (chain.upper, chain.upper_off, chain.upper_ptr) == (NEXTHDR_UDP, 8, 40)
    # an option running past its header
    hdr, payload = _with_ext(NEXTHDR_DEST, bytes((NEXTHDR_UDP, 0, 1, 9, 0, 0, 0, 0)))
    with pytest.raises(WireError, match="runs past"):
        walk_extensions(hdr, payload)


def test_addresses():
    assert ip6_ntoa(link_local_from_mac(MAC_B)) == "fe80::6d:6bff:fe00:2"
    assert ip6_ntoa(solicited_node(ip6_aton("fd66::1234:5678"))) == "ff02::1:ff34:5678"
    assert multicast_mac(ip6_aton("ff02::1")).hex() == "333300000001"
    assert addr_text(0x0A420002) == "10.66.0.2" and addr_text(0) == "0.0.0.0"
    assert addr_text(ip6_aton("fd66::2")) == "fd66::2"
    with pytest.raises(ValueError):
        ip6_aton("10.0.0.1")


def test_garbage_gets_a_wire_error_and_nothing_else():
    rng = random.Random(6)
    frames = [G.ECHO6_REQUEST, G.NS, G.NA, G.MLD2_REPORT_HBH, G.FRAG_2, G.UDP6, G.RS, G.NS_DAD]
    for i in range(10000):
        f = bytearray(rng.choice(frames)[14:])
        for _ in range(rng.randint(1, 6)):
            f[rng.randrange(len(f))] = rng.randrange(256)
        if rng.random() < 0.3:
            f = f[:rng.randrange(len(f) + 1)]
        try:
            hdr, payload = parse_ipv6(f)
            chain = walk_extensions(hdr, payload)
            if chain.upper == NEXTHDR_ICMPV6 and chain.fragment is None:
                icmp, body = parse_icmpv6(hdr.src, hdr.dst, payload[chain.upper_off:])
                if 133 <= icmp.type <= 136:
                    parse_nd(hdr, icmp, body)
        except WireError:
            pass


def test_garbage_behind_a_good_checksum_gets_a_wire_error_from_parse_nd():
    """Mutations that keep the checksum right, so the ND checks themselves see them."""
    rng = random.Random(61)
    counts = {"ok": 0, "refused": 0}
    for i in range(5000):
        hdr, payload = ip_of(rng.choice([G.NS, G.NA, G.RS, G.NS_DAD]))
        msg = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            msg[rng.randrange(len(msg))] = rng.randrange(256)
        if rng.random() < 0.3:
            msg = msg[:rng.randrange(4, len(msg) + 1)]
        msg[2:4] = b"\0\0"
        msg[2:4] = checksum(msg, pseudo_header_sum6(hdr.src, hdr.dst, NEXTHDR_ICMPV6, len(msg))).to_bytes(2, "big")
        try:
            icmp, body = parse_icmpv6(hdr.src, hdr.dst, msg)
            parse_nd(hdr, icmp, body)
            counts["ok"] += 1
        except WireError:
            counts["refused"] += 1
    assert counts["ok"] > 100 and counts["refused"] > 1000, counts
