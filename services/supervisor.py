"""The supervisor (init + MINIX's reincarnation server), and its watchdog.

The supervisor spawns one process per layer and keeps a warm standby of each
(started, imported, waiting for its epoch on stdin); it sees a death at once
through a pidfd, promotes the standby, reclaims the dead one's skbs, pings every
service on its control endpoint (a hung one is killed), and takes
fault-injection requests (``kill``, ``restart``). A service killed from outside
comes back at once; one that dies by itself soon after starting, again and
again, is crash-looping and waits, twice as long each time.

Services outlive the supervisor. Its watchdog (a small process of the
instance, started by the supervisor, which in turn restarts the watchdog if
that dies) starts a new supervisor when the supervisor dies; the new one adopts
the running services from the run directory (``services.json``: pid and epoch
of each, checked against /proc) by pidfd, and goes on from there.

``python -m services.supervisor --config C --instance I [--adopt | --watchdog]``
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import zmq

from shared import procfs
from shared.config import Config, ConfigError, check_instance, load
from shared.ipc import endpoints
from shared.ipc.codec import BadMessage, decode, decode_reply, encode
from shared.ipc.messages import CTL_PING, SUP_KILL, SUP_RESTART, SUP_SHUTDOWN, SUP_STATUS
from shared.skb import SkbPool
from shared.wire.ipv6 import ip6_ntoa, link_local_from_mac

from services.zygote import Forked, ForkServer, Signalled, become_subreaper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRANSIT_GRACE = 2.0     # after a death, skbs still in flight from it are lost
REPLAY_GRACE = 1.0      # ... and skbs sent to it that its senders did not hand to the next incarnation
# services whose taken skbs may be handed to the successor too: they change nothing in a
# received skb and free it only once the turn's effects are saved (tcp: Tcp.end_of_turn);
# the others push and pull headers in place, so a resent skb would not be what was sent
REREAD = frozenset({"tcp"})
CRASH_LOOP = 3          # deaths in a row soon after start that make a crash loop
EXTERNAL_KILLS = (-signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT)
STANDBY_DELAY = 0.05    # after a start, before the next warm standby is forked (or started SCHED_IDLE)
ZYGOTE_RETRY = 5.0      # seconds between restarts of a failed zygote
ZYGOTE_WAIT = 10.0      # seconds the first start of the services waits for the zygote's imports
ADOPTED_EXIT = 255      # an adopted process's exit status is not ours to collect
SERVICES_FILE = "services.json"   # in the run directory: pid and epoch of each service, for adoption
SHUTDOWN_MARK = "shutdown"        # in the run directory: `down` is under way, nobody restarts anything
WATCHDOG_CHECK = 0.5              # seconds between the watchdog's looks at the shutdown mark


def _pidfd(pid: int) -> int:
    """A descriptor that becomes readable when ``pid`` exits (-1 where unsupported)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def _set_policy(pid: int, policy: int) -> None:
    try:
        os.sched_setscheduler(pid, policy, os.sched_param(0))
    except (OSError, AttributeError):
        pass


def _idle() -> None:
    """A standby imports at SCHED_IDLE: it takes no CPU a running service or a
    recovery wants, so the next one can start right after a promotion (a
    second kill of the same service finds one, at worst half imported)."""
    _set_policy(0, os.SCHED_IDLE)


