"""Pipelined UDP echo load: udp_window.py ADDR PORT SIZE SECONDS WINDOW -> JSON line.

Keeps WINDOW datagrams in flight against an echo server for SECONDS and
reports echoes per second and the median round trip of a lone datagram.
"""
import json
import socket
import statistics
import sys
import time

addr, port, size, seconds, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
payload = b"x" * size
rtts = []
for _ in range(300):
    t = time.monotonic()
    s.sendto(payload, (addr, port))
    try:
        s.recvfrom(65535)
        rtts.append((time.monotonic() - t) * 1e6)
    except TimeoutError:
        pass
inflight = echoes = lost = 0
t0 = time.monotonic()
while time.monotonic() - t0 < seconds:
    while inflight < window:
        s.sendto(payload, (addr, port))
        inflight += 1
    try:
        s.recvfrom(65535)
        echoes += 1
        inflight -= 1
    except TimeoutError:
        lost += inflight
        inflight = 0
elapsed = time.monotonic() - t0
print(json.dumps({"size": size, "echoes_per_s": round(echoes / elapsed), "lost": lost, "echoes": echoes + len(rtts),
                  "rtt_us_median": round(statistics.median(rtts)) if rtts else None}))
