"""IPv6 header and extension headers (RFC 8200), with the receive rules of its section 4.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Version| Traffic Class |           Flow Label                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Payload Length        |  Next Header  |   Hop Limit   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Source Address (128 bits)                     |
    |              Destination Address (128 bits)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

``walk_extensions`` follows the chain of extension headers to the upper-layer
header. What RFC 8200 says to answer with an ICMPv6 Parameter Problem is raised
as ``ParameterProblem`` with its code and pointer (an offset from the start of
the IPv6 header), or marked ``silent`` where the packet is only discarded; an
upper-layer protocol nobody handles is the caller's to judge (code 1, pointing
at ``ExtChain.upper_ptr``). Not parsed here: the packet is not for us (routing
headers with segments left are refused, as Linux does without a router).

Address helpers (RFC 4291): solicited-node groups, multicast MACs (RFC 2464),
link-local addresses from a MAC (modified EUI-64).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from shared.wire import WireError
from shared.wire.ipv4 import ip_ntoa

IPV6_HLEN = 40
IPV6_MIN_MTU = 1280
DEFAULT_HOP_LIMIT = 64          # net.ipv6.conf.*.hop_limit
NEXTHDR_HOP = 0
NEXTHDR_TCP = 6
NEXTHDR_UDP = 17
NEXTHDR_ROUTING = 43
NEXTHDR_FRAGMENT = 44
NEXTHDR_ICMPV6 = 58
NEXTHDR_NONE = 59
NEXTHDR_DEST = 60
EXTENSION_HEADERS = frozenset((NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT, NEXTHDR_DEST))
MAX_EXT_HEADERS = 16            # more than any legitimate packet carries (Linux bounds options too)
# ICMPv6 Parameter Problem codes (RFC 4443 3.4)
PARAMPROB_HEADER, PARAMPROB_NEXTHDR, PARAMPROB_OPTION = 0, 1, 2
OPT_PAD1, OPT_PADN, OPT_ROUTER_ALERT = 0, 1, 5

_HDR = struct.Struct("!IHBB16s16s")


@dataclass(slots=True)
class Ipv6Header:
    src: bytes
    dst: bytes
    next_header: int
    payload_len: int
    hop_limit: int = DEFAULT_HOP_LIMIT
    tclass: int = 0
    flow: int = 0


@dataclass(slots=True)
class FragmentHeader:
    next_header: int
    offset: int                 # in bytes (a multiple of 8)
    more: bool
    ident: int


@dataclass(slots=True)
class ExtChain:
    """Where the extension headers lead: the upper-layer protocol (NEXTHDR_NONE for none)
    at ``upper_off`` in the payload, and what the headers on the way said."""
    upper: int
    upper_off: int
    upper_ptr: int              # offset (from the IPv6 header) of the next-header field naming ``upper``
    hop_options: list[tuple[int, bytes]] = field(default_factory=list)
    dest_options: list[tuple[int, bytes]] = field(default_factory=list)
    fragment: FragmentHeader | None = None
    fragment_off: int = -1      # where the fragment header starts in the payload


class ParameterProblem(WireError):
    """RFC 8200 says: discard, and (unless ``silent``) send Parameter Problem ``code`` with
    ``pointer``, the offset of the offending byte from the start of the IPv6 header."""

    def __init__(self, text: str, code: int, pointer: int, silent: bool = False) -> None:
        super().__init__(f"[IPv6] {text}")
        self.code, self.pointer, self.silent = code, pointer, silent


def parse_ipv6(buf: memoryview | bytes) -> tuple[Ipv6Header, memoryview]:
    """Check and parse; the payload is trimmed to the header's payload length."""
    n = len(buf)
    if n < IPV6_HLEN:
        raise WireError(f"[IPv6] packet of {n} bytes is shorter than the header")
    vtf, plen, nxt, hops, src, dst = _HDR.unpack_from(buf, 0)
    if vtf >> 28 != 6:
        raise WireError(f"[IPv6] version {vtf >> 28}")
    if plen > n - IPV6_HLEN:
        raise WireError(f"[IPv6] payload length {plen} in a {n}-byte packet")
    if plen == 0 and nxt == NEXTHDR_HOP:
        raise WireError("[IPv6] jumbograms are not supported")       # RFC 2675: never on Ethernet
    if src[0] == 0xFF:
        raise WireError("[IPv6] multicast source address")           # RFC 4291 2.7
    hdr = Ipv6Header(src=src, dst=dst, next_header=nxt, payload_len=plen, hop_limit=hops,
                     tclass=(vtf >> 20) & 0xFF, flow=vtf & 0xFFFFF)
    return hdr, memoryview(buf)[IPV6_HLEN:IPV6_HLEN + plen]


def emit_ipv6(hdr: Ipv6Header, buf: bytearray | memoryview, offset: int = 0) -> int:
    """Write the header at ``offset``; returns its length."""
    _HDR.pack_into(buf, offset, (6 << 28) | (hdr.tclass << 20) | hdr.flow, hdr.payload_len, hdr.next_header,
                   hdr.hop_limit, hdr.src, hdr.dst)
    return IPV6_HLEN


