"""The instance's fork server: service processes already imported, in a few ms.

A standby started as a new interpreter spends ~0.3 s of CPU importing, and the
supervisor starts one right after each promotion. Under load it got none of it
(it ran SCHED_IDLE so as not to slow the recovery) and a second kill of the
same service within a second found it still importing: 0.1-0.25 s more
silence. The zygote imports every service's modules once, when the instance
comes up, and then forks a process per request, as Android's zygote does: a
fork of an imported interpreter is ready to wait for its promotion at once.

Protocol, over a SOCK_SEQPACKET socketpair (``--channel FD``): the supervisor sends
a JSON list, the service kind and its arguments (``["tcp", "--config", C,
"--instance", I, "--name", N, "--standby"]``), with two descriptors (the
child's stdin and its log); the zygote answers the new process's pid in ASCII,
or ``-22`` for a request it refuses. It says ``ready`` once everything is
imported and ends when the supervisor's end closes. The child is forked twice,
so that its parent is the supervisor (a child subreaper), which collects its
exit status as for any child. Its argv, as ``ps`` shows it, stays the zygote's
(``services.zygote --instance I``; the name ``top`` shows is ``mks-KIND``), so
``services.json`` records each process's start time, by which a new
supervisor recognises it.

``python -m services.zygote --config C --instance I --channel FD KIND...`` (started by the supervisor)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READY = b"ready"
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
REQUEST_MAX = 65536


def service_class(kind: str) -> type:
    """The Service subclass ``python -m services.KIND`` runs (its ``kind`` says which),
    its module imported."""
    from services.base import Service
    for value in vars(importlib.import_module(f"services.{kind}")).values():
        if isinstance(value, type) and issubclass(value, Service) and value.__dict__.get("kind") == kind:
            return value
    raise ValueError(f"services.{kind} defines no service of kind {kind!r}")


def run_child(cls: type, argv: list[str], stdin: int, log: int) -> None:
    """In the forked process: what ``python -m services.KIND argv`` would run."""
    from services.base import STANDBY, main
    code = 1
    try:
        os.dup2(stdin, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        _set_comm(f"mks-{cls.kind}")
        if STANDBY in argv:
            # copy-on-write: the first write to each page the zygote shares (refcounts, GC
            # headers) costs a fault and a copy; a collection makes most of them now, while
            # waiting, at idle priority, not after the promotion (~15 ms of recovery)
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            gc.collect()
        sys.argv = [sys.modules[cls.__module__].__file__ or cls.kind, *argv]
        main(cls)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:       # as the interpreter would: the traceback to the log, exit 1
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _set_comm(name: str) -> None:
    """The name top and ps -o comm show (the argv stays the zygote's)."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def spawn(cls: type, argv: list[str], stdin: int, log: int) -> int:
    """Fork twice; the grandchild runs the service, its pid is returned once the
    middle process has exited (so the grandchild is the supervisor's by then)."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(r)
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.close(w)
                run_child(cls, argv, stdin, log)
            os.write(w, str(pid).encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(middle, 0)
    with os.fdopen(r, "rb") as f:
        text = f.read()
    if not text.isdigit():
        raise OSError("the middle process exited without a pid")
    return int(text)


def serve(chan: socket.socket, classes: dict[str, type]) -> int:
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(chan, REQUEST_MAX, 2)
        except OSError:
            return 0
        if not msg:
            return 0                      # the supervisor is gone: so is its fork server
        try:
            if len(fds) != 2:
                raise ValueError(f"{len(fds)} descriptors, not 2")
            kind, *argv = json.loads(msg)
            if kind not in classes or not all(isinstance(a, str) for a in argv):
                raise ValueError(f"not a service this zygote imported: {kind!r}")
            reply = str(spawn(classes[kind], argv, *fds)).encode()
        except (ValueError, TypeError, OSError) as exc:
            print(f"zygote: request refused: {exc}", file=sys.stderr, flush=True)
            reply = b"-22"
        finally:
            for fd in fds:
                os.close(fd)
        try:
            chan.send(reply)
        except OSError:
            return 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m services.zygote")
    ap.add_argument("--config", required=True)     # named so that ps and `down` tell the instance's processes
    ap.add_argument("--instance", required=True)
    ap.add_argument("--channel", type=int, required=True, help="descriptor of the supervisor's socketpair")
    ap.add_argument("kinds", nargs="+")
    args = ap.parse_args()
    classes = {kind: service_class(kind) for kind in args.kinds}
    chan = socket.socket(fileno=args.channel)
    chan.send(READY)
    return serve(chan, classes)


# -- the supervisor's side ----------------------------------------------------------
REPLY_WAIT = 2.0          # seconds a fork may take before the zygote is given up


def become_subreaper() -> bool:
    """Orphaned descendants (the zygote's grandchildren) become this process's children."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Signalled:
    """Popen's terminate and kill, for a process handle with its own send_signal."""

    def send_signal(self, sig: int) -> None:
        raise NotImplementedError

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Forked(Signalled):
    """A service process the zygote forked, now our child: the part of Popen the
    supervisor uses (its pid cannot be reused while we have not reaped it)."""

    def __init__(self, pid: int, stdin: object = None) -> None:
        self.pid, self.stdin = pid, stdin
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:      # not ours after all (reaped elsewhere)
                self.returncode = 255
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.005)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


class ForkServer:
    """The supervisor's handle on its zygote: started at once, used once ready."""

    def __init__(self, config: str, instance: str, kinds: list[str], log: str) -> None:
        self.chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with os.fdopen(os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.zygote", "--config", config, "--instance", instance,
                 "--channel", str(theirs.fileno()), *kinds],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                pass_fds=(theirs.fileno(),))
        theirs.close()
        self.ready = False
        self.failed = False

    def usable(self) -> bool:
        """Imported and answering (False while it imports, and for good once it failed)."""
        if self.failed or self.proc.poll() is not None:
            self.failed = True
            return False
        if not self.ready:
            try:
                self.ready = self.chan.recv(16, socket.MSG_DONTWAIT) == READY
            except BlockingIOError:
                return False
            except OSError:
                self.failed = True
        return self.ready and not self.failed

    def spawn(self, kind: str, argv: list[str], log_fd: int, standby: bool) -> Forked:
        """A new process of ``kind`` with ``argv``; a standby gets a pipe as stdin (ours: its write end)."""
        r, w = os.pipe() if standby else (os.open(os.devnull, os.O_RDONLY), -1)
        try:
            socket.send_fds(self.chan, [json.dumps([kind, *argv]).encode()], [r, log_fd])
            self.chan.settimeout(REPLY_WAIT)
            reply = self.chan.recv(32)
            if not reply.isdigit():
                raise OSError(f"the zygote refused to fork {kind}: {reply!r}")
        except OSError:
            self.failed = True
            if w >= 0:
                os.close(w)
            raise
        finally:
            self.chan.settimeout(None)
            os.close(r)
        return Forked(int(reply), os.fdopen(w, "wb") if w >= 0 else None)

    def close(self) -> None:
        self.chan.close()                 # the zygote reads an end of file and exits
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main())
