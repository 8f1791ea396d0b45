"""The I/O shell every layer process shares: one receive-and-dispatch loop.

A service binds a PULL inbox for packet batches and a ROUTER control endpoint,
pushes batches to its neighbours' inboxes, and hands decoded messages to its
engine code. Input never crashes it: a bad message is counted and dropped.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import errno
import logging
import os
import signal
import sys
import time
from typing import Callable, Iterator

import zmq

from shared import procfs
from shared.config import Config, ConfigError, check_instance, load
from shared.ipc import endpoints
from shared.ipc.codec import BadMessage, decode, encode
from shared.ipc.readiness import Readiness
from shared.ipc.zflags import EVENTS, NOBLOCK, POLLIN
from shared.ipc.messages import ANNOUNCE_ACK, CTL_ADDR, CTL_PING, CTL_ROUTE, CTL_SHOW, CTL_STATS
from shared.skb import Skb, SkbPool, StaleHandle

INBOX_BATCH = 256          # messages drained from the inbox per loop turn
SNDHWM = 2000              # messages queued per neighbour before sends fail
ANNOUNCE_RETRY = 0.2       # seconds between repeats of an unacknowledged announcement
ANNOUNCE_UNSENT = 0.005    # ... and of one that could not be sent (the peer restarting)
HOLD_MAX = 1024            # skbs held, over all neighbours, for neighbours that cannot take them
HOLD_TIME = 0.5            # seconds a held message waits before it is dropped
HOLD_RETRY = 0.002         # seconds between tries to send held messages
REPLAY_KEEP = 64           # messages of skbs remembered per neighbour, to hand again to its next incarnation
CRASH_HOOK = "{name}.crash-on-start"   # test hook: this file in the run directory makes the service exit(3)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3       # glibc mallopt parameters
MMAP_THRESHOLD = 4 << 20   # blocks below this come from the heap, not a fresh mmap
TRIM_THRESHOLD = 8 << 20   # free heap kept before it is given back to the kernel


def tune_malloc() -> None:
    """Keep payload-sized blocks (a 64 KB segment, a turn's delivered data) in the
    heap: by default glibc gives them back to the kernel on free and the next one
    page-faults every page again, which made each 64 KB copy cost ~40 us instead
    of ~3 us. Costs up to TRIM_THRESHOLD of free heap kept resident per process."""
    try:
        mallopt = ctypes.CDLL(None).mallopt      # libc's, through the process's own symbols
    except (OSError, AttributeError):             # not glibc: nothing to tune
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)


LOWER_LAYERS = ("netdev", "ip")      # with the drivers: the device side of the stack


def place(cfg: Config, name: str) -> int | None:
    """Pin this process, and so the ZeroMQ I/O thread it starts next, to one CPU
    ([stack] cpu_affinity = "split"): the drivers, netdev and ip on the first CPU
    the process may use, the transports and the socket server on the second.
    Measured on the 2-core VM: a ZeroMQ hop whose sender, receiver and I/O
    threads share a CPU costs a third of one that wakes another CPU (a bare
    10-hop ring: 317 us on one CPU, 881-1095 us spread), while two groups keep
    the layers running in parallel under bulk load, as RPS/IRQ affinity does.
    Returns the CPU, or None when left to the scheduler."""
    cpus = sorted(os.sched_getaffinity(0))
    if cfg.cpu_affinity != "split" or len(cpus) < 2:
        return None
    lower = name in LOWER_LAYERS or name.startswith("driver")
    cpu = cpus[0] if lower else cpus[1]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return None
    return cpu


class Announcement:
    """State a service must get across to a peer (a protocol registration, say):
    the whole state in one idempotent message, repeated until the peer answers
    with its token. A restarted peer that lost the message gets it again."""

    def __init__(self, service: str, code: int) -> None:
        self.service, self.code = service, code
        self.token = 0
        self.fields: tuple = ()
        self.acked = True
        self.err = 0
        self.retry_at = 0.0

    def set(self, *fields: object) -> None:
        if fields == self.fields and self.token:
            return
        self.token += 1
        self.fields, self.acked, self.retry_at = fields, False, 0.0

    def ack(self, token: int, err: int) -> None:
        if token == self.token:
            self.acked, self.err = True, err


class Service:
    """Subclasses set ``kind`` and implement ``on_message`` (and maybe timers)."""

    kind = "service"

    def __init__(self, argv: list[str] | None = None) -> None:
        ap = argparse.ArgumentParser(prog=f"mkstack-{self.kind}")
        ap.add_argument("--config", required=True)
        ap.add_argument("--instance", default="default")
        ap.add_argument("--name", default=self.kind)
        ap.add_argument("--epoch", type=int, default=0, help="incarnation number (from the supervisor)")
        args = ap.parse_args(argv)
        tune_malloc()
        os.umask(0o077)         # endpoints, state and logs: root's alone (the public ones are opened on purpose)
        self.name: str = args.name
        self.instance = check_instance(args.instance)
        self.cfg: Config = load(args.config)
        self.rundir = endpoints.run_dir(self.cfg.run_dir, self.instance)
        if os.path.exists(os.path.join(self.rundir, CRASH_HOOK.format(name=self.name))):
            print(f"mkstack-{self.name}: {CRASH_HOOK.format(name=self.name)} in the run directory: "
                  "crashing on start (a test hook)", file=sys.stderr)
            sys.exit(3)
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format=f"%(asctime)s {self.name}[%(process)d] %(levelname)s %(message)s")
        self.log = logging.getLogger(self.name)
        self.service_id = self.cfg.service_id(self.name)
        self.owner_ids = {n: self.cfg.service_id(n) for n in self.cfg.services}   # skb owner ids, looked up per packet
        self.epoch = args.epoch
        self.pool = SkbPool(endpoints.slab_path(self.instance), owner=self.service_id,
                            n_owners=len(self.cfg.services), epoch=self.epoch)
        self.counters: collections.Counter[str] = collections.Counter()
        self.cpu = place(self.cfg, self.name)   # before the context: its I/O thread inherits the CPU
        self.ctx = zmq.Context.instance()  # created after exec, never inherited
        self.inbox = self._bind(zmq.PULL, endpoints.inbox(self.rundir, self.name))
        self.ctl = self._bind(zmq.ROUTER, endpoints.control(self.rundir, self.name))
        # what the loop waits on, and who handles each (a ZeroMQ socket or a file descriptor)
        self._readiness = Readiness()
        self._readiness.add_socket(self.inbox, lenient=True)
        self._readiness.add_socket(self.ctl)
        self._handlers: dict[zmq.Socket | int, Callable[[], None]] = {self.inbox: self._drain_inbox,
                                                                      self.ctl: self._serve_control}
        self._fds: dict[int, Callable[[], None]] = {}
        self._out: dict[str, zmq.Socket] = {}
        self.announcements: list[Announcement] = []
        self._held: dict[str, collections.deque] = {}   # per neighbour: (deadline, frame, skbs) to send
        self._held_skbs = 0
        self._hold_at = 0.0          # when to try the held frames again (0: none held)
        self._sent: dict[str, collections.deque] = {}   # per neighbour: (frame, handles) of its last messages
        self.running = True
        self.started = time.monotonic()
        self.phases: dict[str, object] = {}   # this incarnation's start, for the recovery report
        self._errors_logged = 0
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        # a signal wakes the poll at once (pyzmq resumes an interrupted poll for its whole
        # timeout, so a stop would otherwise wait for the next timer, up to a second)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        self.watch_fd(wake_r, lambda: _drain(wake_r))

    # -- plumbing -----------------------------------------------------------
    def _bind(self, kind: int, ep: str) -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, SNDHWM)
        s.bind(ep)
        return s

    def _stop(self, *_: object) -> None:
        self.running = False

    def watch_fd(self, fd: int, handler: Callable[[], None]) -> None:
        self.unwatch_fd(fd)
        self._readiness.add_fd(fd)
        self._handlers[fd] = self._fds[fd] = handler

    def watch_socket(self, sock: zmq.Socket, handler: Callable[[], None], shared: bool = False) -> None:
        """Call ``handler`` whenever ``sock`` is readable (e.g. the syscall endpoint). ``shared``:
        code other than the handler sends or receives on it too (Readiness)."""
        self._readiness.add_socket(sock, shared=shared)
        self._handlers[sock] = handler

    def end_of_turn(self) -> None:
        """Runs after every loop turn: flush batches collected during it."""

    def announce(self, service: str, code: int) -> Announcement:
        """Register state to announce to ``service``; ``set`` it to send."""
        a = Announcement(service, code)
        self.announcements.append(a)
        return a

    @property
    def ready(self) -> bool:
        """Every announcement acknowledged: the supervisor reports the service as running."""
        return all(a.acked for a in self.announcements)

    def _announce(self, now: float) -> float | None:
        """Send due announcements; the next time one is due."""
        due = None
        for a in self.announcements:
            if a.acked:
                continue
            if now >= a.retry_at:
                a.retry_at = now + ANNOUNCE_RETRY
                try:
                    self.peer(a.service).send(encode(a.code, a.token, *a.fields), zmq.NOBLOCK)
                except zmq.Again:
                    a.retry_at = now + ANNOUNCE_UNSENT
            due = a.retry_at if due is None else min(due, a.retry_at)
        return due

    def unwatch_fd(self, fd: int) -> None:
        if self._fds.pop(fd, None) is not None:
            del self._handlers[fd]
            self._readiness.remove_fd(fd)

    def peer(self, service: str) -> zmq.Socket:
        """The PUSH socket to ``service``'s inbox (reconnects by itself after restarts)."""
        s = self._out.get(service)
        if s is None:
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, SNDHWM)
            # queue nothing for a peer that is not connected: a handle must not
            # sit in a pipe to a dead process (its skb is reclaimed meanwhile)
            s.setsockopt(zmq.IMMEDIATE, 1)
            endpoints.connect_fast(s, endpoints.inbox(self.rundir, service))
            self._out[service] = s
            self._sent[service] = collections.deque(maxlen=REPLAY_KEEP)
            mon = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            self.watch_socket(mon, lambda: self._peer_gone(service, mon))
        return s

    def _peer_gone(self, service: str, mon: zmq.Socket) -> None:
        """The neighbour's end of the connection closed: it died. What we sent it
        and it never took (still in its ZeroMQ queues, or in the kernel's socket
        buffer) died with it; those skbs are still ours to resend (the supervisor
        spares them), and nobody read them, so sending them to the next
        incarnation duplicates nothing. Without this, a lost TCP segment waits
        for the peer's retransmission timer (200 ms and more)."""
        while mon.poll(0):
            mon.recv_multipart()
        ring = self._sent[service]
        to = self.owner_ids[service]
        in_transit = self.pool.in_transit
        again = [frame for frame, handles in ring if all(in_transit(h, to) for h in handles)]
        ring.clear()
        if not again:
            return
        now = time.monotonic()
        q = self._held.setdefault(service, collections.deque())
        # ahead of anything held meanwhile; no skbs: the handles are sent as they were, never given again
        q.extendleft((now + HOLD_TIME, frame, []) for frame in reversed(again))
        self._hold_at = now
        self.counters["replayed_to_restarted"] += len(again)

    def skb_items(self, items: list, width: int, handle_at: int, addrs: tuple[int, ...] = ()
                  ) -> Iterator[tuple[list, Skb]]:
        """The well-formed items of a batch (``width`` ints each, but an IPv6 address of
        16 bytes where ``addrs`` allows) with the skb whose handle is at ``handle_at``;
        malformed items are counted, stale handles skipped."""
        for item in items:
            if not (isinstance(item, list) and len(item) == width and (
                    all(type(x) is int for x in item) or addrs and all(
                        type(x) is int or i in addrs and type(x) is bytes and len(x) == 16
                        for i, x in enumerate(item)))):
                self.counters["bad_messages"] += 1
                continue
            try:
                skb = self.pool.take(item[handle_at])
            except StaleHandle:
                continue
            yield item, skb

    def send_items(self, service: str, code: int, items: list[list], skbs: list[Skb]) -> bool:
        """Send ``[code, items]`` where each item's handle came from ``give``-ing
        the matching skb to ``service``; if it can be neither sent nor held for
        a restarting ``service``, free the skbs."""
        if not items:
            return True
        if self._send_or_hold(service, encode(code, items), skbs):
            return True
        self._drop(service, skbs)
        return False

    def send_skbs(self, service: str, code: int, ifindex: int, skbs: list[Skb], keep: bool = False) -> bool:
        """Hand ``skbs`` to ``service`` in one message. If it cannot take them
        (restarting, or its queue is full) they wait in the hold queue; if that
        is full too, free them and count the drop, or with ``keep`` leave them
        owned by the caller (who queues them itself) to try again."""
        if not skbs:
            return True
        to = self.owner_ids[service]
        give = self.pool.give
        handles = [give(skb, to) for skb in skbs]
        frame = encode(code, ifindex, handles)
        if keep:
            return self._send(service, frame, skbs)
        if self._send_or_hold(service, frame, skbs):
            return True
        self._drop(service, skbs)
        return False

    def _drop(self, service: str, skbs: list[Skb]) -> None:
        self.counters[f"drop_{service}_unreachable"] += len(skbs)
        for skb in skbs:
            self.pool.free(skb)

    def _send(self, service: str, frame: bytes, skbs: list[Skb]) -> bool:
        """One message of given skbs; on failure they are the caller's again."""
        try:
            self.peer(service).send(frame, NOBLOCK)
            if skbs:
                self._sent[service].append((frame, [skb.handle for skb in skbs]))
            return True
        except zmq.Again:
            for skb in skbs:
                self.pool.take_back(skb)
            return False

    def _send_or_hold(self, service: str, frame: bytes, skbs: list[Skb]) -> bool:
        """Send, or keep for a neighbour that cannot take it now, behind what
        already waits for it. A restarted neighbour is back within tens of ms:
        frames dropped meanwhile cost TCP a retransmission timeout (200 ms
        and more at the peer), frames held cost only the wait. False: the
        hold queue is full (HOLD_MAX skbs); the skbs are the caller's."""
        q = self._held.get(service)
        if not q and self._send(service, frame, skbs):
            return True
        if q:
            for skb in skbs:
                self.pool.take_back(skb)
        if self._held_skbs + len(skbs) > HOLD_MAX:
            return False
        now = time.monotonic()
        self._held.setdefault(service, collections.deque()).append((now + HOLD_TIME, frame, skbs))
        self._held_skbs += len(skbs)
        self.counters["held_for_restart"] += len(skbs)
        self._hold_at = self._hold_at or now + HOLD_RETRY
        return True

    def notify(self, service: str, frame: bytes) -> None:
        """A message with no skbs that must reach a neighbour that may be restarting
        (held like packets; dropped only if the hold queue is full)."""
        if not self._send_or_hold(service, frame, []):
            self.counters[f"drop_{service}_unreachable"] += 1

    def _retry_held(self, now: float) -> None:
        self._hold_at = 0.0
        for service, q in self._held.items():
            to = self.owner_ids[service]
            while q:
                deadline, frame, skbs = q[0]
                if now < deadline:
                    for skb in skbs:
                        self.pool.give(skb, to)
                    if not self._send(service, frame, skbs):
                        self._hold_at = now + HOLD_RETRY
                        break
                else:                  # waited long enough: the neighbour is not coming back soon
                    self._drop(service, skbs)
                q.popleft()
                self._held_skbs -= len(skbs)

    # -- the loop -----------------------------------------------------------
    def on_message(self, code: int, fields: tuple) -> None:
        raise NotImplementedError

    def on_control(self, code: int, fields: tuple) -> object:
        """Service-specific control requests; return the result or raise OSError."""
        if code == CTL_SHOW:
            return self.show(fields.what)
        if code == CTL_ADDR and isinstance(getattr(self, "local", None), set):
            return self.change_addr(*fields)
        if code == CTL_ROUTE and getattr(self, "fib", None) is not None:
            from services.routes import change_route   # services that route keep their own FIB copy
            r = change_route(self.fib, self.cfg, *fields)  # type: ignore[attr-defined]
            return {"dst": fields.dst, "ifindex": r.ifindex}
        raise OSError(errno.EINVAL, "unknown control request")

    def change_addr(self, op: str, text: str, dev: str) -> dict:
        """addr add|del in a service that keeps the set of local addresses (and maybe a FIB)."""
        from services.routes import add_connected, check_addr, drop_connected
        iface, d = check_addr(self.cfg, text, dev)
        fib = getattr(self, "fib", None)
        if op == "add":
            self.local.add(int(iface.ip))  # type: ignore[attr-defined]
            if fib is not None:
                add_connected(fib, iface, d)
        elif op == "del":
            self.local.discard(int(iface.ip))  # type: ignore[attr-defined]
            if fib is not None:
                drop_connected(fib, iface, d)
        else:
            raise OSError(errno.EINVAL, f"unknown addr operation {op!r}")
        return {"addr": str(iface), "dev": dev}

    def show(self, what: str) -> object:
        raise OSError(errno.EINVAL, f"nothing to show as {what!r}")

    def timer_at(self) -> float | None:
        """Next monotonic time ``on_timer`` must run (None: no timer)."""
        return None

    def on_timer(self, now: float) -> None:
        pass

    def stats(self) -> dict:
        out = dict(self.counters)
        out["skb_alloc_drops"] = self.pool.drops
        out["skb_stale_handles"] = self.pool.stale
        if self.cpu is not None:
            out["cpu"] = self.cpu
        out["start_phases"] = self.phases
        return out

    def fault(self, what: str, exc: BaseException) -> None:
        """Count a failure caused by input; log the first few with a traceback."""
        self.counters[f"err_{what}"] += 1
        if self._errors_logged < 20:
            self._errors_logged += 1
            self.log.exception("%s: %s", what, exc)

    def _drain_inbox(self) -> None:
        inbox = self.inbox
        for i in range(INBOX_BATCH):
            # after the first, ZMQ_EVENTS tells more cheaply than the zmq.Again a NOBLOCK
            # recv raises on an empty inbox (3.9 against 5.8 us); either way the inbox
            # is left with nothing to ask before the next wait
            if i and not inbox.get(EVENTS) & POLLIN:
                self._readiness.settled(inbox)
                return
            try:
                frame = inbox.recv(NOBLOCK)
            except zmq.Again:
                self._readiness.settled(inbox)
                return
            try:
                code, fields = decode(frame)
            except BadMessage:
                self.counters["bad_messages"] += 1
                continue
            try:
                if code == ANNOUNCE_ACK:
                    for a in self.announcements:
                        if a.code == fields.msg:
                            a.ack(fields.token, fields.err)
                    continue
                self.on_message(code, fields)
            except Exception as exc:  # a service never dies on input
                self.fault("message", exc)

    def _serve_control(self) -> None:
        for _ in range(64):
            try:
                parts = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) < 2:
                continue
            ident, body = parts[0], parts[-1]
            try:
                code, fields = decode(body)
                if code == CTL_PING:
                    result: object = {"pid": os.getpid(), "name": self.name, "epoch": self.epoch,
                                      "ready": self.ready}
                elif code == CTL_STATS:
                    result = self.stats()
                else:
                    result = self.on_control(code, fields)
                reply = encode(0, result)
            except BadMessage as exc:
                reply = encode(errno.EINVAL, str(exc))
            except OSError as exc:
                reply = encode(exc.errno or errno.EINVAL, exc.strerror or str(exc))
            except Exception as exc:
                self.fault("control", exc)
                reply = encode(errno.EIO, f"{exc.__class__.__name__}: {exc}")
            try:
                self.ctl.send_multipart([ident, b"", reply] if len(parts) > 2 else [ident, reply], zmq.NOBLOCK)
            except zmq.ZMQError:
                self.counters["control_reply_drops"] += 1

    def busy(self) -> bool:
        """True if the service has work that must not wait for I/O (NAPI-style)."""
        return False

    def start_phases(self, t0: float, events: list) -> bool:
        """Record when this incarnation first took a message and was first ready
        (ms from its promotion or process start); False once both are known."""
        ms = round((time.monotonic() - t0) * 1000, 1)
        if "first_msg_ms" not in self.phases and any(what is self.inbox for what in events):
            self.phases["first_msg_ms"] = ms
        if "ready_ms" not in self.phases and self.ready:
            self.phases["ready_ms"] = ms
        return "first_msg_ms" not in self.phases or "ready_ms" not in self.phases

    def run(self) -> None:
        t0 = started_at()
        self.phases["init_ms"] = round((time.monotonic() - t0) * 1000, 1)
        self.phases["start"] = "promoted" if _promoted_at is not None else "cold"
        if _standby_wait_ms:
            self.phases["standby_wait_ms"] = _standby_wait_ms
        self.log.info("up (epoch %d, pid %d, %s start, %.0f ms to here)", self.epoch, os.getpid(),
                      self.phases["start"], self.phases["init_ms"])
        starting = True
        counters, handlers = self.counters, self._handlers
        wait, touched = self._readiness.wait, self._readiness.touched
        while self.running:
            # due timers first, so each turn asks timer_at once (ip's and the socket server's
            # scan their tables); what they send goes out with an end of turn of their own
            now = time.monotonic()
            at = self.timer_at()
            if at is not None and now >= at:
                try:
                    self.on_timer(now)
                except Exception as exc:
                    self.fault("timer", exc)
                self.end_of_turn()
                at = self.timer_at()
            if self.announcements:
                due = self._announce(now)
                if due is not None:
                    at = due if at is None else min(at, due)
            if self._hold_at:
                at = self._hold_at if at is None else min(at, self._hold_at)
            if self.busy():
                timeout = 0.0
            elif at is None:
                timeout = 1.0
            else:
                timeout = min(1.0, at - time.monotonic())
            try:
                ready = wait(timeout)
            except zmq.ZMQError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            counters["loop_turns"] += 1
            if starting:
                starting = self.start_phases(t0, ready)
            if not ready:
                counters["loop_turns_idle"] += 1
            for what in ready:
                handler = handlers.get(what)
                if handler is None:          # unwatched by an earlier handler of this turn
                    continue
                if type(what) is not int:
                    touched.add(what)        # it may hold more, or its handler took the ZMQ_FD's signal
                try:
                    handler()
                except Exception as exc:
                    self.fault("message" if what is self.inbox else "io" if type(what) is int else "socket", exc)
            if self.busy():                  # NAPI polling: the device is read again without waiting for it
                for fd, handler in list(self._fds.items()):
                    if fd not in ready:
                        try:
                            handler()
                        except Exception as exc:
                            self.fault("io", exc)
            if self._hold_at:
                now = time.monotonic()
                if now >= self._hold_at:
                    self._retry_held(now)
            self.end_of_turn()
        self.close()
        self.log.info("down")

    def close(self) -> None:
        for s in [*self._readiness.sockets(), *self._out.values()]:
            s.close(0)
        self._readiness.close()


