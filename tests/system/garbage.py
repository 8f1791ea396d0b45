"""Sends malformed frames into a TAP from the kernel side (run inside the peer namespace).

usage: garbage.py DEV DST_MAC COUNT SEED [v6]   — prints how many frames of each kind were sent;
with v6, malformed IPv6, ICMPv6, Neighbor Discovery and UDP frames to fd66::2 (configs/ipv6.toml) instead.
"""

import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from shared.wire.checksum import checksum as csum  # noqa: E402


def ip_header(rng, proto, payload_len, src=b"\x0a\x42\x00\x01", dst=b"\x0a\x42\x00\x02", frag=0x4000):
    h = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, rng.randrange(65536), frag,
                              64, proto, 0, src, dst))
    struct.pack_into("!H", h, 10, csum(bytes(h)))
    return bytes(h)


def ipv6_kinds(rng, eth6):
    """Malformed IPv6 of every layer the ip service parses, each from fd66::1 to fd66::2."""
    src, dst = bytes.fromhex("fd66" + "00" * 13 + "01"), bytes.fromhex("fd66" + "00" * 13 + "02")
    snm = bytes.fromhex("ff0200000000000000000001ff000002")

    def v6(nxt, payload, plen=None, hops=64, s=src, d=dst):
        return eth6 + struct.pack("!IHBB16s16s", 6 << 28, len(payload) if plen is None else plen, nxt, hops, s, d) \
            + payload

    def icmp6(t, code, body, s=src, d=dst, good=True):
        msg = bytearray(bytes((t, code, 0, 0)) + body)
        pseudo = s + d + len(msg).to_bytes(4, "big") + b"\0\0\0\x3a"
        struct.pack_into("!H", msg, 2, (csum(pseudo + bytes(msg)) + (0 if good else 1)) & 0xFFFF)
        return bytes(msg)

    def random_v6_header():
        return eth6 + bytes([0x60 | rng.randrange(16)]) + rng.randbytes(rng.randrange(0, 80))

    def v6_wrong_length():
        return v6(58, rng.randbytes(16), plen=rng.choice([17, 100, 65535]))

    def bad_icmp6_checksum():
        return v6(58, icmp6(128, 0, rng.randbytes(4 + rng.randrange(40)), good=False))

    def bad_neighbor_discovery():
        body = bytearray(dst + bytes((1, 1)) + rng.randbytes(6))
        body[rng.randrange(len(body))] = rng.randrange(256)
        t = rng.choice([133, 134, 135, 136])
        # from an address of its own: a mutation that stays valid may teach mkstack its link-layer address
        # (RFC 4861 7.2.3), which must not be the peer's that the ping afterwards needs
        other = bytes.fromhex("fd66" + "00" * 13 + "99")
        return v6(58, icmp6(t, rng.choice([0, 0, 1]), bytes(4) + bytes(body), s=other, d=snm),
                  hops=rng.choice([255, 255, 64]), s=other, d=snm)

    def bad_extension_chain():
        hdrs = rng.choice([
            (60, bytes((0, 0, 1, 4, 0, 0, 0, 0)) + bytes((17, 0, 1, 4, 0, 0, 0, 0))),      # hop-by-hop second
            (60, bytes((17, 0, rng.choice([0x5E, 0x9E, 0xDE]), 4, 0, 0, 0, 0))),           # unknown option
            (43, bytes((17, 0, 4, 1, 0, 0, 0, 0))),                                       # segments left
            (0, bytes((17, rng.randrange(1, 9), 1, 4, 0, 0, 0, 0))),                      # runs past the packet
        ])
        return v6(hdrs[0], hdrs[1] + rng.randbytes(8))

    def unknown_next_header():
        return v6(rng.choice([6, 99, 253]), rng.randbytes(rng.randrange(0, 64)))

    def bad_udp6():
        """UDP over IPv6 that udp must drop: short, a length past the packet, a zero (forbidden
        over IPv6) or wrong checksum."""
        body = rng.randbytes(rng.randrange(0, 40))
        how = rng.randrange(4)
        if how == 0:
            return v6(17, rng.randbytes(rng.randrange(0, 8)))
        length = 8 + len(body) + (rng.randrange(1, 100) if how == 1 else 0)
        return v6(17, struct.pack("!HHHH", 40000, 7, length, 0 if how == 2 else rng.randrange(1, 65536)) + body)

    def v6_fragment():
        return v6(44, bytes((58, 0)) + struct.pack("!HI", rng.randrange(0, 200) << 3 | 1, rng.randrange(1 << 32))
                  + rng.randbytes(56))

    def not_ours():
        return v6(58, icmp6(128, 0, rng.randbytes(8)), d=bytes.fromhex("fd67" + "00" * 13 + "02"))

    return [random_v6_header, v6_wrong_length, bad_icmp6_checksum, bad_neighbor_discovery, bad_extension_chain,
            unknown_next_header, bad_udp6, v6_fragment, not_ours]


