"""A plain UDP echo server (stdlib socket only): udp_echo.py ADDR PORT; an IPv6 ADDR (``::``
for a dual-stack socket) makes it AF_INET6."""
import socket
import sys

s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", s.getsockname(), flush=True)
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(data, addr)
