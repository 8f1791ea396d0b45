"""Bulk TCP with checksums, for either side of the TAP (stdlib socket only).

    tcp_xfer.py serve PORT [ADDR]     each connection: a line "get N" (we send N bytes) or "put"
                                      (we read to EOF); one JSON line per transfer on stdout; on
                                      0.0.0.0, or ADDR (:: is dual stack)
    tcp_xfer.py put ADDR PORT N       send N bytes, read the server's verdict
    tcp_xfer.py get ADDR PORT N       receive N bytes

Every transfer prints {"dir", "bytes", "sha256", "seconds"}; the data is random
slices of a random pool, so a byte lost, repeated or reordered changes the hash.
With XFER_PROGRESS=FILE, put and get append "wall-time bytes" lines to FILE as
the data moves (at most a hundred a second: a stall is measured to 10 ms). XFER_SEND=N makes
each sendall N bytes (256 KB by default). With XFER_PATTERN=1
the data is instead each 8-byte word's own stream offset (big-endian), and get
also reports the first offset where the bytes differ and the offset they came from.
"""
import array
import hashlib
import json
import os
import socket
import sys
import threading
import time

CHUNK = 256 * 1024
SEND = int(os.environ.get("XFER_SEND", CHUNK))   # bytes per sendall (small ones: sends that do not wait)
POOL = os.urandom(4 * 1024 * 1024)
PATTERN = bool(os.environ.get("XFER_PATTERN"))


def pattern(off: int, n: int) -> bytes:
    """Bytes [off, off + n) of the stream whose every 8-byte word is its own offset."""
    first = off // 8
    words = array.array("Q", range(first * 8, (off + n + 7) // 8 * 8, 8))
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()[off - first * 8:off - first * 8 + n]


def first_wrong(off: int, data: bytes) -> dict | None:
    """Where ``data`` (at stream offset ``off``) departs from the pattern, and what word is there."""
    want = pattern(off, len(data))
    if data == want:
        return None
    i = next(i for i in range(len(data)) if data[i] != want[i])
    at = i - (off + i) % 8
    word = data[at:at + 8] if at >= 0 else b""
    return {"bad_at": off + i, "found_word": int.from_bytes(word, "big") if len(word) == 8 else None}


class Progress:
    def __init__(self) -> None:
        path = os.environ.get("XFER_PROGRESS")
        self.f = open(path, "a", buffering=1) if path else None
        self.last = 0.0

    def __call__(self, n: int) -> None:
        now = time.time()
        if self.f is not None and now - self.last >= 0.01:
            self.f.write(f"{now:.3f} {n}\n")
            self.last = now


PROGRESS = Progress()


def send_n(s: socket.socket, n: int) -> str:
    h = hashlib.sha256()
    sent = 0
    while sent < n:
        if PATTERN:
            block = pattern(sent, min(SEND, n - sent))
        else:
            at = int.from_bytes(os.urandom(3), "big") % (len(POOL) - CHUNK)
            block = POOL[at:at + min(SEND, n - sent)]
        s.sendall(block)
        h.update(block)
        sent += len(block)
        PROGRESS(sent)
    return h.hexdigest()


WRONG: list[dict] = []                 # with XFER_PATTERN: where get's bytes went wrong


def recv_all(s: socket.socket) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    while True:
        data = s.recv(CHUNK)
        if not data:
            return n, h.hexdigest()
        if PATTERN and len(WRONG) < 5:
            bad = first_wrong(n, data)
            if bad is not None:
                WRONG.append(dict(bad, recv_at=n, recv_len=len(data)))
        h.update(data)
        n += len(data)
        PROGRESS(n)


def report(direction: str, n: int, digest: str, t0: float) -> None:
    print(json.dumps({"dir": direction, "bytes": n, "sha256": digest,
                      "seconds": round(time.monotonic() - t0, 2)}), flush=True)


def serve_one(c: socket.socket) -> None:
    with c:
        head = b""
        while not head.endswith(b"\n") and len(head) < 100:   # byte by byte: the rest is the data
            head += c.recv(1) or b"\n"
        line = head.decode().split()
        t0 = time.monotonic()
        if line[:1] == ["get"]:
            n = int(line[1])
            digest = send_n(c, n)
            c.shutdown(socket.SHUT_WR)
            c.recv(1)                        # the client closes once it has it all
            report("served", n, digest, t0)
        else:
            n, digest = recv_all(c)
            c.sendall(json.dumps({"bytes": n, "sha256": digest}).encode() + b"\n")
            report("stored", n, digest, t0)


def main() -> None:
    mode = sys.argv[1]
    if mode == "serve":
        host = sys.argv[3] if len(sys.argv) > 3 else "0.0.0.0"
        six = ":" in host
        srv = socket.create_server((host, int(sys.argv[2])), family=socket.AF_INET6 if six else socket.AF_INET,
                                   dualstack_ipv6=host == "::")
        print(json.dumps({"listening": srv.getsockname()[1]}), flush=True)
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve_one, args=(c,), daemon=True).start()
    addr, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s = socket.create_connection((addr, port), timeout=120)
    t0 = time.monotonic()
    if mode == "put":
        s.sendall(b"put\n")
        digest = send_n(s, n)
        s.shutdown(socket.SHUT_WR)
        verdict = json.loads(s.makefile("rb").readline())
        report("put", n, digest, t0)
        if verdict != {"bytes": n, "sha256": digest}:
            sys.exit(f"server got {verdict}")
    else:
        s.sendall(f"get {n}\n".encode())
        got, digest = recv_all(s)
        if WRONG:
            print(json.dumps({"wrong": WRONG}), flush=True)
        report("get", got, digest, t0)
        if got != n:
            sys.exit(f"get: the stream ended after {got} of {n} bytes")
    s.close()


if __name__ == "__main__":
    main()
