"""A UDP echo server on port 9999; the demo runs it on mkstack with `launcher.py run`."""

import socket

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
print("echo server bound to", s.getsockname(), "with", type(s).__module__, flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
