"""TCP request/response over many connections at once: tcp_rr_many.py ADDR PORT CONNS SECONDS -> JSON line.

Opens CONNS connections to an echo server, keeps one 1-byte request in flight
on each (TCP_NODELAY), and reports round trips per second over SECONDS.
"""
import json
import selectors
import socket
import sys
import time

addr, port, conns, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sel = selectors.DefaultSelector()
socks = []
for _ in range(conns):
    s = socket.create_connection((addr, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
for s in socks:
    s.send(b"x")
n = 0
t0 = time.monotonic()
end = t0 + seconds
while time.monotonic() < end:
    for key, _ in sel.select(0.5):
        got = key.fileobj.recv(4096)
        if not got:
            raise SystemExit("connection closed by the server")
        n += len(got)
        key.fileobj.send(b"x" * len(got))
el = time.monotonic() - t0
for s in socks:
    s.close()
print(json.dumps({"conns": conns, "rt_per_s": round(n / el, 1), "round_trips": n}))
