"""Every local user may use the stack, under the kernel's rules; only root controls it."""

import errno
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest
import zmq

from shared.ipc import messages as m
from tests.system.conftest import ROOT, start_on_mkstack
from tests.system.test_udp import _call, _raw_client, client_id

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
APP = os.path.join(ROOT, "tests", "system", "apps", "nobody_transcript.py")


def _readable_by_nobody(path):
    return subprocess.run([*AS_NOBODY, "test", "-r", path]).returncode == 0


@pytest.fixture(scope="module")
def tree():
    """(python, launcher.py, the app) that nobody can read: the checkout itself, or, where
    it lies under a directory nobody may enter, a copy of what `run` needs."""
    import msgpack
    packages = os.path.dirname(os.path.dirname(zmq.__file__))
    if all(_readable_by_nobody(p) for p in (os.path.realpath(sys.executable), os.path.join(ROOT, "launcher.py"),
                                            zmq.__file__)):
        yield sys.executable, os.path.join(ROOT, "launcher.py"), APP, {}
        return
    # an interpreter of the same version that nobody may run (a venv's may live under /root)
    python = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}", path="/usr/local/bin:/usr/bin")
    assert python and _readable_by_nobody(python), "no python nobody may run for the unprivileged tests"
    top = tempfile.mkdtemp(prefix="mkstack-nobody-")
    try:
        for part in ("launcher.py", "shared", "services", "configs", "tests/system/apps"):
            src, dst = os.path.join(ROOT, part), os.path.join(top, "repo", part)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, dst)
        site = os.path.join(top, "site")
        for mod in (zmq, msgpack):
            name = os.path.basename(os.path.dirname(mod.__file__))
            shutil.copytree(os.path.dirname(mod.__file__), os.path.join(site, name))
        for extra in os.listdir(packages):
            if extra.startswith("pyzmq.libs"):
                shutil.copytree(os.path.join(packages, extra), os.path.join(site, extra))
        subprocess.run(["chmod", "-R", "a+rX", top], check=True)
        yield (python, os.path.join(top, "repo", "launcher.py"),
               os.path.join(top, "repo", "tests", "system", "apps", "nobody_transcript.py"), {"PYTHONPATH": site})
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def dirs(tmp_path_factory):
    """A root-owned 0755 directory with a root socket file (0755), a root-only directory
    with a socket inside, and a directory of nobody's: fresh for each run."""
    top = tempfile.mkdtemp(prefix="mkstack-users-")
    os.chmod(top, 0o755)
    made = {}
    for name, mode in (("root", 0o755), ("shut", 0o700), ("own", 0o755)):
        made[name] = os.path.join(top, name)
        os.mkdir(made[name], mode)
        os.chmod(made[name], mode)
    os.chown(made["own"], NOBODY, NOBODY)
    kept = []
    for path in (os.path.join(made["root"], "ro.sock"), os.path.join(made["shut"], "s.sock")):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        os.chmod(path, 0o755)
        s.listen(1)
        kept.append(s)
    yield made
    for s in kept:
        s.close()
    shutil.rmtree(top, ignore_errors=True)


