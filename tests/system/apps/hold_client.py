"""Open N TCP connections to ADDR PORT (at most WINDOW connecting at once), check
every one answers a byte, hold them all until stdin closes.

hold_client.py ADDR PORT N WINDOW -> one JSON line when all are open and checked:
connections per second while opening, and how many answered.
"""
import errno
import json
import resource
import selectors
import socket
import sys
import time

addr, port, n, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sel = selectors.DefaultSelector()
opened, failed, pending = [], 0, 0
t0 = time.monotonic()
started = 0
while len(opened) + failed < n:
    while started < n and pending < window:
        s = socket.socket()
        s.setblocking(False)
        if s.connect_ex((addr, port)) not in (0, errno.EINPROGRESS):
            failed += 1
            s.close()
        else:
            sel.register(s, selectors.EVENT_WRITE)
            pending += 1
        started += 1
    for key, _ in sel.select(timeout=10):
        s = key.fileobj
        sel.unregister(s)
        pending -= 1
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            failed += 1
            s.close()
        else:
            opened.append(s)
    if time.monotonic() - t0 > 300:
        break
open_s = time.monotonic() - t0
answered = 0
for s in opened:
    s.setblocking(True)
    s.settimeout(30)
    s.sendall(b"x")
for s in opened:
    try:
        answered += s.recv(1) == b"y"
    except OSError:
        pass
print(json.dumps({"opened": len(opened), "failed": failed, "open_s": round(open_s, 2),
                  "per_s": round(len(opened) / open_s, 1), "answered": answered}), flush=True)
sys.stdin.read()
