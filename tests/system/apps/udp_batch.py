"""UDP bursts transcript: udp_batch.py ADDR CLOSED_PORT. Run on mkstack and on the kernel;
the two transcripts must be equal.

Datagrams that arrive while nobody reads, then are read one by one (mkstack
brings them to the client library in one reply), sends in a burst (mkstack
does not wait for the socket server on each), and a pending ICMP error that
the next send must report (a send that did not wait must not swallow it)."""
import fcntl
import select
import socket
import sys
import termios
import time

from transcript import dump, err, note

ADDR, CLOSED = sys.argv[1], int(sys.argv[2])


def fionread(s):
    return int.from_bytes(fcntl.ioctl(s, termios.FIONREAD, bytes(4)), sys.byteorder)


def payload(i):
    return bytes([65 + i % 26]) * (1 + i * 37 % 1400)


a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind((ADDR, 0))
b.bind((ADDR, 0))
for i in range(20):
    b.sendto(payload(i), a.getsockname())
time.sleep(0.3)
note("readable", select.select([a], [], [], 2)[0] == [a])
note("FIONREAD", fionread(a))
note("peek", len(a.recv(4096, socket.MSG_PEEK)))
data, anc, flags, src = a.recvmsg(5)
note("recvmsg truncated", (data, flags & socket.MSG_TRUNC == socket.MSG_TRUNC, src == b.getsockname()))
note("FIONREAD next", fionread(a))
got = [a.recvfrom(4096) for _ in range(19)]
note("rest in order", [d == payload(i + 1) for i, (d, _) in enumerate(got)].count(True))
note("from", all(src == b.getsockname() for _, src in got))
note("drained", select.select([a], [], [], 0)[0] == [])
a.setblocking(False)
note("nonblocking recv", err(lambda: a.recv(10)))

for i in range(50):
    a.sendto(i.to_bytes(2, "big") * 10, b.getsockname())
b.settimeout(2)
seq = [int.from_bytes(b.recv(100)[:2], "big") for _ in range(50)]
note("burst", seq == list(range(50)))
note("sizes", err(lambda: a.sendto(bytes(65508), b.getsockname())))

c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect((ADDR, CLOSED))
note("first send", c.send(b"x"))
time.sleep(0.5)
note("second send", err(lambda: c.send(b"x")))
note("SO_ERROR after", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
for s in (a, b, c):
    s.close()
dump()
