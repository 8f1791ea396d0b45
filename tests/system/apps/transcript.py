"""Helpers of the transcript apps: note what happened, print it all at the end."""
import errno
import socket

log = []


def note(what, value):
    log.append(f"{what}: {value}")


def err(fn):
    """fn's result, or the OSError it raised as 'Class ERRNO' (so runs compare)."""
    try:
        return fn()
    except OSError as exc:
        return f"{type(exc).__name__} {errno.errorcode.get(exc.errno, exc.errno)}"


def dump():
    for line in log:
        print(line)


def listener(port):
    """A TCP listener on every address, announced with "ready" on stdout."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    print("ready", flush=True)
    return s
