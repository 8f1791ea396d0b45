"""Message flags and urgent data transcript: msgflags.py ADDR. Both ends on one
stack (mkstack, or the kernel in the peer namespace); the transcripts must match."""
import fcntl
import select
import signal
import socket
import struct
import sys
import threading
import time

from transcript import dump, err, note

ADDR = sys.argv[1]
SIOCATMARK, SIOCINQ = 0x8905, 0x541B


def ioctl(s, req):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), req, b"\0" * 4))[0]


def settle():
    time.sleep(0.3)


# -- UDP --------------------------------------------------------------------
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind((ADDR, 0))
b.bind((ADDR, 0))
b.sendto(b"0123456789", a.getsockname())
select.select([a], [], [], 2)
note("udp FIONREAD", ioctl(a, SIOCINQ))
note("udp SIOCATMARK", err(lambda: ioctl(a, SIOCATMARK)))
note("udp peek", a.recv(4, socket.MSG_PEEK))
d = a.recv(4, socket.MSG_TRUNC)
note("udp recv MSG_TRUNC", (len(d), d[:4]))
b.sendto(b"abcdef", a.getsockname())
select.select([a], [], [], 2)
buf = bytearray(3)
note("udp recvfrom_into MSG_TRUNC", (a.recvfrom_into(buf, 0, socket.MSG_TRUNC)[0], bytes(buf)))
note("udp MSG_DONTWAIT", err(lambda: a.recv(10, socket.MSG_DONTWAIT)))
note("udp send MSG_OOB", err(lambda: b.sendto(b"x", socket.MSG_OOB, a.getsockname())))
b.sendmsg([b"sm", b"sg"], [], 0, a.getsockname())
a.settimeout(2)
data, anc, flags, src = a.recvmsg(100)
note("udp sendmsg/recvmsg", (data, anc, flags, src == b.getsockname()))

# -- TCP --------------------------------------------------------------------
lst = socket.create_server((ADDR, 0))
c = socket.create_connection(lst.getsockname(), timeout=5)
s, _ = lst.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
note("no urgent data", err(lambda: s.recv(10, socket.MSG_OOB)))
c.send(b"abc")
c.send(b"!", socket.MSG_OOB)
c.send(b"def")
settle()
note("mark before", ioctl(s, SIOCATMARK))
note("read stops at the mark", s.recv(100))
note("mark at", ioctl(s, SIOCATMARK))
note("FIONREAD", ioctl(s, SIOCINQ))
note("oob peek", s.recv(10, socket.MSG_OOB | socket.MSG_PEEK))
note("oob", s.recv(10, socket.MSG_OOB))
note("oob again", err(lambda: s.recv(10, socket.MSG_OOB)))
note("after the mark", s.recv(100))
note("mark after", ioctl(s, SIOCATMARK))

c.send(b"xy")
c.send(b"Z", socket.MSG_OOB)
c.send(b"w")
settle()
note("unread urgent byte skipped", (s.recv(100), ioctl(s, SIOCATMARK), s.recv(100)))
note("and gone", err(lambda: s.recv(10, socket.MSG_OOB)))

c.send(b"1")
c.send(b"A", socket.MSG_OOB)
c.send(b"2")
c.send(b"B", socket.MSG_OOB)
c.send(b"3")
settle()
note("a newer mark makes the old byte inline", (s.recv(100), s.recv(10, socket.MSG_OOB), s.recv(100)))

c.send(b"Q", socket.MSG_OOB)
settle()
s.setblocking(False)
r, w, x = select.select([s], [], [], 0)
note("only the urgent byte: readable", bool(r))
note("oob alone", s.recv(10, socket.MSG_OOB))
note("then nothing", err(lambda: s.recv(10)))
s.setblocking(True)

s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
note("SO_OOBINLINE", s.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE))
c.send(b"ab")
c.send(b"!", socket.MSG_OOB)
c.send(b"cd")
settle()
note("inline", (s.recv(100), ioctl(s, SIOCATMARK), err(lambda: s.recv(10, socket.MSG_OOB)), s.recv(100)))
s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 0)

# MSG_PEEK, MSG_WAITALL, MSG_DONTWAIT on a stream
c.send(b"peekaboo")
settle()
note("stream peek", (s.recv(4, socket.MSG_PEEK), s.recv(100)))
note("stream MSG_DONTWAIT", err(lambda: s.recv(10, socket.MSG_DONTWAIT)))
c.send(b"12345")
threading.Timer(0.3, lambda: c.send(b"67890abc")).start()
note("MSG_WAITALL", s.recv(10, socket.MSG_WAITALL))
note("rest", s.recv(100))
big = bytes(range(256)) * 2000   # more than the receive buffer holds at once
threading.Thread(target=lambda: c.sendall(big)).start()
note("MSG_WAITALL larger than the buffer", s.recv(len(big), socket.MSG_WAITALL) == big)
c.send(b"xyz")
c.shutdown(socket.SHUT_WR)
note("MSG_WAITALL cut short by EOF", s.recv(10, socket.MSG_WAITALL))

# MSG_NOSIGNAL: SIGPIPE only without it
pipes = []
signal.signal(signal.SIGPIPE, lambda *_: pipes.append(1))
s.close()
settle()
for flags in (0, socket.MSG_NOSIGNAL):
    for _ in range(3):
        r = err(lambda: c.send(b"x" * 10, flags))
    note(f"send to a closed peer flags={flags}", (r, len(pipes)))
    pipes.clear()
c.close()
lst.close()
dump()
