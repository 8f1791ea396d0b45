"""Stop-and-wait UDP echo client: udp_stress.py ADDR PORT COUNT SEED -> one JSON line.

Sizes are random from 1 to 65507 (65527 to an IPv6 ADDR); every echo must be byte-exact. A datagram
that gets no echo within 1 s is sent again (UDP may lose) and counted.
"""
import json
import random
import socket
import statistics
import sys
import time

addr, port, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
top = 65527 if family == socket.AF_INET6 else 65507       # 65535 less the UDP header (and IPv4's)
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok = retries = mismatches = nbytes = 0
small_rtts = []
t0 = time.monotonic()
for i in range(count):
    n = rng.choice([rng.randrange(1, 1473), rng.randrange(1473, top + 1), top, 1])
    data = rng.randbytes(n)
    for attempt in range(5):
        t = time.monotonic()
        s.sendto(data, (addr, port))
        try:
            while True:
                got, src = s.recvfrom(65535)
                if got == data:
                    break
                mismatches += 1       # an echo of an earlier, retried datagram
        except TimeoutError:
            retries += 1
            continue
        if n <= 64:
            small_rtts.append((time.monotonic() - t) * 1000)
        ok += 1
        nbytes += n
        break
elapsed = time.monotonic() - t0
print(json.dumps({"ok": ok, "retries": retries, "mismatches": mismatches, "seconds": round(elapsed, 2),
                  "mb_per_s_each_way": round(nbytes / elapsed / 1e6, 2),
                  "small_rtt_ms_median": round(statistics.median(small_rtts), 3) if small_rtts else None}))
