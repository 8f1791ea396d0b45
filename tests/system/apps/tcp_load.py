"""TCP load from the client side: tcp_load.py ADDR PORT MODE SECONDS -> JSON line.

MODE rr: one connection, 1-byte request/response round trips.
MODE crr: connect, one request/response, close, again.
MODE sink: send bulk data for SECONDS (the server discards it).
"""
import json
import socket
import statistics
import sys
import time

addr, port, mode, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
t0 = time.monotonic()
n = 0
lat = []
if mode == "rr":
    s = socket.create_connection((addr, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while time.monotonic() - t0 < seconds:
        t = time.monotonic()
        s.sendall(b"x")
        s.recv(1)
        lat.append((time.monotonic() - t) * 1e6)
        n += 1
elif mode == "crr":
    while time.monotonic() - t0 < seconds:
        s = socket.create_connection((addr, port))
        s.sendall(b"x")
        s.recv(1)
        s.close()
        n += 1
else:
    s = socket.create_connection((addr, port))
    block = b"x" * 262144
    while time.monotonic() - t0 < seconds:
        s.sendall(block)
        n += len(block)
    s.close()
el = time.monotonic() - t0
print(json.dumps({"mode": mode, "per_s": round(n / el, 1), "mb_per_s": round(n / el / 1e6, 1) if mode == "sink" else None,
                  "rtt_us_median": round(statistics.median(lat)) if lat else None}))
