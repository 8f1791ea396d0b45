"""SO_REUSEPORT: reuseport_transcript.py -> a transcript (loopback only).

Two TCP listeners and two UDP sockets share a port with SO_REUSEPORT; 40
connections and 40 datagrams from 40 source ports are spread between them (a
hash of the addresses and ports picks one); without the option on both, the
second bind is refused. Run on mkstack and on the kernel, the transcripts match.
"""
import select
import socket

from transcript import dump, err, note

ADDR = "127.0.0.1"


def pair(kind, opts):
    socks = []
    for reuse in opts:
        s = socket.socket(socket.AF_INET, kind)
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        socks.append(s)
    return socks


a, b = pair(socket.SOCK_STREAM, (True, True))
a.bind((ADDR, 0))
port = a.getsockname()[1]
note("get SO_REUSEPORT", a.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
note("second TCP bind with the option", err(lambda: b.bind((ADDR, port))))
a.listen(64)
b.listen(64)
clients = [socket.create_connection((ADDR, port)) for _ in range(40)]
got = {"a": 0, "b": 0}
for name, lst in (("a", a), ("b", b)):
    lst.setblocking(False)
    while True:
        try:
            c, _ = lst.accept()
        except BlockingIOError:
            break
        got[name] += 1
        c.close()
note("connections accepted", sum(got.values()))
note("both listeners got some", all(got.values()))
for c in clients:
    c.close()
c = socket.socket()
note("third TCP bind without the option", err(lambda: c.bind((ADDR, port))))
c.close()
a.close()
b.close()

u1, u2 = pair(socket.SOCK_DGRAM, (True, True))
u1.bind((ADDR, 0))
uport = u1.getsockname()[1]
note("second UDP bind with the option", err(lambda: u2.bind((ADDR, uport))))
senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(40)]
for s in senders:
    s.sendto(b"x", (ADDR, uport))


def received(n):
    """How many of ``n`` datagrams each of u1 and u2 got."""
    got = {"u1": 0, "u2": 0}
    while sum(got.values()) < n:
        ready, _, _ = select.select([u1, u2], [], [], 2)
        if not ready:
            break
        for r in ready:
            r.recv(10)
            got["u1" if r is u1 else "u2"] += 1
    return got


counts = received(40)
note("datagrams received", sum(counts.values()))
note("both sockets got some", all(counts.values()))
for s in senders:
    s.sendto(b"y", (ADDR, uport))      # the same flows again: each to the same socket as before
note("a flow stays with its socket", received(40) == counts)
u3 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
note("UDP bind without the option", err(lambda: u3.bind((ADDR, uport))))
s = socket.create_server((ADDR, 0), reuse_port=True)
note("create_server(reuse_port=True)", s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT))
dump()
