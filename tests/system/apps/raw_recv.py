"""Receive one datagram of IP protocol PROTO on a raw socket: raw_recv.py PROTO.
Prints 'ready', then the source, protocol and payload of what arrived."""
import socket
import sys

proto = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
s.settimeout(20)
print("ready", flush=True)
data, src = s.recvfrom(2048)
hlen = (data[0] & 0xF) * 4
print("got", src[0], data[9], data[hlen:], flush=True)
