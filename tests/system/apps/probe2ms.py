"""The recovery probe (runs in the Linux peer): every 2 ms one UDP echo request and
one byte on a TCP echo connection to mkstack; at SIGINT or after SECONDS, writes to
OUT one JSON object with the wall-clock arrival time of every echo of each kind.

probe2ms.py ADDR UDP_PORT TCP_PORT SECONDS OUT
"""
import json
import selectors
import signal
import socket
import sys
import time

addr, uport, tport, seconds, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
PERIOD = 0.002
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.connect((addr, uport))
udp.setblocking(False)
tcp = socket.create_connection((addr, tport), timeout=5)
tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
tcp.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(udp, selectors.EVENT_READ, "udp")
sel.register(tcp, selectors.EVENT_READ, "tcp")
got = {"udp": [], "tcp": []}
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append("interrupted"))
print("probing", flush=True)
end = time.monotonic() + seconds
due = time.monotonic()
sent = 0
while not stop and time.monotonic() < end:
    now = time.monotonic()
    if now >= due:
        due += PERIOD
        if due < now:               # fell behind (a stall of our own): do not burst
            due = now + PERIOD
        sent += 1
        try:
            udp.send(sent.to_bytes(8, "big"))
        except OSError:             # ICMP errors while a layer is down: keep asking
            pass
        try:
            tcp.send(b"x")
        except BlockingIOError:
            pass
    for key, _ in sel.select(max(0.0, due - time.monotonic())):
        try:
            data = key.fileobj.recv(65536)
        except (BlockingIOError, ConnectionRefusedError):
            continue
        except OSError as exc:
            stop.append(f"{key.data}: {exc}")
            break
        if key.data == "tcp" and not data:
            stop.append("tcp connection closed by mkstack")
            break
        got[key.data].append(time.time())
with open(out, "w") as f:
    json.dump({"sent": sent, "udp": got["udp"], "tcp": got["tcp"], "ended": str(stop[-1]) if stop else "time"}, f)
print("done", flush=True)
