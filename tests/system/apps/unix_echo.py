"""AF_UNIX between two programs: unix_echo.py serve DIR | client DIR.
serve: a stream echo server on DIR/echo.sock and a datagram echo on DIR/dgram.sock.
client: echoes 1 MB through the stream and 50 datagrams; prints a JSON line."""
import hashlib
import json
import os
import socket
import sys
import threading

mode, d = sys.argv[1], sys.argv[2]
stream_path, dgram_path = os.path.join(d, "echo.sock"), os.path.join(d, "dgram.sock")
if mode == "serve":
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(stream_path)
    lst.listen()
    dg = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dg.bind(dgram_path)

    def dgram_echo():
        while True:
            data, addr = dg.recvfrom(65536)
            dg.sendto(data, addr)

    def serve(c):
        with c:
            while data := c.recv(65536):
                c.sendall(data)

    threading.Thread(target=dgram_echo, daemon=True).start()
    print("ready", flush=True)
    while True:
        c, _ = lst.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    blob = os.urandom(1_000_000)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(stream_path)
    threading.Thread(target=lambda: (c.sendall(blob), c.shutdown(socket.SHUT_WR)), daemon=True).start()
    got = bytearray()
    while data := c.recv(65536):
        got += data
    me = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    me.bind(os.path.join(d, f"client-{os.getpid()}.sock"))
    me.settimeout(5)
    echoed = 0
    for i in range(50):
        msg = f"datagram {i} ".encode() * (i + 1)
        me.sendto(msg, dgram_path)
        data, addr = me.recvfrom(65536)
        echoed += data == msg and addr == dgram_path
    print(json.dumps({"stream_ok": hashlib.sha256(got).digest() == hashlib.sha256(blob).digest(),
                      "stream_bytes": len(got), "datagrams": echoed}))
