"""The socket layer's core with no process around it: calls go in as the client
library frames them, replies and readiness come out of ``frames``, messages to
udp and tcp out of ``outbox``; the tests play udp and tcp by answering them."""

from __future__ import annotations

import collections
import itertools
import logging
import os
import shutil

import msgpack
import pytest

from services.socket.core import SocketCore
from services.socket.records import SocketState
from shared.config import load
from shared.ipc import endpoints
from shared.ipc.codec import decode, encode
from shared.ipc.messages import RMEM_MAX, SYS_SOCKET, TCP_EVENTS, UDP_BIND, UDP_BOUND
from shared.skb import SizeClass, SkbPool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CLASSES = [SizeClass(2048, 256), SizeClass(65792, 32)]
_instances = itertools.count()


class Reply:
    def __init__(self, err: int, result: object, ready: list | None) -> None:
        self.err, self.result, self.ready = err, result, ready

    def __repr__(self) -> str:
        return f"Reply(err={self.err}, result={self.result!r})"


class Host(SocketCore):
    """What the socket server process gives the core (services/base.py's Service),
    kept to the bare minimum: no ZeroMQ, no loop."""

    name = "socket_server"

    def __init__(self, tmp_path, config: str = "default.toml") -> None:
        self.cfg = load(os.path.join(ROOT, "configs", config))
        self.instance = f"coretest{os.getpid()}x{next(_instances)}"
        self.rundir = None
        self.log = logging.getLogger("socket-core-test")
        self.counters: collections.Counter[str] = collections.Counter()
        self.owner_ids = {n: self.cfg.service_id(n) for n in self.cfg.services}
        slab = str(tmp_path / "slab")
        SkbPool(slab, owner=0, n_owners=len(self.cfg.services), classes=CLASSES, create=True).close()
        self.pool = SkbPool(slab, owner=self.owner_ids[self.name], n_owners=len(self.cfg.services))
        self.announced: dict[str, list] = {}
        self.watched: dict[int, object] = {}
        self.faults: list[BaseException] = []
        self.setup_core()
        self.state = SocketState(self.instance, *self.cfg.stream_bufs_max(2 * RMEM_MAX))

    # -- the Service interface the core uses --------------------------------------------
    def announce(self, service: str, code: int):
        host = self

        class Announcement:
            def set(self, *fields: object) -> None:
                host.announced[service] = list(fields)
        return Announcement()

    def watch_fd(self, fd: int, handler) -> None:
        self.watched[fd] = handler

    def unwatch_fd(self, fd: int) -> None:
        self.watched.pop(fd, None)

    def skb_items(self, items: list, width: int, handle_at: int, addrs: tuple = ()):
        for item in items:
            yield item, self.pool.take(item[handle_at])

    def fault(self, what: str, exc: BaseException) -> None:
        self.faults.append(exc)

    # -- the test's side ------------------------------------------------------------------
    def sent(self, service: str) -> list[tuple[int, list]]:
        """Messages the core queued for udp or tcp since the last look, decoded."""
        box = self.outbox[service]
        out = [decode(m) for m in box]
        box.clear()
        return out

    def udp_answers_binds(self, port: int = 40000, err: int = 0) -> None:
        """Play udp: answer every UDP_BIND waiting, with ``port`` for an ephemeral one."""
        for code, f in self.sent("udp"):
            if code == UDP_BIND:
                req, sid, addr, p, _ = f
                self.message(UDP_BOUND, req, sid, err, addr or 0x0A420002, p or port)

    def tcp_events(self, *items: list) -> None:
        self.message(TCP_EVENTS, list(items))

    def message(self, code: int, *fields: object) -> None:
        """A message from udp, tcp or ip, through the codec as the process would get it."""
        self.on_message(*decode(encode(code, *fields)))

    def close(self) -> None:
        for fd in list(self.watched):
            os.close(fd)
        self.pool.close()
        shutil.rmtree(endpoints.state_dir(self.instance, self.name), ignore_errors=True)


class Caller:
    """A client process (this one, as far as the kernel is concerned) making calls."""

    def __init__(self, host: Host, cid: bytes) -> None:
        self.host, self.cid = host, cid
        self.reqs = itertools.count(1)
        self.ident = cid + b".t1"

    def send(self, code: int, *fields: object) -> int:
        """Make a call; its request id (the reply may come later: ``reply``)."""
        req = next(self.reqs)
        self.host.syscall(self.ident, encode(code, req, *fields))
        return req

    def reply(self, req: int) -> Reply | None:
        """The reply to ``req`` if it has come (taken from the frames)."""
        for i, (ident, body) in enumerate(self.host.frames):
            if ident != self.ident:
                continue
            r = msgpack.unpackb(body, raw=False)
            if r[0] == req:
                del self.host.frames[i]
                return Reply(r[1], r[2], r[3])
        return None

    def call(self, code: int, *fields: object) -> Reply | None:
        return self.reply(self.send(code, *fields))

    def ok(self, code: int, *fields: object) -> object:
        """A call that must succeed at once: its result."""
        r = self.call(code, *fields)
        assert r is not None, "the call was suspended"
        assert r.err == 0, f"errno {r.err}: {r.result}"
        return r.result

    def socket(self, family: int, type_: int, proto: int = 0) -> int:
        return self.ok(SYS_SOCKET, family, type_, proto)

    def events(self) -> list:
        """Readiness events pushed to this client's event channel: [fd, version, mask, id] each."""
        out = []
        for ident, body in self.host.frames:
            if ident == self.cid + b".ev":
                r = msgpack.unpackb(body, raw=False)
                if r[0] == 0:
                    out.append(r[1:])
        return out


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    h.close()


@pytest.fixture
def host6(tmp_path):
    """A socket core on configs/ipv6.toml: fd66::2/64 and a link-local address on tap0."""
    h = Host(tmp_path, "ipv6.toml")
    yield h
    h.close()


@pytest.fixture
def app(host):
    """A client of ``host``: this test process, root."""
    c = host.new_client(os.urandom(12).hex().encode(), os.getpid(), 0)
    return Caller(host, c.cid)


@pytest.fixture
def app6(host6):
    c = host6.new_client(os.urandom(12).hex().encode(), os.getpid(), 0)
    return Caller(host6, c.cid)