def walk_extensions(hdr: Ipv6Header, payload: memoryview | bytes) -> ExtChain:
    """Follow the extension headers (RFC 8200 4.1's order is recommended, not required,
    except that hop-by-hop comes first); raises ParameterProblem or WireError."""
    nxt, off, ptr = hdr.next_header, 0, 6        # ptr: the next-header field naming ``nxt``
    chain = ExtChain(upper=nxt, upper_off=0, upper_ptr=ptr)
    n = len(payload)
    for count in range(MAX_EXT_HEADERS + 1):
        if nxt not in EXTENSION_HEADERS:
            chain.upper, chain.upper_off, chain.upper_ptr = nxt, off, ptr
            return chain
        if count == MAX_EXT_HEADERS:
            break
        if nxt == NEXTHDR_HOP and off != 0:
            raise ParameterProblem("hop-by-hop options after the first header", PARAMPROB_NEXTHDR, ptr)
        if n - off < 8:
            raise WireError(f"[IPv6] extension header {nxt} truncated at {off}")
        if nxt == NEXTHDR_FRAGMENT:
            following, _, offm, ident = struct.unpack_from("!BBHI", payload, off)
            if chain.fragment is not None:
                raise WireError("[IPv6] two fragment headers")
            chain.fragment = FragmentHeader(following, offm & 0xFFF8, bool(offm & 1), ident)
            chain.fragment_off = off
            if chain.fragment.offset:         # not the first: what follows is the middle of the data
                chain.upper, chain.upper_off, chain.upper_ptr = following, off + 8, IPV6_HLEN + off
                return chain
            length = 8
        else:
            following, hlen = payload[off], payload[off + 1]
            length = (hlen + 1) * 8
            if off + length > n:
                raise WireError(f"[IPv6] extension header {nxt} of {length} bytes at {off} runs past the packet")
            if nxt == NEXTHDR_ROUTING:
                rtype, segments_left = payload[off + 2], payload[off + 3]
                if segments_left:
                    # RFC 8200 4.4: an unrecognized type with segments left is a Parameter Problem;
                    # we forward nothing, so every type is one we do not process
                    raise ParameterProblem(f"routing header type {rtype} with {segments_left} segments left",
                                           PARAMPROB_HEADER, IPV6_HLEN + off + 2)
            else:
                opts = _options(hdr, payload, off, length)
                (chain.hop_options if nxt == NEXTHDR_HOP else chain.dest_options).extend(opts)
        ptr = IPV6_HLEN + off                 # the next-header field of the header just read
        nxt, off = following, off + length
    raise WireError(f"[IPv6] more than {MAX_EXT_HEADERS} extension headers")


def _options(hdr: Ipv6Header, payload: memoryview | bytes, off: int, length: int) -> list[tuple[int, bytes]]:
    """The TLV options of a hop-by-hop or destination options header (RFC 8200 4.2):
    (type, data) of each that is not padding; an unknown one acts as its type's two
    high-order bits say."""
    out = []
    i, end = off + 2, off + length
    while i < end:
        otype = payload[i]
        if otype == OPT_PAD1:
            i += 1
            continue
        if i + 2 > end or i + 2 + payload[i + 1] > end:
            raise WireError(f"[IPv6] option {otype} runs past its header")
        olen = payload[i + 1]
        if otype not in (OPT_PADN, OPT_ROUTER_ALERT):
            action = otype >> 6
            if action == 1:
                raise ParameterProblem(f"unrecognized option {otype}", PARAMPROB_OPTION, IPV6_HLEN + i, silent=True)
            if action == 2 or (action == 3 and hdr.dst[0] != 0xFF):
                raise ParameterProblem(f"unrecognized option {otype}", PARAMPROB_OPTION, IPV6_HLEN + i)
            if action == 3:
                raise ParameterProblem(f"unrecognized option {otype}", PARAMPROB_OPTION, IPV6_HLEN + i, silent=True)
        if otype != OPT_PADN:
            out.append((otype, bytes(payload[i + 2:i + 2 + olen])))
        i += 2 + olen
    return out


def emit_fragment_header(frag: FragmentHeader, buf: bytearray | memoryview, offset: int = 0) -> int:
    if frag.offset % 8:
        raise ValueError("IPv6 fragment offset must be a multiple of 8")
    struct.pack_into("!BBHI", buf, offset, frag.next_header, 0, frag.offset | int(frag.more), frag.ident)
    return 8


# -- addresses --------------------------------------------------------------------------
def ip6_aton(text: str) -> bytes:
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise ValueError(f"not an IPv6 address: {text!r}") from None


def ip6_ntoa(addr: bytes) -> str:
    return str(ipaddress.IPv6Address(bytes(addr)))


def addr_text(addr: int | bytes) -> str:
    """An address as the transports hold it, as text: an IPv4 one is an int, an IPv6 one 16 bytes."""
    return ip6_ntoa(addr) if type(addr) is bytes else ip_ntoa(addr.to_bytes(4, "big"))


def is_multicast(addr: bytes) -> bool:
    return addr[0] == 0xFF


def is_link_local(addr: bytes) -> bool:
    return addr[0] == 0xFE and addr[1] & 0xC0 == 0x80


def solicited_node(addr: bytes) -> bytes:
    """ff02::1:ffXX:XXXX, the group a Neighbor Solicitation for ``addr`` goes to (RFC 4291 2.7.1)."""
    return bytes.fromhex("ff0200000000000000000001ff") + bytes(addr[13:16])


def multicast_mac(group: bytes) -> bytes:
    """33:33 and the group's last 32 bits (RFC 2464 7)."""
    return b"\x33\x33" + bytes(group[12:16])


def link_local_from_mac(mac: bytes) -> bytes:
    """fe80::/64 with the modified EUI-64 interface id of ``mac`` (RFC 4291 appendix A)."""
    return b"\xfe\x80" + bytes(6) + bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))
