"""A sink: digest_sink.py PORT; answers each connection, at its end, with the sha256
(first 16 hex digits) of all it got. Prints "ready" once it listens."""
import hashlib
import sys
import threading

from transcript import listener


def serve(c):
    h = hashlib.sha256()
    while (chunk := c.recv(1 << 20)):
        h.update(chunk)
    c.sendall(h.hexdigest()[:16].encode() + b"\n")
    c.close()


s = listener(int(sys.argv[1]))
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
