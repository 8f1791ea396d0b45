"""mkstack-side client against a Linux UDP echo server: udp_client.py SERVER PORT CLOSED_PORT
(an IPv6 SERVER makes its sockets AF_INET6)."""
import json
import socket
import sys

server, port, closed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in server else socket.AF_INET
out = {}
s = socket.socket(family, socket.SOCK_DGRAM)
s.settimeout(2)
good = 0
for i in range(100):
    msg = f"datagram {i}".encode() * (i + 1)
    s.sendto(msg, (server, port))
    data, src = s.recvfrom(65535)
    good += data == msg and src[:2] == (server, port)
out["echoed"] = good
out["local"] = list(s.getsockname())

c = socket.socket(family, socket.SOCK_DGRAM)
c.settimeout(2)
c.connect((server, closed))
out["peer"] = list(c.getpeername())
c.send(b"anyone?")
try:
    c.recv(100)
    out["connected"] = "no error"
except OSError as exc:
    out["connected"] = type(exc).__name__ + f" {exc.errno}"

u = socket.socket(family, socket.SOCK_DGRAM)
u.settimeout(0.5)
u.sendto(b"anyone?", (server, closed))
try:
    u.recvfrom(100)
    out["unconnected"] = "data"
except OSError as exc:              # an unconnected socket hears nothing of ICMP errors
    out["unconnected"] = type(exc).__name__
print(json.dumps(out))