def _close_fd(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def _exit_reason(code: int) -> str:
    if code == ADOPTED_EXIT:
        return "exited (status unknown: adopted by this supervisor)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


class Adopted(Signalled):
    """A service process started by an earlier supervisor: the Popen calls the
    supervisor makes, through a pidfd (its exit seen, its signals sent to the
    very process, never to a reused pid)."""

    stdin = None

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid, self.pidfd = pid, pidfd
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self.pidfd], [], [], 0)[0]:
            self.returncode = ADOPTED_EXIT
        return self.returncode

    def send_signal(self, sig: int) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        if not select.select([self.pidfd], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
        return self.poll()  # type: ignore[return-value]


@dataclass
class Child:
    name: str
    kind: str
    proc: subprocess.Popen | Adopted | Forked | None = None
    state: str = "starting"        # starting, running, backoff, crashloop
    restarts: int = 0
    epoch: int = 0
    started: float = 0.0
    last_pong: float = 0.0
    ping_sent: float = 0.0
    restart_at: float = 0.0
    backoff: float = 0.0
    quick_deaths: int = 0          # deaths in a row soon after a start, not counting kills from outside
    last_exit: str | None = None
    dealer: zmq.Socket | None = None
    transit_reclaims: list = field(default_factory=list)   # (when, token)
    spared: list = field(default_factory=list)   # (when, handles sent to a dead incarnation, never taken)
    pidfd: int = -1                # readable when proc exits: the supervisor wakes at once
    standby: subprocess.Popen | Forked | None = None   # warm, imported, waiting for its epoch on stdin
    standby_at: float = 0.0        # when to start the next standby
    last_start: dict = field(default_factory=dict)   # the supervisor's part of the last restart


class Supervisor:
    def __init__(self, cfg: Config, instance: str, adopt: bool = False) -> None:
        self.cfg = cfg
        self.instance = instance
        self.rundir = endpoints.run_dir(cfg.run_dir, instance)
        self.logdir = os.path.join(self.rundir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.adopting = adopt
        self.pool = SkbPool(endpoints.slab_path(instance), owner=0, n_owners=len(cfg.services),
                            classes=cfg.skb_classes, create=not adopt)
        self.watchdog: subprocess.Popen | Adopted | None = None
        self.ctx = zmq.Context.instance()
        self.ctl = self.ctx.socket(zmq.ROUTER)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.bind(endpoints.control(self.rundir, "launcher"))
        self.children = {n: Child(n, "driver" if n.startswith("driver") else n) for n in cfg.services}
        self.running = True
        self.reclaimed = 0
        self.counters: dict[str, int] = {"promoted": 0, "cold_starts": 0, "adopted": 0, "zygote_restarts": 0}
        # the zygote's forks are our children only if we are their subreaper
        self.zygote = self.new_zygote() if become_subreaper() else None
        self.zygote_retry_at = 0.0
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))

    def start(self, c: Child, *extra: str, standby: bool = False) -> subprocess.Popen | Forked:
        """A process of the service: forked by the zygote once it is ready, else a new interpreter."""
        log = open(os.path.join(self.logdir, f"{c.name}.log"), "ab")
        argv = ["--config", self.cfg.path, "--instance", self.instance, "--name", c.name, *extra]
        try:
            if self.zygote is not None and self.zygote.usable():
                try:
                    return self.zygote.spawn(c.kind, argv, log.fileno(), standby)
                except OSError as exc:
                    print(f"{time.strftime('%H:%M:%S')} zygote: {exc}; services start as new interpreters "
                          f"until it is back", flush=True)
            # services outlive the supervisor (a new one adopts them); a standby ends
            # by itself when its stdin, the supervisor's end of the pipe, closes
            return subprocess.Popen([sys.executable, "-m", f"services.{c.kind}", *argv], cwd=ROOT,
                                    stdin=subprocess.PIPE if standby else subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True,
                                    preexec_fn=_idle if standby else None)
        finally:
            log.close()

    def await_zygote(self) -> None:
        """At the instance's start: the services too are forked, so one interpreter
        imports them all, not six, and they share its pages (`up` 2.2 -> 1.5 s, the
        instance's PSS 180 -> 134 MB); requests are answered meanwhile. After
        ZYGOTE_WAIT, or if it fails, they start as new interpreters."""
        deadline = time.monotonic() + ZYGOTE_WAIT
        while self.zygote is not None and not self.zygote.usable() and not self.zygote.failed \
                and time.monotonic() < deadline and self.running:
            self.ctl.poll(10)
            self.serve()

    def keep_zygote(self, now: float) -> None:
        """A zygote that died (or failed a fork) is replaced, at most every ZYGOTE_RETRY s."""
        if self.zygote is not None and self.zygote.failed and now >= self.zygote_retry_at:
            self.zygote.close()
            self.zygote = self.new_zygote()
            self.zygote_retry_at = now + ZYGOTE_RETRY
            self.counters["zygote_restarts"] += 1

    def new_zygote(self) -> ForkServer:
        kinds = sorted({c.kind for c in self.children.values()})
        return ForkServer(self.cfg.path, self.instance, kinds, os.path.join(self.logdir, "zygote.log"))

    def spawn(self, c: Child) -> None:
        """Start an incarnation: promote the warm standby if one is waiting, else a cold start."""
        t = time.monotonic()
        c.epoch += 1
        standby, c.standby = c.standby, None
        c.proc = None
        if standby is not None and standby.poll() is None:
            try:
                _set_policy(standby.pid, os.SCHED_OTHER)     # it may still be importing: at full speed now
                standby.stdin.write(f"{c.epoch} {time.monotonic()}\n".encode())   # type: ignore[union-attr]
                standby.stdin.close()                          # type: ignore[union-attr]
                c.proc = standby
                self.counters["promoted"] += 1
            except OSError:           # it died just now
                standby.kill()
        promoted = c.proc is not None
        if not promoted:
            c.proc = self.start(c, "--epoch", str(c.epoch))
            self.counters["cold_starts"] += 1
        c.last_start.update(spawn_ms=round((time.monotonic() - t) * 1000, 2), promoted=promoted)
        c.pidfd = _pidfd(c.proc.pid)
        self.save_services()
        now = time.monotonic()
        c.standby_at = now + STANDBY_DELAY
        c.state = "starting"
        c.started = now
        c.last_pong = c.ping_sent = 0.0
        self.connect_control(c)

    def keep_standbys(self, now: float) -> None:
        if not self.cfg.supervisor.standby or self.zygote and not (self.zygote.failed or self.zygote.usable()):
            return                 # the zygote is importing: its standbys are ready sooner than a new interpreter's
        for c in self.children.values():
            if c.standby is not None and c.standby.poll() is not None:
                c.standby = None                     # it died waiting: start another later
                c.standby_at = now + STANDBY_DELAY
            if c.standby is None and c.proc is not None and now >= c.standby_at:
                c.standby = self.start(c, "--standby", standby=True)

    def reap(self, now: float) -> None:
        for c in self.children.values():
            if c.proc is None or c.proc.poll() is None:
                continue
            code = c.proc.returncode
            c.last_exit = _exit_reason(code)
            c.proc = None
            _close_fd(c.pidfd)
            c.pidfd = -1
            sid = self.cfg.service_id(c.name)
            t = time.monotonic()
            spared: list[int] = []
            self.reclaimed += self.pool.reclaim(sid, spare=spared, taken=c.kind in REREAD)
            c.last_start = {"reclaim_ms": round((time.monotonic() - t) * 1000, 2)}
            c.transit_reclaims.append((now + TRANSIT_GRACE, (sid << 16) | (c.epoch & 0xFFFF)))
            if spared:
                c.spared.append((now + REPLAY_GRACE, spared))
            if not self.running:
                continue
            c.backoff = self.backoff_after_death(c, code, now)
            c.restart_at = now + c.backoff
            c.state = "crashloop" if c.quick_deaths >= CRASH_LOOP else "backoff"
            c.restarts += 1
            loop = f" (crash loop: {c.quick_deaths} deaths soon after start)" if c.state == "crashloop" else ""
            print(f"{time.strftime('%H:%M:%S')} {c.name} {c.last_exit}; restart in {c.backoff:.2f}s{loop}",
                  flush=True)

    def backoff_after_death(self, c: Child, code: int, now: float) -> float:
        """A service killed from outside comes back at once, however often that
        happens (fault injection, an operator, the OOM killer: a start takes a
        few hundred ms of its own, so this is no busy loop). One that dies by
        itself soon after its start, again and again, is crash-looping: it
        waits, twice as long each time."""
        sup = self.cfg.supervisor
        if code in EXTERNAL_KILLS or code == ADOPTED_EXIT:
            c.quick_deaths = 0
            return 0.0
        if now - c.started < sup.backoff_reset:
            c.quick_deaths += 1
        else:
            c.quick_deaths = 1
        return min(sup.backoff_initial * 2 ** (c.quick_deaths - 1), sup.backoff_max)

    def tick(self, now: float) -> None:
        sup = self.cfg.supervisor
        for c in self.children.values():
            for when, token in list(c.transit_reclaims):
                if now >= when:
                    self.reclaimed += self.pool.reclaim(-1, token)
                    c.transit_reclaims.remove((when, token))
            while c.spared and now >= c.spared[0][0]:
                self.reclaimed += self.pool.reclaim_handles(c.spared.pop(0)[1], self.cfg.service_id(c.name))
            if c.state in ("backoff", "crashloop") and now >= c.restart_at:
                self.spawn(c)
            if c.proc is None or c.dealer is None:
                continue
            while c.dealer.poll(0):
                try:
                    status, pong = decode_reply(c.dealer.recv())
                except BadMessage:
                    continue
                if status == 0:
                    c.last_pong = now
                    # alive, and its start-up announcements (protocol registrations) acknowledged
                    c.state = "running" if not isinstance(pong, dict) or pong.get("ready", True) else "starting"
            if now - c.ping_sent >= sup.heartbeat_interval:
                c.ping_sent = now
                try:
                    c.dealer.send(encode(CTL_PING), zmq.NOBLOCK)
                except zmq.Again:
                    pass
            silent_since = c.last_pong or c.started
            if now - silent_since > sup.heartbeat_timeout:
                print(f"{time.strftime('%H:%M:%S')} {c.name} missed heartbeats; killing", flush=True)
                c.proc.kill()
                c.last_pong = now  # one kill per timeout

    def status(self) -> dict:
        now = time.monotonic()
        services = [{"name": c.name, "pid": c.proc.pid if c.proc else None, "state": c.state,
                     "restarts": c.restarts, "uptime": round(now - c.started, 3) if c.proc else 0.0,
                     "last_exit": c.last_exit, "standby": c.standby.pid if c.standby else None,
                     "last_start": c.last_start}
                    for c in self.children.values()]
        devices = [{"name": d.name, "addr": str(d.addr), "mac": ":".join(f"{b:02x}" for b in d.mac),
                    "mtu": d.mtu, "peer_netns": d.netns(self.instance), "peer_addr": str(d.peer_addr),
                    "addr6": [] if d.addr6 is None else [str(d.addr6), f"{ip6_ntoa(link_local_from_mac(d.mac))}/64"],
                    "peer_addr6": None if d.peer_addr6 is None else str(d.peer_addr6)}
                   for d in self.cfg.devices]
        zygote = self.zygote.proc if self.zygote is not None else None
        return {"instance": self.instance, "pid": os.getpid(), "services": services, "devices": devices,
                "skb": self.skb_usage(), "starts": self.counters,
                "zygote": zygote.pid if zygote is not None and zygote.poll() is None else None}

    def skb_usage(self) -> dict:
        u = self.pool.usage()
        names = {self.cfg.service_id(n): n for n in self.cfg.services}
        u["by_owner"] = {names.get(o, str(o)): n for o, n in u["by_owner"].items()}
        u["reclaimed"] = self.reclaimed
        return u

    def control(self, code: int, fields: tuple) -> object:
        if code == SUP_STATUS:
            return self.status()
        if code == SUP_SHUTDOWN:
            open(os.path.join(self.rundir, SHUTDOWN_MARK), "w").close()   # the watchdog lets us go
            self.running = False
            return "shutting down"
        c = self.children.get(fields.name)
        if c is None:
            raise OSError(errno.ENOENT, f"no service named {fields.name!r}")
        if code == SUP_KILL:
            if c.proc is None:
                raise OSError(errno.ESRCH, f"{c.name} is not running")
            try:
                sig = signal.Signals(fields.signal)
            except ValueError:
                raise OSError(errno.EINVAL, f"bad signal {fields.signal}") from None
            c.proc.send_signal(sig)
            return {"name": c.name, "pid": c.proc.pid, "signal": sig.name}
        if code == SUP_RESTART:
            if c.proc is not None:
                c.proc.terminate()
                try:
                    c.proc.wait(3)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
                    c.proc.wait()
                self.pool.reclaim(self.cfg.service_id(c.name))
                c.last_exit = "restarted"
                c.proc = None
                _close_fd(c.pidfd)
                c.pidfd = -1
            c.restarts += 1
            self.spawn(c)
            return {"name": c.name, "pid": c.proc.pid}
        raise OSError(errno.EINVAL, "unknown supervisor request")

    def serve(self) -> None:
        while self.ctl.poll(0):
            parts = self.ctl.recv_multipart()
            try:
                code, fields = decode(parts[-1])
                reply = encode(0, self.control(code, fields))
            except BadMessage as exc:
                reply = encode(errno.EINVAL, str(exc))
            except OSError as exc:
                reply = encode(exc.errno or errno.EINVAL, exc.strerror or str(exc))
            self.ctl.send_multipart([*parts[:-1], reply])

    # -- adoption, the watchdog --------------------------------------------------
    def save_services(self) -> None:
        """What a successor needs to adopt the running services."""
        now, wall = time.monotonic(), time.time()
        rec = {c.name: {"pid": c.proc.pid if c.proc else None, "epoch": c.epoch, "restarts": c.restarts,
                        "started": wall - (now - c.started),
                        "start": procfs.start_time(c.proc.pid) if c.proc else None} for c in self.children.values()}
        rec["watchdog"] = {"pid": self.watchdog.pid if self.watchdog else None}  # type: ignore[dict-item]
        tmp = os.path.join(self.rundir, SERVICES_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.replace(tmp, os.path.join(self.rundir, SERVICES_FILE))

    def adopt(self) -> None:
        """Take over the services a dead supervisor left running; start the rest."""
        try:
            with open(os.path.join(self.rundir, SERVICES_FILE)) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            rec = {}
        for c in self.children.values():
            r = rec.get(c.name) or {}
            c.epoch, c.restarts = int(r.get("epoch", 0)), int(r.get("restarts", 0))
            pid = r.get("pid")
            proc = self.adoptable(pid, [f"services.{c.kind}".encode(), b"--name", c.name.encode()], r.get("start"))
            if proc is None:
                c.restarts += 1 if c.epoch else 0
                self.spawn(c)
                continue
            c.proc, c.pidfd = proc, proc.pidfd
            c.state = "starting"
            c.started = time.monotonic() - max(0.0, time.time() - float(r.get("started", time.time())))
            c.last_pong = time.monotonic()     # its heartbeat timeout counts from the adoption
            c.standby_at = time.monotonic()
            self.counters["adopted"] += 1
            self.connect_control(c)
        self.watchdog = self.adoptable((rec.get("watchdog") or {}).get("pid"), [b"--watchdog"])
        self.save_services()
        print(f"{time.strftime('%H:%M:%S')} adopted {self.counters['adopted']} running services", flush=True)

    def adoptable(self, pid: object, marks: list[bytes], start: object = None) -> Adopted | None:
        """The live process ``pid`` if its argv is this instance's and has ``marks``, or
        it started when the record says (a zygote's fork has the zygote's argv)."""
        if type(pid) is not int or pid <= 0:
            return None
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return None
        args = procfs.argv(pid)        # read after the pidfd: the pid cannot be reused under us now
        if not procfs.of_instance(args, self.instance) or not (
                all(m in args for m in marks) or start is not None and procfs.start_time(pid) == start):
            os.close(fd)
            return None
        return Adopted(pid, fd)

    def keep_watchdog(self) -> None:
        """The watchdog restarts the supervisor; the supervisor restarts the watchdog."""
        if self.watchdog is not None and self.watchdog.poll() is None:
            return
        if isinstance(self.watchdog, Adopted):
            os.close(self.watchdog.pidfd)
        self.watchdog = start_supervisor(self.cfg, self.instance, "--watchdog")
        self.save_services()

    def connect_control(self, c: Child) -> None:
        if c.dealer is None:
            c.dealer = self.ctx.socket(zmq.DEALER)
            c.dealer.setsockopt(zmq.LINGER, 0)
            endpoints.connect_fast(c.dealer, endpoints.control(self.rundir, c.name))

    def run(self) -> None:
        if self.adopting:
            self.adopt()
        else:
            self.await_zygote()
            for c in self.children.values():
                self.spawn(c)
        while self.running:
            self.keep_watchdog()
            # woken by a request, a death (pidfd) or the heartbeat tick
            poller = zmq.Poller()
            poller.register(self.ctl, zmq.POLLIN)
            for c in self.children.values():
                if c.pidfd >= 0:
                    poller.register(c.pidfd, zmq.POLLIN)
            poller.poll(20)
            now = time.monotonic()
            self.reap(now)
            self.serve()
            if self.running:
                self.tick(now)
                self.keep_zygote(now)
                self.keep_standbys(now)
        self.stop_all()

    def stop_all(self) -> None:
        for c in self.children.values():
            if c.standby is not None:
                c.standby.stdin.close()   # type: ignore[union-attr]   # end of file: it exits
        procs = [c.proc for c in self.children.values() if c.proc]
        procs += [c.standby for c in self.children.values() if c.standby]
        for p in procs:
            p.terminate()
        deadline = time.monotonic() + 3
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.watchdog is not None:
            self.watchdog.terminate()
        if self.zygote is not None:
            self.zygote.close()
        self.ctl.close(0)
        for c in self.children.values():
            if c.dealer is not None:
                c.dealer.close(0)


def start_supervisor(cfg: Config, instance: str, *flags: str) -> subprocess.Popen:
    """A supervisor (``--adopt``: one taking over running services) or its watchdog
    (``--watchdog``), in a session of its own, logging to the run directory."""
    path = os.path.join(endpoints.run_dir(cfg.run_dir, instance), "launcher.log")
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "services.supervisor", "--config", cfg.path, "--instance",
                                 instance, *flags], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)


