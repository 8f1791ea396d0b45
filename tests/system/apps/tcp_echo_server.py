"""A selectors-based, non-blocking TCP echo server (stdlib only): tcp_echo_server.py ADDR PORT."""
import selectors
import socket
import sys

sel = selectors.DefaultSelector()
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(512)
srv.setblocking(False)
sel.register(srv, selectors.EVENT_READ)
pending = {}
print("ready", srv.getsockname(), flush=True)
while True:
    for key, events in sel.select():
        s = key.fileobj
        if s is srv:
            try:
                c, _ = srv.accept()
            except BlockingIOError:
                continue
            c.setblocking(False)
            pending[c] = b""
            sel.register(c, selectors.EVENT_READ)
            continue
        if events & selectors.EVENT_READ:
            try:
                data = s.recv(65536)
            except BlockingIOError:
                data = None
            except ConnectionError:
                data = b""
            if data == b"":
                sel.unregister(s)
                pending.pop(s, None)
                s.close()
                continue
            if data:
                pending[s] += data
        if s in pending and pending[s]:
            try:
                n = s.send(pending[s])
                pending[s] = pending[s][n:]
            except BlockingIOError:
                pass
            sel.modify(s, selectors.EVENT_READ | (selectors.EVENT_WRITE if pending[s] else 0))
