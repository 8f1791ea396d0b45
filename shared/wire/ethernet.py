"""Ethernet II framing (IEEE 802.3 / RFC 894).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                  destination MAC (6 bytes)                    |
    +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                               |  source MAC (6 bytes)         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |          ethertype            |  payload ...
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.wire import WireError

ETH_HLEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6

_HDR = struct.Struct("!6s6sH")


@dataclass(slots=True)
class EthHeader:
    dst: bytes
    src: bytes
    ethertype: int


def parse_eth(buf: memoryview | bytes) -> tuple[EthHeader, memoryview]:
    if len(buf) < ETH_HLEN:
        raise WireError(f"[ETH] frame of {len(buf)} bytes is shorter than the header")
    dst, src, ethertype = _HDR.unpack_from(buf, 0)
    if ethertype < 0x0600:
        raise WireError(f"[ETH] 802.3 length field {ethertype:#06x} is not supported")
    return EthHeader(dst, src, ethertype), memoryview(buf)[ETH_HLEN:]


def emit_eth(hdr: EthHeader, buf: bytearray | memoryview, offset: int = 0) -> int:
    _HDR.pack_into(buf, offset, hdr.dst, hdr.src, hdr.ethertype)
    return ETH_HLEN


def mac_aton(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def mac_ntoa(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)
