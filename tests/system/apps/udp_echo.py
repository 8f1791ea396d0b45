"""A plain UDP echo server (stdlib socket only): udp_echo.py ADDR PORT."""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", s.getsockname(), flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
