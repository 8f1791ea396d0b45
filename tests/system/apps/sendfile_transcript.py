"""sendfile three ways: sendfile_transcript.py HOST PORT FILE -> a transcript.

To a sink on HOST:PORT that answers each connection with the sha256 of what it
got: socket.sendfile (whole file, then an offset and count), os.sendfile on
the socket's fileno() by hand (position and explicit offsets), and asyncio's
loop.sock_sendfile and loop.sendfile (streams) on a non-blocking socket.
"""
import asyncio
import hashlib
import os
import socket
import sys

from transcript import dump, note

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, "rb").read()


def digest_of(b):
    return hashlib.sha256(b).hexdigest()[:16]


def answer(s):
    s.shutdown(socket.SHUT_WR)
    got = b""
    while (chunk := s.recv(100)):
        got += chunk
    s.close()
    return got.decode().strip()


with open(path, "rb") as f:
    s = socket.create_connection((host, port))
    note("socket.sendfile", s.sendfile(f))
    note("position after", f.tell())
    note("sink got the file", answer(s) == digest_of(data))
    s = socket.create_connection((host, port))
    note("socket.sendfile offset/count", s.sendfile(f, 1000, 5000))
    note("position after", f.tell())
    note("sink got the slice", answer(s) == digest_of(data[1000:6000]))
    s = socket.create_connection((host, port))
    f.seek(10)
    sent = 0
    while (n := os.sendfile(s.fileno(), f.fileno(), None, 65536)):
        sent += n
    note("os.sendfile from the position", sent)
    note("position after", f.tell())
    n1 = os.sendfile(s.fileno(), f.fileno(), 0, 10)
    note("os.sendfile at offset 0", n1)
    note("position unchanged", f.tell())
    note("os.sendfile past the end", os.sendfile(s.fileno(), f.fileno(), len(data) + 5, 100))
    note("sink got it", answer(s) == digest_of(data[10:] + data[:10]))


async def with_asyncio():
    loop = asyncio.get_running_loop()
    s = socket.create_connection((host, port))
    s.setblocking(False)
    with open(path, "rb") as f:
        note("loop.sock_sendfile", await loop.sock_sendfile(s, f))
    s.setblocking(True)
    note("sink got it (sock_sendfile)", answer(s) == digest_of(data))
    reader, writer = await asyncio.open_connection(host, port)
    with open(path, "rb") as f:
        note("loop.sendfile", await loop.sendfile(writer.transport, f, 7, 100000))
    writer.write_eof()
    got = await reader.read()
    writer.close()
    note("sink got it (loop.sendfile)", got.decode().strip() == digest_of(data[7:100007]))


asyncio.run(with_asyncio())
dump()
