"""A stand-in socket server for the client library's unit tests: the hello socket
that issues a client id, and a syscall ROUTER whose requests a subclass answers."""

import os
import socket as ksock
import tempfile
import threading

import msgpack
import zmq


class StandInServer:
    """Issues ``cid`` on the hello socket; every (identity, request) on the syscall
    ROUTER goes to ``on_request`` (in the server's thread) until ``close``, with a
    fenced call's fence in ``fence`` meanwhile."""

    def __init__(self, cid: bytes) -> None:
        self.cid = cid
        self.fence: int | None = None
        self.dir = tempfile.mkdtemp(prefix="mks-standin-")
        self.endpoint = f"ipc://{self.dir}/syscall"
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind(self.endpoint)
        self.hello = ksock.socket(ksock.AF_UNIX, ksock.SOCK_STREAM)
        self.hello.bind(os.path.join(self.dir, "hello"))
        self.hello.listen()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._issue_ids, self._serve)]
        for t in self.threads:
            t.start()

    def _issue_ids(self) -> None:
        self.hello.settimeout(0.1)
        while not self.stop.is_set():
            try:
                c, _ = self.hello.accept()
            except (TimeoutError, OSError):
                continue
            c.sendall(b"0 " + self.cid + b"\n")
            c.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            if not self.router.poll(100):
                continue
            ident, *parts = self.router.recv_multipart()
            # a fenced call comes as [fence, request]: the fence is the caller's last post
            self.fence = msgpack.unpackb(parts[0]) if len(parts) == 2 else None
            self.on_request(ident, msgpack.unpackb(parts[-1]))

    def on_request(self, ident: bytes, request: list) -> None:
        raise NotImplementedError

    def reply(self, ident: bytes, req: int, result: object) -> None:
        self.router.send_multipart([ident, msgpack.packb([req, 0, result, None])])

    def close(self) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        for t in self.threads:
            t.join()
        self.router.close(0)
        self.ctx.term()
        self.hello.close()
