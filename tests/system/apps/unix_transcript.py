"""AF_UNIX semantics transcript: unix_transcript.py DIR. Run on mkstack and on
the kernel (DIR a fresh directory each time); the transcripts must be equal."""
import os
import socket
import struct
import sys
import threading

from transcript import dump, err, note

D = sys.argv[1]

path = os.path.join(D, "stream.sock")
lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
note("listen unbound", err(lambda: lst.listen()))
lst.bind(path)
note("bound", (lst.getsockname() == path, os.path.exists(path)))
note("second bind", err(lambda: socket.socket(socket.AF_UNIX).bind(path)))
note("connect before listen", err(lambda: socket.socket(socket.AF_UNIX).connect(path)))
lst.listen()
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
note("send unconnected", err(lambda: c.send(b"x")))
c.connect(path)
s, addr = lst.accept()
note("accept", (addr, c.getpeername() == path, s.getsockname() == path, s.getpeername(), c.getsockname()))
c.sendall(b"ping")
note("stream", s.recv(100))
s.sendall(b"pong")
note("peek", (c.recv(2, socket.MSG_PEEK), c.recv(100)))
threading.Timer(0.2, lambda: c.sendall(b"67890")).start()
c.sendall(b"12345")
note("waitall", s.recv(10, socket.MSG_WAITALL))
c.shutdown(socket.SHUT_WR)
note("eof after SHUT_WR", s.recv(10))
s.sendall(b"still")
note("other way still open", c.recv(10))
s.sendall(b"unread")
s.close()
note("after peer close", (c.recv(100), c.recv(100)))
note("send after peer close", err(lambda: c.send(b"x", socket.MSG_NOSIGNAL)))
c.close()

a, b = socket.socketpair()
b.sendall(b"unread")
b.close()
note("reset when unread data is dropped", err(lambda: a.recv(10)))
note("connect to a missing path", err(lambda: socket.socket(socket.AF_UNIX).connect(os.path.join(D, "none"))))
dpath = os.path.join(D, "dgram.sock")
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.bind(dpath)
note("stream to dgram", err(lambda: socket.socket(socket.AF_UNIX).connect(dpath)))
lst.close()
note("connect after the listener closed", err(lambda: socket.socket(socket.AF_UNIX).connect(path)))
os.unlink(path)
note("bind after unlink", err(lambda: socket.socket(socket.AF_UNIX).bind(path)))

e = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
e.bind(os.path.join(D, "e.sock"))
e.sendto(b"dgram one", dpath)
e.sendto(b"dgram two", dpath)
one, two = d.recvfrom(100), d.recvfrom(4)
note("dgram", (one[0], os.path.basename(one[1]), two[0], os.path.basename(two[1])))
anon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
anon.sendto(b"anon", dpath)
note("from unbound", d.recvfrom(100))
note("send unconnected dgram", err(lambda: anon.send(b"x")))
f = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
f.bind(b"\0mkstack-transcript-" + os.path.basename(D).encode())
note("abstract name", f.getsockname()[:1] == b"\0")
note("abstract in use", err(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind(f.getsockname())))
f.connect(os.path.join(D, "e.sock"))
note("to a socket connected elsewhere", err(lambda: anon.sendto(b"x", f.getsockname())))
d.setblocking(False)
note("nonblocking empty", err(lambda: d.recv(10)))
d.close()
note("to a closed dgram socket", err(lambda: e.sendto(b"x", dpath)))

p1, p2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
p1.send(b"pair")
note("dgram pair", (p2.recvfrom(10), p1.family, p1.type))
x, y = socket.socketpair()
results = []
th = threading.Thread(target=lambda: results.append(y.recv(100)))
th.start()
x.sendall(b"across threads")
th.join()
note("threads", results)

# passing a socket with SCM_RIGHTS
m1, m2 = socket.socketpair()
u1, u2 = socket.socketpair()
socket.send_fds(m1, [b"take this"], [u2.fileno()])
u2.close()
msg, fds, flags, _ = socket.recv_fds(m2, 100, 4)
got = socket.socket(fileno=fds[0])
u1.sendall(b"through the passed socket")
note("SCM_RIGHTS", (msg, len(fds), got.recv(100), got.family, got.type))
socket.send_fds(m1, [b"again"], [u1.fileno()])
note("recv without room for fds", m2.recvmsg(100)[:3])

# SO_PEERCRED: who is at the other end, as the kernel knows it
me = (os.getpid(), os.getuid(), os.getgid())
cred = struct.unpack("3i", m1.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
unbound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
inet = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
note("SO_PEERCRED", (cred == me, m1.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED) == os.getpid(),
                     struct.unpack("3i", unbound.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)),
                     struct.unpack("3i", inet.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))))
dump()
