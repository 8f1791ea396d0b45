"""A steady UDP echo stream against a server: udp_stream.py ADDR PORT SECONDS RATE [LOG] -> one JSON line.

Sends RATE numbered datagrams a second for SECONDS (or until SIGINT), matches the echoes, and
reports how many came back, any that came back wrong, the longest silence
between echoes and how long before the end the last one arrived; with LOG,
the wall time of every echo goes to that file too.
"""
import json
import signal
import socket
import sys
import time

addr, port, seconds, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
log = open(sys.argv[5], "a", buffering=1) if len(sys.argv) > 5 else None
signal.signal(signal.SIGINT, lambda *_: globals().update(seconds=time.monotonic() - t0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.005)
t0 = time.monotonic()
sent = received = wrong = 0
arrivals = [t0]
next_send = t0
while True:
    now = time.monotonic()
    if now - t0 >= seconds + 1.0:           # a last second for the stragglers
        break
    if now >= next_send and now - t0 < seconds:
        try:
            s.sendto(f"seq {sent} ".encode() * 20, (addr, port))
        except socket.timeout:
            # the kernel's send buffer is full of datagrams waiting for ARP while
            # mkstack restarts: this one is lost, as on any network
            pass
        sent += 1
        next_send += 1 / rate
    try:
        data, src = s.recvfrom(65535)
    except socket.timeout:
        continue
    n = data.split(b" ")[1] if data.startswith(b"seq ") else b""
    if n.isdigit() and data == f"seq {int(n)} ".encode() * 20 and src == (addr, port):
        received += 1
        arrivals.append(time.monotonic())
        if log is not None:
            log.write(f"{time.time():.3f}\n")
    else:
        wrong += 1
end = t0 + seconds
print(json.dumps({"sent": sent, "received": received, "wrong": wrong,
                  "longest_silence": round(max(b - a for a, b in zip(arrivals, arrivals[1:] + [end])), 2),
                  "last_echo_before_end": round(end - arrivals[-1], 2)}))
