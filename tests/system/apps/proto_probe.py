"""Send one datagram of IP protocol PROTO to ADDR and report the ICMP answer:
proto_probe.py ADDR PROTO. Prints 'protocol unreachable' or 'no error'."""
import socket
import sys
import time

addr, proto = sys.argv[1], int(sys.argv[2])
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
icmp.settimeout(0.2)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
s.sendto(b"mkstack probe", (addr, 0))
deadline = time.monotonic() + 2
result = "no error"
while time.monotonic() < deadline:
    try:
        data, src = icmp.recvfrom(2048)
    except TimeoutError:
        continue
    hlen = (data[0] & 0xF) * 4
    quoted = data[hlen + 8:]
    if src[0] == addr and data[hlen] == 3 and len(quoted) >= 20 and quoted[9] == proto:
        result = "protocol unreachable" if data[hlen + 1] == 2 else f"unreachable code {data[hlen + 1]}"
        break
print(result, flush=True)
