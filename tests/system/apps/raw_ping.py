"""ping written against the stdlib socket module: raw_ping.py ADDR COUNT [hdrincl].
Prints one line per reply: seq, ttl, rtt in ms; then a summary line."""
import os
import socket
import struct
import sys
import time

addr, count = sys.argv[1], int(sys.argv[2])
hdrincl = len(sys.argv) > 3


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


if hdrincl:
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
else:
    tx = rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
rx.settimeout(2)
ident = os.getpid() & 0xFFFF
got = 0
for seq in range(count):
    payload = struct.pack("!d", time.monotonic()) + bytes(range(48))
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    if hdrincl:
        # version/ihl, tos, total length (filled in), id (filled in), DF, ttl, proto, csum (filled in), src 0, dst
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, 1, 0, b"\0" * 4, socket.inet_aton(addr))
        tx.sendto(ip + icmp, (addr, 0))
    else:
        tx.sendto(icmp, (addr, 0))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            data, src = rx.recvfrom(2048)
        except TimeoutError:
            break
        hlen = (data[0] & 0xF) * 4
        typ, code, csum, rid, rseq = struct.unpack("!BBHHH", data[hlen:hlen + 8])
        if typ == 0 and rid == ident and rseq == seq and src[0] == addr:
            sent = struct.unpack("!d", data[hlen + 8:hlen + 16])[0]
            ok = checksum(data[hlen:]) == 0 and data[hlen + 16:] == bytes(range(48))
            print(f"reply seq={seq} ttl={data[8]} rtt={(time.monotonic() - sent) * 1000:.2f}ms ok={ok}", flush=True)
            got += 1
            break
    time.sleep(0.05)
print(f"{count} sent, {got} received")
