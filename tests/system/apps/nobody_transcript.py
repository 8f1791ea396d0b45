"""What an unprivileged user may do with sockets: nobody_transcript.py ROOT_DIR SHUT_DIR OWN_DIR [SERVE_PORT]

Run as nobody, on the kernel and on mkstack, the answers must be the same:
privileged ports, SO_PRIORITY above 6 and SO_MARK, SO_REUSEPORT groups of root's (ports 8097 UDP and 8098 TCP,
held by the caller of this), raw sockets, AF_UNIX names where the user may not write or
search, and where it may (the file is then the user's, with its umask). With
SERVE_PORT it then serves one HTTP request on that port.
"""
import errno
import json
import os
import socket
import stat
import sys

root_dir, shut_dir, own_dir = sys.argv[1:4]


def outcome(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def bind(kind, addr):
    s = socket.socket(*kind)
    try:
        s.bind(addr)
    finally:
        s.close()


def join_group(stype, port):
    s = socket.socket(socket.AF_INET, stype)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("0.0.0.0", port))
    finally:
        s.close()


def connect_unix(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    finally:
        s.close()


def option(level, name, value, then=None):
    """setsockopt's outcome, and what getsockopt(then) reads after it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        got = outcome(lambda: s.setsockopt(level, name, value))
        return [got, s.getsockopt(*then)] if then else got
    finally:
        s.close()


os.umask(0o027)
out = {
    "uid": os.getuid(),
    "tcp bind port 80": outcome(lambda: bind((socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", 80))),
    "udp bind port 53": outcome(lambda: bind((socket.AF_INET, socket.SOCK_DGRAM), ("0.0.0.0", 53))),
    "tcp bind port 8089": outcome(lambda: bind((socket.AF_INET, socket.SOCK_STREAM), ("0.0.0.0", 8089))),
    "udp SO_REUSEPORT group of root's": outcome(lambda: join_group(socket.SOCK_DGRAM, 8097)),
    "tcp SO_REUSEPORT group of root's": outcome(lambda: join_group(socket.SOCK_STREAM, 8098)),
    "raw socket": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()),
    "unix bind in a root 0755 dir": outcome(lambda: bind((socket.AF_UNIX, socket.SOCK_STREAM),
                                                         os.path.join(root_dir, "mine.sock"))),
    "file made there": os.path.exists(os.path.join(root_dir, "mine.sock")),
    "unix connect into a root-only dir": outcome(lambda: connect_unix(os.path.join(shut_dir, "s.sock"))),
    "unix connect to a root 0755 socket": outcome(lambda: connect_unix(os.path.join(root_dir, "ro.sock"))),
    "SO_PRIORITY 6": option(socket.SOL_SOCKET, socket.SO_PRIORITY, 6, (socket.SOL_SOCKET, socket.SO_PRIORITY)),
    "SO_PRIORITY 7": option(socket.SOL_SOCKET, socket.SO_PRIORITY, 7, (socket.SOL_SOCKET, socket.SO_PRIORITY)),
    "IP_TOS lowdelay": option(socket.IPPROTO_IP, socket.IP_TOS, 0x10, (socket.SOL_SOCKET, socket.SO_PRIORITY)),
    "SO_MARK": option(socket.SOL_SOCKET, socket.SO_MARK, 1),
}
mine = os.path.join(own_dir, "mine.sock")
out["unix bind in its own dir"] = outcome(lambda: bind((socket.AF_UNIX, socket.SOCK_STREAM), mine))
st = os.lstat(mine) if os.path.lexists(mine) else None
out["its file"] = st and [stat.S_ISSOCK(st.st_mode), st.st_uid == os.getuid(), oct(stat.S_IMODE(st.st_mode))]
print(json.dumps(out), flush=True)
if len(sys.argv) > 4:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(sys.argv[4])))
    s.listen(5)
    print("ready", flush=True)
    c, _ = s.accept()
    c.recv(4096)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nserved by nobody\n")
    c.close()