def main() -> None:
    dev, dst_mac, count, seed = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((dev, 0))
    src_mac = s.getsockname()[4]
    eth_ip = dst_mac + src_mac + b"\x08\x00"
    eth_arp = dst_mac + src_mac + b"\x08\x06"

    def random_bytes():
        return rng.randbytes(rng.randrange(1, 200))

    def truncated_eth():
        return (dst_mac + src_mac)[:rng.randrange(1, 14)]

    def unknown_ethertype():
        return dst_mac + src_mac + rng.choice([b"\x86\xdd", b"\x88\xcc", b"\x00\x10"]) + rng.randbytes(50)

    def bogus_arp():
        body = bytearray(struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, b"\x0a\x42\x00\x01",
                                     b"\0" * 6, b"\x0a\x42\x00\x02"))
        i = rng.randrange(8)
        body[i] ^= 0xFF if rng.random() < 0.5 else 0x01
        return eth_arp + bytes(body[:rng.choice([len(body), rng.randrange(28)])])

    def random_ip_header():
        return eth_ip + bytes([0x40 | rng.randrange(16)]) + rng.randbytes(rng.randrange(0, 60))

    def bad_ip_checksum():
        h = bytearray(ip_header(rng, 1, 8))
        h[10] ^= 0x5A
        return eth_ip + bytes(h) + b"\x08\0\0\0\0\0\0\0"

    def wrong_lengths():
        h = bytearray(ip_header(rng, 1, 8))
        struct.pack_into("!H", h, 2, rng.choice([0, 5, 19, 1500, 65535]))
        struct.pack_into("!H", h, 10, 0)
        struct.pack_into("!H", h, 10, csum(bytes(h)))
        return eth_ip + bytes(h) + b"\x08\0\0\0\0\0\0\0"

    def bad_icmp():
        icmp = bytearray(b"\x08\x00\x00\x00" + rng.randbytes(4 + rng.randrange(40)))
        struct.pack_into("!H", icmp, 2, (csum(bytes(icmp)) + 1) & 0xFFFF)
        return eth_ip + ip_header(rng, 1, len(icmp)) + bytes(icmp)

    def unknown_protocol():
        body = rng.randbytes(rng.randrange(0, 64))
        return eth_ip + ip_header(rng, rng.choice([0, 2, 47, 99, 253]), len(body)) + body

    def fragment():
        body = rng.randbytes(64)
        return eth_ip + ip_header(rng, 1, len(body), frag=0x2000 | rng.randrange(0, 100)) + body

    def martian_source():
        body = b"\x08\0\xf7\xff\0\0\0\0"
        return eth_ip + ip_header(rng, 1, len(body), src=rng.choice([b"\x7f\0\0\x01", b"\xe0\0\0\x01", b"\0\0\0\0"])) + body

    kinds = [random_bytes, truncated_eth, unknown_ethertype, bogus_arp, random_ip_header, bad_ip_checksum,
             wrong_lengths, bad_icmp, unknown_protocol, fragment, martian_source]
    if sys.argv[5:] == ["v6"]:
        kinds = ipv6_kinds(rng, dst_mac + src_mac + b"\x86\xdd")
    sent = dict.fromkeys((k.__name__ for k in kinds), 0)
    for i in range(count):
        k = kinds[i % len(kinds)]
        try:
            s.send(k())
            sent[k.__name__] += 1
        except OSError:
            pass
        if i % 50 == 49:
            # let the reader keep up (the TAP queue is 500 frames): every 200 frames
            # was too fast for a busy CI machine, which dropped 1,213 of 10,000
            time.sleep(0.005)
    print(sent)


if __name__ == "__main__":
    main()
