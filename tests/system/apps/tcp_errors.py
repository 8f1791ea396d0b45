"""Connection errors as the application sees them: tcp_errors.py PEER CLOSED_PORT RST_PORT BLACKHOLE_PORT."""
import errno
import json
import socket
import sys
import time

peer, closed, rst_port, blackhole = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = {}


def outcome(fn):
    try:
        fn()
        return "ok"
    except TimeoutError as exc:
        return f"TimeoutError {exc}"
    except OSError as exc:
        return f"{type(exc).__name__} {errno.errorcode.get(exc.errno, exc.errno)}"


out["refused"] = outcome(lambda: socket.create_connection((peer, closed), timeout=5))


def reset() -> None:
    # the server accepts and resets at once: with a timeout, connect() polls and then reads
    # SO_ERROR, so the reset may already be reported there (the kernel's own run did, once)
    s = socket.create_connection((peer, rst_port), timeout=5)
    s.settimeout(5)
    s.sendall(b"x")
    s.recv(10)
    s.recv(10)


out["reset"] = outcome(reset)
t = time.monotonic()
out["timeout"] = outcome(lambda: socket.create_connection((peer, blackhole), timeout=1.5))
out["timeout_took"] = round(time.monotonic() - t, 1)
nb = socket.socket()
nb.setblocking(False)
out["nonblocking_connect"] = outcome(lambda: nb.connect((peer, closed)))
import select  # noqa: E402
select.select([], [nb], [], 5)
out["so_error"] = errno.errorcode.get(nb.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0)
u = socket.socket()
out["recv_unconnected"] = outcome(lambda: u.recv(1))
out["send_unconnected"] = outcome(lambda: u.send(b"x"))
print(json.dumps(out))
