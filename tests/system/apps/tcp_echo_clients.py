"""N concurrent clients each echo SIZE bytes through a TCP echo server -> JSON line.

tcp_echo_clients.py ADDR PORT N SIZE
"""
import hashlib
import json
import socket
import sys
import threading
import time

addr, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ok, errors = [], []


def client(i):
    data = hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1)
    data = data[:size]
    try:
        s = socket.create_connection((addr, port), timeout=60)
        s.settimeout(60)

        def writer():
            s.sendall(data)
        w = threading.Thread(target=writer)
        w.start()
        got = bytearray()
        while len(got) < size:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        w.join()
        s.close()
        (ok if bytes(got) == data else errors).append(i)
    except OSError as exc:
        errors.append(f"{i}: {exc!r}")


t0 = time.monotonic()
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
for t in threads:
    t.join()
el = time.monotonic() - t0
print(json.dumps({"ok": len(ok), "errors": errors[:5], "seconds": round(el, 2),
                  "mb_per_s": round(2 * n * size / el / 1e6, 2)}))
