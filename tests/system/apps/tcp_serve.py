"""Threaded TCP server for tcp_load.py: echo what arrives (rr, crr) or discard it (sink)."""
import socket
import sys
import threading


def handle(c):
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            d = c.recv(262144)
            if not d:
                return
            if len(d) < 16:
                c.sendall(d)


srv = socket.create_server((sys.argv[1], int(sys.argv[2])), backlog=512)
print("ready", flush=True)
while True:
    c, _ = srv.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