def _drain(fd: int) -> None:
    try:
        os.read(fd, 512)
    except BlockingIOError:
        pass


PROFILE_ENV = "MKSTACK_PROFILE"   # a directory: each service writes <name>.pstats there when it stops
STANDBY = "--standby"             # start as the service's warm standby: imported, waiting to be promoted
_promoted_at: float | None = None
_standby_wait_ms = 0.0             # promotion to the standby reading it (it was still importing)


def started_at() -> float:
    """Monotonic time this incarnation began: its promotion, or the process's start."""
    if _promoted_at is not None:
        return _promoted_at
    ticks = procfs.start_time(os.getpid())
    if ticks is None:
        return time.monotonic()
    return int(ticks) / os.sysconf("SC_CLK_TCK")     # since boot, as CLOCK_MONOTONIC on Linux


def wait_for_promotion() -> bool:
    """A warm standby: everything imported, nothing bound. The supervisor promotes
    it by writing the incarnation number (the epoch) and its monotonic clock on
    its stdin; an end of file (the supervisor went, or no longer wants it) ends
    it. Skips the ~150-250 ms of interpreter start and imports on the recovery
    path. The incarnation counts from the supervisor's write: a standby still
    importing then (started as an interpreter, not forked by the zygote) shows
    the wait in its start-up phases."""
    global _promoted_at, _standby_wait_ms
    line = sys.stdin.buffer.readline().split()
    if not line or not line[0].isdigit():
        return False
    now = time.monotonic()
    try:
        _promoted_at = min(now, float(line[1]))
    except (IndexError, ValueError):
        _promoted_at = now
    _standby_wait_ms = round((now - _promoted_at) * 1000, 1)
    argv = [a for a in sys.argv[1:] if a != STANDBY]
    sys.argv[1:] = [*argv, "--epoch", line[0].decode()]
    return True


def main(cls: type[Service]) -> None:
    if STANDBY in sys.argv[1:] and not wait_for_promotion():
        return
    try:
        svc = cls()
    except ConfigError as exc:
        print(f"mkstack-{cls.kind}: config: {exc}", file=sys.stderr)
        sys.exit(2)
    where = os.environ.get(PROFILE_ENV)
    if not where:
        svc.run()
        return
    import cProfile
    prof = cProfile.Profile(time.process_time)      # CPU, not the time spent blocked in poll
    prof.runcall(svc.run)
    prof.dump_stats(os.path.join(where, f"{svc.name}.pstats"))
