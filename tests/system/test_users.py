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
import time

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
    assert theirs["SO_PRIORITY 7"] == ["EPERM", 0] and theirs["SO_PRIORITY 6"] == ["ok", 6]
    assert theirs["IP_TOS lowdelay"] == ["ok", 6] and theirs["SO_MARK"] == "EPERM"


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


TIGHT = {"clients_per_user": 2, "sockets_per_user": 20, "waiting_calls_per_user": 8, "skbs_per_user": 100,
         "mem_per_user": 1 << 20}


@pytest.fixture(scope="module")
def tight():
    """A stack whose [socket] bounds per user are small enough to hit (TIGHT)."""
    import re
    from tests.system.conftest import DEFAULT_CONFIG, _running
    text = open(DEFAULT_CONFIG).read()
    for key, value in TIGHT.items():
        text, n = re.subn(rf"^{key} = \d+", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
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


def as_nobody(stack, tree, code, *args):
    """``code`` run on mkstack as nobody (``launcher.py run``), output piped."""
    python, launcher, _, env = tree
    return subprocess.Popen([*AS_NOBODY, python, launcher, "--instance", stack.instance, "-c", stack.config, "run",
                             "--", "python3", "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})


def as_root(stack, code, *args):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "launcher.py"), "--instance", stack.instance, "-c",
                             stack.config, "run", "--", "python", "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _held(stack, kind, uid):
    return stack.stats()["socket_server"]["users"][kind].get(str(uid), 0)


def test_one_user_cannot_take_every_client_slot(tight, tree):
    """clients_per_user = 2: nobody's third process gets ENOBUFS; root's programs go on."""
    before = tight.stats()["socket_server"].get("clients_refused_user", 0)
    out = as_nobody(tight, tree, FORKS).communicate(timeout=60)[0]
    assert out.strip() == "['made', 'made', 'ENOBUFS']", out
    made = tight.launcher("run", "--", "python", "-c", "import socket; socket.socket(); print('made')").stdout
    assert made.strip() == "made"
    assert tight.stats()["socket_server"]["clients_refused_user"] == before + 1


SOCKETS = """
import errno, socket, sys
held = []
try:
    while len(held) < 60:
        held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    print(len(held), "made", flush=True)
except OSError as e:
    print(len(held), errno.errorcode[e.errno], flush=True)
sys.stdin.readline()
"""


def test_one_user_cannot_take_every_socket(tight, tree):
    """sockets_per_user = 20: nobody's 21st socket is EMFILE (counted); root makes 60
    while nobody's program holds its 20."""
    before = tight.stats()["socket_server"].get("user_sockets_full", 0)
    theirs = as_nobody(tight, tree, SOCKETS)
    try:
        assert theirs.stdout.readline().strip() == "20 EMFILE"
        assert as_root(tight, SOCKETS).communicate("\n", timeout=60)[0].strip() == "60 made"
        assert _held(tight, "sockets", NOBODY) == 20
        theirs.communicate("\n", timeout=30)
    finally:
        theirs.kill()
    assert tight.stats()["socket_server"]["user_sockets_full"] == before + 1
    assert _held(tight, "sockets", NOBODY) == 0             # given back when the program ended


WAITERS = """
import errno, os, socket, threading, time
def bound(n):
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
        s.settimeout(3)
    return socks
def wait(s, out):
    try:
        s.recv(10)
        out.append("data")
    except TimeoutError:
        out.append("waited")
    except OSError as e:
        out.append(errno.errorcode[e.errno])
def many(socks):
    out = []
    threads = [threading.Thread(target=wait, args=(s, out)) for s in socks]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    return sorted(out)
pid = os.fork()                   # two processes of one user, six waiting reads each
if pid == 0:
    print("child", many(bound(6)), flush=True)
    os._exit(0)
mine = bound(6)                   # (a bind waits for udp's answer too: done before the child's reads wait)
time.sleep(0.6)
print("parent", many(mine), flush=True)
os.waitpid(pid, 0)
"""


def test_one_user_cannot_suspend_every_call(tight, tree):
    """waiting_calls_per_user = 8 over two processes of nobody's: 8 reads wait, the rest
    ENOBUFS at once (counted); root's 12 all wait."""
    before = tight.stats()["socket_server"].get("user_calls_full", 0)
    out = as_nobody(tight, tree, WAITERS).communicate(timeout=60)[0]
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["child"] == str(["waited"] * 6), out
    assert lines["parent"] == str(["ENOBUFS"] * 4 + ["waited"] * 2), out
    root = dict(line.split(" ", 1) for line in as_root(tight, WAITERS).communicate(timeout=60)[0].strip().splitlines())
    assert root == {"child": str(["waited"] * 6), "parent": str(["waited"] * 6)}
    assert tight.stats()["socket_server"]["user_calls_full"] == before + 4


RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
sys.stdin.readline()
s.setblocking(False)
n = 0
try:
    while True:
        s.recv(100)
        n += 1
except BlockingIOError:
    print(n, flush=True)
"""
FLOOD = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(150):          # 150 x 2 KiB slots: within root's SO_RCVBUF (425,984)
    for port in sys.argv[2:]:
        s.sendto(b"x" * 32, (sys.argv[1], int(port)))
    time.sleep(0.002)
"""


def test_one_user_cannot_take_every_skb(tight, tree):
    """skbs_per_user = 100: 150 datagrams from the peer to a socket of nobody's leave 100
    queued (50 dropped, counted), while root's socket beside it takes all 150."""
    before = tight.stats()["socket_server"].get("user_skbs_full", 0)
    theirs, ours = as_nobody(tight, tree, RECEIVER, "9100"), as_root(tight, RECEIVER, "9101")
    try:
        for p in (theirs, ours):
            assert p.stdout.readline().startswith("ready")
        tight.peer("python3", "-c", FLOOD, tight.addr, "9100", "9101")
        time.sleep(0.3)
        assert _held(tight, "skbs", NOBODY) == 100 and _held(tight, "skbs", 0) == 150
        got = [p.communicate("go\n", timeout=30)[0].strip() for p in (theirs, ours)]
    finally:
        for p in (theirs, ours):
            p.kill()
    assert got == ["100", "150"]
    assert tight.stats()["socket_server"]["user_skbs_full"] == before + 50
    assert _held(tight, "skbs", NOBODY) == 0


SINK = """
import json, socket, sys, threading, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 9200))
srv.listen(4)
print("ready", flush=True)
conns = [srv.accept()[0] for _ in range(2)]
time.sleep(4)                    # nothing read meanwhile: the senders' bytes wait on mkstack, unacknowledged
counts = [0, 0]
def drain(i):
    while True:
        b = conns[i].recv(1 << 20)
        if not b:
            return
        counts[i] += len(b)
threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts), flush=True)
"""
SENDER = """
import socket, sys
s = socket.create_connection((sys.argv[1], 9200))
print("ready", flush=True)
s.sendall(b"x" * (3 << 20))
print("sent", flush=True)
sys.stdin.readline()
s.close()
"""


def test_one_user_cannot_take_every_buffered_byte(tight, tree):
    """mem_per_user = 1 MiB: while the peer reads nothing, nobody's send of 3 MiB holds at
    most 1 MiB on mkstack (the send waits, counted) while root's beside it has all of its
    3 MiB taken; once the peer reads, nobody's completes too, every byte there."""
    before = tight.stats()["socket_server"].get("user_mem_full", 0)
    sink = tight.peer_popen("python3", "-c", SINK)
    senders = []
    try:
        assert sink.stdout.readline().startswith("ready")
        senders = theirs, ours = [as_nobody(tight, tree, SENDER, tight.peer_addr),
                                  as_root(tight, SENDER, tight.peer_addr)]
        for p in senders:
            assert p.stdout.readline().startswith("ready")
        assert ours.stdout.readline().startswith("sent")      # root's send is not held back
        time.sleep(1)
        held = _held(tight, "mem", NOBODY), _held(tight, "mem", 0)
        assert theirs.poll() is None and 512 << 10 < held[0] <= 1 << 20 < held[1], held
        assert theirs.stdout.readline().startswith("sent")    # once the peer reads
        for p in senders:
            p.communicate("close\n", timeout=30)
        counts = json.loads(sink.communicate(timeout=60)[0].strip().splitlines()[-1])
    finally:
        for p in [sink, *senders]:
            p.kill()
    assert counts == [3 << 20, 3 << 20]
    assert tight.stats()["socket_server"]["user_mem_full"] > before
    assert _held(tight, "mem", NOBODY) == 0
