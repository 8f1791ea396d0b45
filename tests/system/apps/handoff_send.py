"""One thread sends, another then ends the stream (stdlib socket only).

    handoff_send.py sink PORT                 each connection: read to EOF, answer the byte count, close
    handoff_send.py run ADDR PORT ROUNDS N    per round: a worker thread sends N 1 KB chunks and
                                              signals; the main thread then shuts the socket down
                                              for writing and reads the sink's count

Prints {"rounds", "short", "bytes_each", "counts_short"}: a send that returned
must be in the stream before a shutdown another thread makes after it, as the
kernel orders them.
"""
import json
import socket
import sys
import threading


def sink(port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(16)
    print("listening", flush=True)
    while True:
        c, _ = srv.accept()
        n = 0
        while True:
            b = c.recv(65536)
            if not b:
                break
            n += len(b)
        c.sendall(str(n).encode())
        c.close()


def run(addr: str, port: int, rounds: int, chunks: int) -> None:
    short = []
    for _ in range(rounds):
        s = socket.create_connection((addr, port), timeout=10)
        sent = threading.Event()

        def worker() -> None:
            for _ in range(chunks):
                s.sendall(b"x" * 1024)
            sent.set()
        t = threading.Thread(target=worker)
        t.start()
        sent.wait(10)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            b = s.recv(100)
            if not b:
                break
            got += b
        t.join()
        s.close()
        if int(got or 0) != chunks * 1024:
            short.append(int(got or 0))
    print(json.dumps({"rounds": rounds, "short": len(short), "bytes_each": chunks * 1024, "counts_short": short}))


if __name__ == "__main__":
    if sys.argv[1] == "sink":
        sink(int(sys.argv[2]))
    else:
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
