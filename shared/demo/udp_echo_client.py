"""A UDP echo client for the Linux peer: ``udp_echo_client.py ADDR`` sends 5 B to
64 KiB datagrams to ADDR:9999 and checks each comes back byte-exact."""

import os
import socket
import sys
import time

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
ok = True
for n in (5, 1472, 8000, 65507):
    data = os.urandom(n)
    t = time.monotonic()
    s.sendto(data, (sys.argv[1], 9999))
    echo, peer = s.recvfrom(65535)
    ok &= echo == data
    print(f"{n:6} bytes echoed by {peer} in {(time.monotonic() - t) * 1000:.2f} ms, byte-exact: {echo == data}")
sys.exit(0 if ok else 1)
