"""Socket semantics transcript: readiness.py ADDR. Run on mkstack and on the kernel;
the two transcripts must be equal."""
import errno
import select
import selectors
import socket
import sys
import threading
import time

ADDR = sys.argv[1]
log = []


def note(what, value):
    log.append(f"{what}: {value}")


def err(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return f"{type(exc).__name__} {errno.errorcode.get(exc.errno, exc.errno)}"


a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind((ADDR, 0))
b.bind((ADDR, 0))
note("bound", a.getsockname()[0] == ADDR and a.getsockname()[1] > 1023)
note("type", (a.family, a.type, a.gettimeout(), a.getblocking()))

a.settimeout(0.3)
t = time.monotonic()
try:
    a.recvfrom(10)
    note("timeout", "none")
except TimeoutError as exc:
    note("timeout", (type(exc).__name__, str(exc), 0.25 < time.monotonic() - t < 1.5))
a.setblocking(False)
note("nonblocking recv", err(lambda: a.recv(10)))
note("select idle", select.select([a], [], [], 0)[0] == [])
note("select writable", select.select([], [a], [], 0)[1] == [a])

b.sendto(b"ping", a.getsockname())
note("select readable", select.select([a], [], [], 2)[0] == [a])
p = select.poll()
p.register(a, select.POLLIN)
note("poll", [(fd == a.fileno(), ev & select.POLLIN) for fd, ev in p.poll(2000)])
with selectors.DefaultSelector() as sel:
    sel.register(a, selectors.EVENT_READ, "a")
    note("selectors", [(k.data, ev) for k, ev in sel.select(2)])
note("peek", a.recv(10, socket.MSG_PEEK))
note("recvfrom", (a.recvfrom(10)[0], b.getsockname() == a.getsockname() or "from b"))
note("select drained", select.select([a], [], [], 0)[0] == [])

b.sendto(b"0123456789", a.getsockname())
select.select([a], [], [], 2)
data, anc, flags, src = a.recvmsg(4)
note("recvmsg truncated", (data, flags & socket.MSG_TRUNC == socket.MSG_TRUNC))
b.sendto(b"xyz", a.getsockname())
buf = bytearray(8)
select.select([a], [], [], 2)
n, src = a.recvfrom_into(buf)
note("recvfrom_into", (n, bytes(buf[:n]), src == b.getsockname()))

note("rebind", err(lambda: a.bind((ADDR, 0))))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
note("port in use", err(lambda: c.bind(a.getsockname())))
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
note("port in use, one reuseaddr", err(lambda: c.bind(a.getsockname())))
note("getpeername unconnected", err(c.getpeername))
note("send unconnected", err(lambda: c.send(b"x")))
note("too big", err(lambda: b.sendto(b"x" * 65508, a.getsockname())))
note("broadcast without SO_BROADCAST", err(lambda: b.sendto(b"x", ("255.255.255.255", 9))))
note("shutdown unconnected", err(lambda: c.shutdown(socket.SHUT_RD)))
c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
note("rcvbuf doubled", c.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
note("so_type", c.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE))
note("so_error", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
note("bad option", err(lambda: c.getsockopt(socket.SOL_SOCKET, 9999)))
try:
    c.bind((ADDR, 70000))
except OverflowError:
    note("bind 70000", "OverflowError")
c.close()
note("closed fileno", c.fileno())
note("use after close", err(lambda: c.recv(1)))

b.connect(a.getsockname())
note("connected peer", b.getpeername() == a.getsockname())
b.send(b"via connect")
a.setblocking(True)
a.settimeout(2)
note("connected send", a.recv(100))
b.shutdown(socket.SHUT_RD)
note("recv after SHUT_RD", b.recv(10))

# threads sharing the library: each sends to and receives from its own pair
results = []


def worker(k):
    x = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    y = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    x.bind((ADDR, 0))
    y.bind((ADDR, 0))
    y.settimeout(5)
    good = 0
    for i in range(100):
        x.sendto(f"{k}:{i}".encode(), y.getsockname())
        good += y.recv(100) == f"{k}:{i}".encode()
    results.append(good)
    x.close()
    y.close()


threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for th in threads:
    th.start()
for th in threads:
    th.join()
note("threads", sorted(results))


def bad_timeout(v):
    try:
        a.settimeout(v)
        return ("ok", a.gettimeout())
    except (ValueError, OverflowError) as exc:
        return (type(exc).__name__, str(exc))


note("settimeout out of range", [bad_timeout(v) for v in (float("nan"), float("inf"), 1e300, -1, 1e9)])
for line in log:
    print(line)