def _reuseport_group(mod, stype, port):
    s = mod.socket(mod.AF_INET, stype)
    s.setsockopt(mod.SOL_SOCKET, mod.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    if stype == mod.SOCK_STREAM:
        s.listen(1)
    return s


HOLD_GROUPS = """
import socket, time
held = []
for stype, port in ((socket.SOCK_DGRAM, 8097), (socket.SOCK_STREAM, 8098)):   # root's groups, on mkstack
    s = socket.socket(socket.AF_INET, stype)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("0.0.0.0", port))
    if stype == socket.SOCK_STREAM:
        s.listen(1)
    held.append(s)
print("ready", flush=True)
time.sleep(120)
"""


def test_nobody_uses_the_stack_under_the_kernels_rules(stack, tree, dirs):
    """As nobody: a TCP server on mkstack serves curl from the peer; port 80 EACCES, a raw
    socket EPERM, an AF_UNIX bind where it may not write EACCES with nothing made, a connect
    into a root-only directory or to a socket it may not write EACCES; its own socket file is
    its own with its umask. The same program as nobody on the kernel answers the same."""
    python, launcher, app, env = tree
    args = [dirs["root"], dirs["shut"], dirs["own"]]
    held = [_reuseport_group(socket, stype, port) for stype, port in ((socket.SOCK_DGRAM, 8097),
                                                                      (socket.SOCK_STREAM, 8098))]
    kernel = subprocess.run([*AS_NOBODY, python, app, *args], capture_output=True, text=True, timeout=60,
                            env={**os.environ, **env})
    for s in held:
        s.close()
    holder = start_on_mkstack(stack, "-c", HOLD_GROUPS)
    for d in (dirs["root"], dirs["own"]):                  # what the kernel run made (its own file)
        if os.path.lexists(os.path.join(d, "mine.sock")):
            os.unlink(os.path.join(d, "mine.sock"))
    ours = subprocess.Popen([*AS_NOBODY, python, launcher, "--instance", stack.instance, "-c",
                             os.path.join(os.path.dirname(launcher), "configs", "default.toml"), "run", "--",
                             "python3", app, *args, "8088"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env})
    try:
        first = ours.stdout.readline()
        assert first.startswith("{"), first + ours.stderr.read() if ours.poll() is not None else first
        assert ours.stdout.readline().startswith("ready")
        got = stack.peer("curl", "-s", "--max-time", "5", f"http://{stack.addr}:8088/").stdout
    finally:
        if ours.poll() is None:
            ours.wait(timeout=10)
        holder.kill()
        holder.wait()
    assert got == "served by nobody\n"
    theirs = json.loads(kernel.stdout)
    assert json.loads(first) == theirs, (first, kernel.stdout, kernel.stderr)
    assert theirs["uid"] == NOBODY and theirs["tcp bind port 80"] == "EACCES" and theirs["raw socket"] == "EPERM"
    assert theirs["unix bind in a root 0755 dir"] == "EACCES" and theirs["file made there"] is False
    assert theirs["unix connect into a root-only dir"] == "EACCES"
    assert theirs["udp SO_REUSEPORT group of root's"] == theirs["tcp SO_REUSEPORT group of root's"] == "EADDRINUSE"
    assert theirs["its file"] == [True, True, "0o750"]


def test_only_root_controls_the_stack(stack, tree):
    python, launcher, _, env = tree
    before = stack.restarts()
    for cmd in (["kill", "ip"], ["status"], ["down"], ["filter", "flush"]):
        r = subprocess.run([*AS_NOBODY, python, launcher, "--instance", stack.instance, "-c",
                            os.path.join(os.path.dirname(launcher), "configs", "default.toml"), *cmd],
                           capture_output=True, text=True, timeout=30, env={**os.environ, **env})
        assert r.returncode == 1 and "permission denied: only root controls mkstack" in r.stderr, (cmd, r.stderr)
    assert stack.restarts() == before and all(s["state"] == "running" for s in stack.status()["services"])
    # what the control plane is made of is root's alone; the public endpoints are everyone's
    rundir = os.path.join(stack.cfg.run_dir, stack.instance)
    for d, _, files in os.walk(rundir):
        for name in [d, *(os.path.join(d, f) for f in files)]:
            st = os.lstat(name)
            assert st.st_uid == 0 and not st.st_mode & 0o077, (name, oct(st.st_mode))
    assert stat.S_IMODE(os.stat(rundir).st_mode) == 0o700
    public = rundir + ".public"
    assert sorted(os.listdir(public)) == ["hello", "syscall"]
    assert all(stat.S_IMODE(os.stat(os.path.join(public, n)).st_mode) == 0o666 for n in ("hello", "syscall"))
    for path in [f"/dev/shm/mkstack-{stack.instance}-skb"] + [
            f"/dev/shm/mkstack-{stack.instance}-{s}.state" for s in ("tcp", "socket_server")]:
        st = os.stat(path)
        assert st.st_uid == 0 and not st.st_mode & 0o077, path


def test_a_client_cannot_claim_another_identity(stack):
    """Ids come from the kernel-attested hello: a made-up id is nobody (EPERM), an issued id
    used with another process's pid is refused (EPERM), and another client's fds are not
    reachable through one's own id (EBADF)."""
    made_up = _raw_client(stack, os.urandom(12).hex().encode() + b".1")
    assert _call(made_up, m.SYS_HELLO, 1, os.getpid(), False)[1] == errno.EPERM
    assert _call(made_up, m.SYS_SOCKET, 2, socket.AF_INET, socket.SOCK_DGRAM, 0)[1] == errno.EPERM
    mine = _raw_client(stack)
    assert _call(mine, m.SYS_HELLO, 1, 1, False)[1] == errno.EPERM            # pid 1 is not us
    assert _call(mine, m.SYS_HELLO, 2, os.getpid(), False)[1] == 0
    fd = _call(mine, m.SYS_SOCKET, 3, socket.AF_INET, socket.SOCK_DGRAM, 0)[2]
    other = _raw_client(stack, client_id(stack) + b".1")
    assert _call(other, m.SYS_CLOSE, 1, fd)[1] == errno.EBADF
    assert _call(mine, m.SYS_CLOSE, 4, fd)[1] == 0


FORKS = """
import errno, os, socket, time
answers = []
for _ in range(3):                      # three processes of one user, each a client of its own
    r, w = os.pipe()
    if os.fork() == 0:
        try:
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            os.write(w, b"made")
        except OSError as e:
            os.write(w, errno.errorcode[e.errno].encode())
        time.sleep(3)
        os._exit(0)
    answers.append(os.read(r, 100).decode())
print(answers, flush=True)
"""


@pytest.fixture
def two_per_user():
    import re
    from tests.system.conftest import DEFAULT_CONFIG, _running
    text, n = re.subn(r"^clients_per_user = \d+", "clients_per_user = 2", open(DEFAULT_CONFIG).read(), flags=re.M)
    assert n == 1
    top = tempfile.mkdtemp(prefix="mkstack-cfg-")        # where nobody can read it too
    os.chmod(top, 0o755)
    path = os.path.join(top, "cfg.toml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    try:
        yield from _running(path)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_one_user_cannot_take_every_client_slot(two_per_user, tree):
    """clients_per_user = 2: nobody's third process gets ENOBUFS; root's programs go on."""
    stack = two_per_user
    python, launcher, _, env = tree
    r = subprocess.run([*AS_NOBODY, python, launcher, "--instance", stack.instance, "-c", stack.config, "run", "--",
                        "python3", "-c", FORKS], capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert r.stdout.strip() == "['made', 'made', 'ENOBUFS']", r.stdout + r.stderr
    made = stack.launcher("run", "--", "python", "-c", "import socket; socket.socket(); print('made')").stdout
    assert made.strip() == "made"
    assert stack.stats()["socket_server"]["clients_refused_user"] == 1
