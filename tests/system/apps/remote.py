"""Sockets driven line by line from stdin, for tests that act between calls (kill a
service while a call waits). Runs on mkstack (launcher.py run) or on the Linux
peer alike. Each command prints {"started": cmd} and then its result as JSON."""
import fcntl
import json
import select
import socket
import sys

socks = {}


def run(cmd, args):
    if cmd == "listen":                       # listen NAME PORT BACKLOG
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(args[1])))
        s.listen(int(args[2]))
        socks[args[0]] = s
        return s.fileno()
    if cmd == "accept":                       # accept LISTENER NAME
        conn, addr = socks[args[0]].accept()
        socks[args[1]] = conn
        return [conn.fileno(), addr[0] if isinstance(addr, tuple) else addr]
    if cmd == "connect":                      # connect NAME HOST PORT
        s = socket.create_connection((args[1], int(args[2])), timeout=30)
        s.settimeout(None)
        socks[args[0]] = s
        return s.getsockname()[1]
    if cmd == "send":                         # send NAME TEXT
        socks[args[0]].sendall(args[1].encode())
        return len(args[1])
    if cmd == "recv":                         # recv NAME N: exactly N bytes (or to EOF)
        n, got = int(args[1]), b""
        while len(got) < n:
            part = socks[args[0]].recv(n - len(got))
            if not part:
                break
            got += part
        return got.decode()
    if cmd == "select":                       # select NAME TIMEOUT
        r, _, _ = select.select([socks[args[0]]], [], [], float(args[1]))
        return bool(r)
    if cmd == "udp":                          # udp NAME PORT
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", int(args[1])))
        socks[args[0]] = s
        return s.getsockname()[1]
    if cmd == "sendto":                       # sendto NAME HOST PORT TEXT
        return socks[args[0]].sendto(args[3].encode(), (args[1], int(args[2])))
    if cmd == "recvfrom":                     # recvfrom NAME (a 5 s timeout)
        socks[args[0]].settimeout(5)
        data, addr = socks[args[0]].recvfrom(65536)
        socks[args[0]].settimeout(None)
        return [data.decode(), addr[0], addr[1]]
    if cmd == "echo_udp":                     # echo_udp NAME: one datagram back to its sender
        data, addr = socks[args[0]].recvfrom(65536)
        socks[args[0]].sendto(data, addr)
        return data.decode()
    if cmd == "calls":                        # calls N: small calls on a new socket, each checked
        s = socket.socket()
        for i in range(int(args[0])):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096 + i % 64)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) != 2 * (4096 + i % 64):
                raise AssertionError(f"call {i}: SO_RCVBUF not what was set")
        s.close()
        return int(args[0])
    if cmd == "pair":                         # pair NAME1 NAME2: an AF_UNIX stream socketpair
        socks[args[0]], socks[args[1]] = socket.socketpair()
        return [socks[args[0]].fileno(), socks[args[1]].fileno()]
    if cmd == "ulisten":                      # ulisten NAME PATH
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(args[1])
        s.listen(4)
        socks[args[0]] = s
        return s.fileno()
    if cmd == "uconnect":                     # uconnect NAME PATH
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(args[1])
        socks[args[0]] = s
        return s.fileno()
    if cmd == "outq":                         # outq NAME: bytes sent and not yet taken (SIOCOUTQ)
        return int.from_bytes(fcntl.ioctl(socks[args[0]].fileno(), 0x5411, bytes(4)), sys.byteorder)
    if cmd == "fileno":
        return socks[args[0]].fileno()
    if cmd == "close":
        socks.pop(args[0]).close()
        return 0
    raise ValueError(f"unknown command {cmd}")


print("ready", flush=True)
for line in sys.stdin:
    cmd, *args = line.split()
    print(json.dumps({"started": cmd}), flush=True)
    try:
        out = {"ok": run(cmd, args)}
    except Exception as exc:                  # reported to the test, which fails on it
        out = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out), flush=True)
