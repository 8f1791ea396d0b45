"""The module's less common names transcript: module_surface.py ADDR. Run on mkstack
and on the kernel; the two transcripts must be equal."""
import os
import socket
import sys
import tempfile
import threading

from transcript import dump, err, note

ADDR = sys.argv[1]


def exc(fn):
    try:
        return fn()
    except (TypeError, ValueError, OverflowError, OSError) as e:
        return f"{type(e).__name__}: {e}"


note("if_nametoindex lo", socket.if_nametoindex("lo"))
note("if_indextoname 1", socket.if_indextoname(1))
note("lo listed", (1, "lo") in socket.if_nameindex())
note("unknown name", exc(lambda: socket.if_nametoindex("no-such-if0")))
note("unknown index", exc(lambda: socket.if_indextoname(999)))
note("index of an int", exc(lambda: socket.if_nametoindex(5)))
note("negative index", exc(lambda: socket.if_indextoname(-1)))
note("names", all(hasattr(socket, n) for n in socket.__all__))

lst = socket.create_server((ADDR, 0))
c = socket.create_connection(lst.getsockname(), timeout=10)
s, _ = lst.accept()
note("timeout property", (c.timeout, s.timeout))
note("inheritable", c.get_inheritable())

with tempfile.TemporaryFile() as f:
    body = os.urandom(3_000_000)
    f.write(body)
    f.flush()
    got = bytearray()

    def reader():
        while len(got) < 2_000_000:
            part = s.recv(65536)
            if not part:
                break
            got.extend(part)

    t = threading.Thread(target=reader)
    t.start()
    f.seek(0)
    note("sendfile offset+count", c.sendfile(f, 500_000, 2_000_000))
    t.join(30)
    note("bytes", bytes(got) == body[500_000:2_500_000])
    note("file position", f.tell())
    note("count 0", exc(lambda: c.sendfile(f, 0, 0)))
    note("text file", exc(lambda: c.sendfile(open(os.devnull), 0)))
c.setblocking(False)
with tempfile.TemporaryFile() as f:
    note("non-blocking, empty file", exc(lambda: c.sendfile(f)))
    f.write(b"x" * 100)
    f.seek(0)
    note("non-blocking", exc(lambda: c.sendfile(f)))
c.setblocking(True)

u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u1.bind((ADDR, 0))
u2.sendto(b"0123456789", u1.getsockname())
b1, b2 = bytearray(4), bytearray(10)
n, anc, flags, src = u1.recvmsg_into([b1, b2])
note("recvmsg_into", (n, bytes(b1), bytes(b2[:6]), anc, flags, src == u2.getsockname()))
u2.sendto(b"x" * 20, u1.getsockname())
n, anc, flags, src = u1.recvmsg_into([bytearray(5)])
note("recvmsg_into truncated", (n, flags & socket.MSG_TRUNC == socket.MSG_TRUNC))

port = u2.getsockname()[1]
fd = u2.detach()
fd2 = socket.dup(fd)
again = socket.socket(fileno=fd2)
note("dup of a detached socket", again.getsockname()[1] == port)
again.close()
note("close of a detached socket", err(lambda: socket.close(fd)))
for x in (c, s, lst, u1):
    x.close()
dump()