def watchdog(cfg: Config, instance: str) -> int:
    """Start a new supervisor (adopting the running services) whenever the
    supervisor of the instance dies, until ``down`` marks the shutdown."""
    rundir = endpoints.run_dir(cfg.run_dir, instance)
    mark = os.path.join(rundir, SHUTDOWN_MARK)
    while True:
        try:
            with open(os.path.join(rundir, "supervisor.pid")) as f:
                pid = int(f.read())
            fd = os.pidfd_open(pid)
        except (OSError, ValueError):
            fd = -1
        while fd >= 0 and not select.select([fd], [], [], WATCHDOG_CHECK)[0]:
            if os.path.exists(mark) or not os.path.isdir(rundir):
                return 0
        if fd >= 0:
            os.close(fd)
        if os.path.exists(mark) or not os.path.isdir(rundir):
            return 0
        print(f"{time.strftime('%H:%M:%S')} watchdog: the supervisor is gone; starting one that adopts the "
              "running services", flush=True)
        proc = start_supervisor(cfg, instance, "--adopt")
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:     # until it wrote its pid file
            try:
                with open(os.path.join(rundir, "supervisor.pid")) as f:
                    if int(f.read()) == proc.pid:
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.01)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m services.supervisor")
    ap.add_argument("--config", required=True)
    ap.add_argument("--instance", default="default")
    ap.add_argument("--adopt", action="store_true", help="take over the services a dead supervisor left")
    ap.add_argument("--watchdog", action="store_true", help="run as the supervisor's watchdog")
    args = ap.parse_args()
    os.umask(0o077)         # the control plane's files are root's alone
    try:
        cfg, instance = load(args.config), check_instance(args.instance)
    except ConfigError as exc:
        print(f"mkstack-supervisor: config: {exc}", file=sys.stderr)
        return 2
    if args.watchdog:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        return watchdog(cfg, instance)
    sup = Supervisor(cfg, instance, adopt=args.adopt)
    with open(os.path.join(sup.rundir, "supervisor.pid"), "w") as f:
        f.write(str(os.getpid()))
    sup.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
