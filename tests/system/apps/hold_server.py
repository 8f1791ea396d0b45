"""Accept N connections and hold them all; then answer one byte on each.

hold_server.py PORT N [NOFILE] -> prints 'ready', then a JSON line once every
connection has been accepted and answered (all open at once, idle), with how
many kernel descriptors the process holds. NOFILE sets RLIMIT_NOFILE (soft)
first. Stays until killed (the sockets stay open with it).
"""
import json
import os
import resource
import socket
import sys
import time

port, n = int(sys.argv[1]), int(sys.argv[2])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
soft = int(sys.argv[3]) if len(sys.argv) > 3 else hard
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
srv = socket.create_server(("0.0.0.0", port), backlog=4096)
print("ready", flush=True)
held = []
t0 = time.monotonic()
while len(held) < n:
    c, _ = srv.accept()
    held.append(c)
accepted = time.monotonic() - t0
answered = 0
for c in held:
    if c.recv(1) == b"x":
        c.sendall(b"y")
        answered += 1
print(json.dumps({"accepted": len(held), "accept_s": round(accepted, 2), "answered": answered,
                  "kernel_fds": len(os.listdir("/proc/self/fd"))}), flush=True)
while True:
    time.sleep(3600)
