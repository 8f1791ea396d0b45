"""Random TCP segments at mkstack (run in the peer namespace): tcp_garbage.py DST COUNT SEED PORT...

Kernel-built IP headers around hand-made TCP headers: random flags, sequence
numbers and options (impossible lengths among them), a third with a wrong checksum.
"""
import os
import random
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
from shared.wire.checksum import checksum, pseudo_header_sum  # noqa: E402

dst, count, seed, ports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(p) for p in sys.argv[4:]]
rng = random.Random(seed)
src = "10.66.0.1"
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
sent = 0
for i in range(count):
    opts = rng.choice([b"", rng.randbytes(4), b"\x02\x04\x05\xb4", b"\x08\x0a" + rng.randbytes(8), b"\x05\x03\x00\x00",
                       b"\x03\x09\x00\x00", b"\x01\x01\x01\x00", b"\x04\x02\x00\x00"])
    opts += bytes(-len(opts) % 4)
    data = rng.randbytes(rng.choice([0, 0, 10, 1000]))
    hdr = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65535), rng.choice(ports), rng.randrange(1 << 32),
                      rng.randrange(1 << 32), ((20 + len(opts)) // 4) << 4, rng.randrange(256),
                      rng.randrange(65536), 0, rng.randrange(65536))
    seg = bytearray(hdr + opts + data)
    c = checksum(seg, pseudo_header_sum(socket.inet_aton(src), socket.inet_aton(dst), 6, len(seg)))
    struct.pack_into("!H", seg, 16, c if i % 3 else (c + 1) & 0xFFFF)
    s.sendto(bytes(seg), (dst, 0))
    sent += 1
print(sent)
