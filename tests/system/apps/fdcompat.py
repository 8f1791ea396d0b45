"""Descriptor compatibility transcript: fdcompat.py ADDR. dup, fromfd, detach,
socket(fileno=...), makefile modes and select on duplicates; mkstack and the
kernel must print the same."""
import select
import socket
import sys

ADDR = sys.argv[1]
log = []


def note(what, value):
    log.append(f"{what}: {value}")


def pair():
    lst = socket.create_server((ADDR, 0))
    c = socket.create_connection(lst.getsockname(), timeout=5)
    s, _ = lst.accept()
    s.settimeout(5)
    lst.close()
    return c, s


c, s = pair()
d = c.dup()
note("dup", (d.fileno() != c.fileno(), d.family, d.type, d.gettimeout(), d.getsockname() == c.getsockname()))
d.sendall(b"via dup")
note("read", s.recv(100))
c.close()
d.sendall(b"after closing the original")
note("still open", s.recv(100))
d.close()
note("eof once the last fd closes", s.recv(100))
s.close()

c, s = pair()
f = socket.fromfd(s.fileno(), socket.AF_INET, socket.SOCK_STREAM)
note("fromfd", (f.fileno() != s.fileno(), f.family, f.type, f.getpeername() == s.getpeername()))
s.close()
c.sendall(b"to fromfd")
note("select on the duplicate", select.select([f], [], [], 5)[0] == [f])
note("fromfd read", f.recv(100))
fd = f.detach()
note("detached", (f.fileno(), fd >= 0))
g = socket.socket(fileno=fd)
g.settimeout(5)
c.sendall(b"to the re-attached socket")
note("socket(fileno=)", (g.recv(100), g.getpeername() == c.getsockname()))

# makefile modes
w = c.makefile("wb")
w.write(b"line one\nline two\n")
w.flush()
r = g.makefile("rb")
note("makefile rb readline", (r.readline(), r.readline()))
tw = c.makefile("w", encoding="utf-8", newline="\r\n")
tw.write("héllo\nwörld\n")
tw.flush()
tr = g.makefile("r", encoding="utf-8", newline="")
note("makefile text", (tr.readline(), tr.readline()))
rw = g.makefile("rwb")
rw.write(b"back\n")
rw.flush()
cr = c.makefile("rb", buffering=0)
note("makefile rwb + unbuffered", (cr.read(5), type(cr).__name__))
for x in (w, r, tw, tr, rw, cr):
    x.close()
note("open after the files close", g.fileno() >= 0)
g.close()
c.close()
note("closed", (g.fileno(), c.fileno()))
for line in log:
    print(line)
