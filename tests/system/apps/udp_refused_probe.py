"""A connected UDP socket's view of a server: udp_refused_probe.py ADDR PORT SECONDS -> one JSON line.

Sends a datagram every 2 ms and reads the echoes; a connected socket hears an
ICMP port unreachable as ECONNREFUSED on its next call, as Linux reports it.
Counts datagrams sent, echoes, and refusals.
"""
import json
import socket
import sys
import time

addr, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((addr, port))
s.setblocking(False)
sent = echoed = refused = 0
t0 = time.monotonic()
next_send = t0
while time.monotonic() - t0 < seconds + 0.5:
    now = time.monotonic()
    try:
        if now >= next_send and now - t0 < seconds:
            s.send(b"probe %d" % sent)
            sent += 1
            next_send += 0.002
        while True:
            s.recv(2048)
            echoed += 1
    except ConnectionRefusedError:
        refused += 1
    except BlockingIOError:
        pass
    time.sleep(0.0005)
print(json.dumps({"sent": sent, "echoed": echoed, "refused": refused}))
