"""ICMPv6 (RFC 4443) and Neighbor Discovery's messages and options (RFC 4861).

The checksum covers the IPv6 pseudo-header (RFC 8200 8.1), so parsing and
emitting take the packet's source and destination. ``parse_nd`` applies the
validity checks of RFC 4861 (6.1.1 for router messages, 7.1.1 and 7.1.2 for
neighbor messages): a message that fails them is a WireError, to be dropped.

     0                   1                   2                   3
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     Type      |     Code      |          Checksum             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  Message Body (first word: ``rest``)          |
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from shared.wire import WireError
from shared.wire.checksum import checksum, ones_sum, pseudo_header_sum6
from shared.wire.ipv6 import NEXTHDR_ICMPV6, Ipv6Header, is_link_local, is_multicast, solicited_node

ICMPV6_HLEN = 8
ICMPV6_DEST_UNREACH, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, ICMPV6_PARAMPROB = 1, 2, 3, 4
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
ND_ROUTER_SOLICIT, ND_ROUTER_ADVERT, ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT, ND_REDIRECT = 133, 134, 135, 136, 137
# Destination Unreachable codes (RFC 4443 3.1)
ICMPV6_NOROUTE, ICMPV6_ADM_PROHIBITED, ICMPV6_NOT_NEIGHBOUR, ICMPV6_ADDR_UNREACH, ICMPV6_PORT_UNREACH = 0, 1, 2, 3, 4
ICMPV6_ERRORS = frozenset((ICMPV6_DEST_UNREACH, ICMPV6_PKT_TOOBIG, ICMPV6_TIME_EXCEED, ICMPV6_PARAMPROB))
# Destination Unreachable codes (RFC 4443 3.1)
UNREACH_NOROUTE, UNREACH_ADMIN, UNREACH_ADDR, UNREACH_PORT = 0, 1, 3, 4
# ND option types (RFC 4861 4.6)
ND_OPT_SOURCE_LL, ND_OPT_TARGET_LL, ND_OPT_PREFIX_INFO, ND_OPT_REDIRECTED, ND_OPT_MTU = 1, 2, 3, 4, 5
NA_ROUTER, NA_SOLICITED, NA_OVERRIDE = 0x80000000, 0x40000000, 0x20000000
ND_HOP_LIMIT = 255
ERROR_QUOTE_MAX = 1280 - 40 - ICMPV6_HLEN     # an error quotes as much as fits the minimum MTU

_HDR = struct.Struct("!BBHI")


@dataclass(slots=True)
class Icmp6Header:
    type: int
    code: int
    rest: int = 0               # the body's first 32 bits: id/seq, MTU, pointer, ND flags


def icmp6_checksum(src: bytes, dst: bytes, msg: bytes | bytearray | memoryview) -> int:
    return checksum(msg, pseudo_header_sum6(src, dst, NEXTHDR_ICMPV6, len(msg)))


def parse_icmpv6(src: bytes, dst: bytes, buf: memoryview | bytes) -> tuple[Icmp6Header, memoryview]:
    """Check (length, checksum) and parse; the body is what follows the first 8 bytes."""
    if len(buf) < ICMPV6_HLEN:
        raise WireError(f"[ICMPv6] message of {len(buf)} bytes")
    if ones_sum(buf, pseudo_header_sum6(src, dst, NEXTHDR_ICMPV6, len(buf))) != 0xFFFF:
        raise WireError("[ICMPv6] bad checksum")
    t, code, _csum, rest = _HDR.unpack_from(buf, 0)
    return Icmp6Header(t, code, rest), memoryview(buf)[ICMPV6_HLEN:]


def emit_icmpv6(src: bytes, dst: bytes, hdr: Icmp6Header, body: bytes | bytearray | memoryview = b"") -> bytes:
    """The whole message, checksum filled in."""
    msg = bytearray(_HDR.pack(hdr.type, hdr.code, 0, hdr.rest)) + body
    struct.pack_into("!H", msg, 2, icmp6_checksum(src, dst, msg))
    return bytes(msg)


# -- Neighbor Discovery ---------------------------------------------------------------------
@dataclass(slots=True)
class PrefixInfo:
    prefix: bytes
    plen: int
    on_link: bool
    autonomous: bool
    valid: int                  # seconds (0xFFFFFFFF: infinity)
    preferred: int


@dataclass(slots=True)
class NdMessage:
    """A Router Solicitation/Advertisement or Neighbor Solicitation/Advertisement,
    its fields by name (those that do not apply stay at their defaults)."""
    type: int
    target: bytes = b""                       # NS, NA
    router: bool = False                      # NA
    solicited: bool = False                   # NA
    override: bool = False                    # NA
    cur_hop_limit: int = 0                    # RA
    managed: bool = False                     # RA
    other: bool = False                       # RA
    router_lifetime: int = 0                  # RA, seconds
    reachable_time: int = 0                   # RA, ms
    retrans_timer: int = 0                    # RA, ms
    source_ll: bytes | None = None            # option 1
    target_ll: bytes | None = None            # option 2
    mtu: int | None = None                    # option 5
    prefixes: list[PrefixInfo] = field(default_factory=list)   # option 3
    options: list[tuple[int, bytes]] = field(default_factory=list)   # every option, as (type, its bytes)


def parse_nd_options(buf: memoryview | bytes) -> list[tuple[int, bytes]]:
    """(type, data after the type and length bytes) of each option; a zero length
    makes the whole message invalid (RFC 4861 4.6)."""
    out, i, n = [], 0, len(buf)
    while i < n:
        if n - i < 2 or buf[i + 1] == 0 or i + 8 * buf[i + 1] > n:
            raise WireError(f"[NDP] option at {i} has a bad length")
        out.append((buf[i], bytes(buf[i + 2:i + 8 * buf[i + 1]])))
        i += 8 * buf[i + 1]
    return out


def parse_nd(ip: Ipv6Header, icmp: Icmp6Header, body: memoryview | bytes) -> NdMessage:
    """An ND message (types 133-136) after RFC 4861's validity checks."""
    if ip.hop_limit != ND_HOP_LIMIT:
        raise WireError(f"[NDP] hop limit {ip.hop_limit}: not from this link")
    if icmp.code != 0:
        raise WireError(f"[NDP] code {icmp.code}")
    t = icmp.type
    fixed = {ND_ROUTER_SOLICIT: 0, ND_ROUTER_ADVERT: 8, ND_NEIGHBOR_SOLICIT: 16, ND_NEIGHBOR_ADVERT: 16}.get(t)
    if fixed is None:
        raise WireError(f"[NDP] type {t} is not a router or neighbor message")
    if len(body) < fixed:
        raise WireError(f"[NDP] type {t} of {ICMPV6_HLEN + len(body)} bytes")
    m = NdMessage(t)
    unspecified = ip.src == bytes(16)
    if t == ND_ROUTER_ADVERT:
        if not is_link_local(ip.src):
            raise WireError("[NDP] router advertisement from a non-link-local address")
        m.cur_hop_limit, flags, m.router_lifetime = icmp.rest >> 24, (icmp.rest >> 16) & 0xFF, icmp.rest & 0xFFFF
        m.managed, m.other = bool(flags & 0x80), bool(flags & 0x40)
        m.reachable_time, m.retrans_timer = struct.unpack_from("!II", body, 0)
    elif t in (ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT):
        m.target = bytes(body[:16])
        if is_multicast(m.target):
            raise WireError("[NDP] multicast target")
        if t == ND_NEIGHBOR_ADVERT:
            m.router, m.solicited = bool(icmp.rest & NA_ROUTER), bool(icmp.rest & NA_SOLICITED)
            m.override = bool(icmp.rest & NA_OVERRIDE)
            if m.solicited and is_multicast(ip.dst):
                raise WireError("[NDP] solicited advertisement to a multicast address")
        elif unspecified and ip.dst != solicited_node(m.target):
            raise WireError("[NDP] solicitation from :: not to the target's solicited-node group")
    m.options = parse_nd_options(body[fixed:])
    for otype, data in m.options:
        if otype == ND_OPT_SOURCE_LL and len(data) >= 6:
            m.source_ll = data[:6]
        elif otype == ND_OPT_TARGET_LL and len(data) >= 6:
            m.target_ll = data[:6]
        elif otype == ND_OPT_MTU and len(data) == 6:
            m.mtu = struct.unpack_from("!I", data, 2)[0]
        elif otype == ND_OPT_PREFIX_INFO and len(data) == 30:
            plen, flags, valid, preferred = struct.unpack_from("!BBII", data, 0)
            m.prefixes.append(PrefixInfo(data[14:30], plen, bool(flags & 0x80), bool(flags & 0x40), valid, preferred))
    if unspecified and m.source_ll is not None and t in (ND_ROUTER_SOLICIT, ND_NEIGHBOR_SOLICIT):
        raise WireError("[NDP] source link-layer address option from ::")
    return m


def nd_option(otype: int, data: bytes) -> bytes:
    """One option, padded to a multiple of 8 bytes."""
    n = -(-(len(data) + 2) // 8)
    return bytes((otype, n)) + data + bytes(8 * n - 2 - len(data))


def emit_neighbor_solicit(src: bytes, dst: bytes, target: bytes, source_ll: bytes | None) -> bytes:
    opts = nd_option(ND_OPT_SOURCE_LL, source_ll) if source_ll is not None else b""
    return emit_icmpv6(src, dst, Icmp6Header(ND_NEIGHBOR_SOLICIT, 0, 0), bytes(target) + opts)


def emit_neighbor_advert(src: bytes, dst: bytes, target: bytes, target_ll: bytes | None, *, router: bool = False,
                         solicited: bool = False, override: bool = True) -> bytes:
    flags = (NA_ROUTER if router else 0) | (NA_SOLICITED if solicited else 0) | (NA_OVERRIDE if override else 0)
    opts = nd_option(ND_OPT_TARGET_LL, target_ll) if target_ll is not None else b""
    return emit_icmpv6(src, dst, Icmp6Header(ND_NEIGHBOR_ADVERT, 0, flags), bytes(target) + opts)
