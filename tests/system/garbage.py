"""Sends malformed frames into a TAP from the kernel side (run inside the peer namespace).

usage: garbage.py DEV DST_MAC COUNT SEED   — prints how many frames of each kind were sent.
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
    sent = dict.fromkeys((k.__name__ for k in kinds), 0)
    for i in range(count):
        k = kinds[i % len(kinds)]
        try:
            s.send(k())
            sent[k.__name__] += 1
        except OSError:
            pass
        if i % 200 == 199:
            time.sleep(0.005)   # let the reader keep up; the TAP queue is 500 frames
    print(sent)


if __name__ == "__main__":
    main()
