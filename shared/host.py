"""The host side of an instance: peer namespaces, persistent TAPs, leftovers.

Everything here shells out to iproute2, as an administrator would; it runs in
the launcher only, never in a layer process.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time

from shared.config import Config, Device
from shared import procfs
from shared.ipc import endpoints


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def setup_device(dev: Device, instance: str) -> None:
    """Create the peer namespace and the persistent TAP whose kernel side it holds."""
    ns = dev.netns(instance)
    if not netns_exists(ns):
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
    if ip("-n", ns, "link", "show", dev.name, check=False).returncode != 0:
        ip("-n", ns, "tuntap", "add", "dev", dev.name, "mode", "tap")
        if dev.peer_addr6 is None:     # no IPv6 chatter (MLD, router solicitations) on an IPv4-only link
            sysctls = ["disable_ipv6=1"]
        else:                          # a host, not a router: no solicitations, no advertisements taken
            sysctls = ["accept_ra=0", "router_solicitations=0", "accept_dad=0"]
        for sysctl in sysctls:
            subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{dev.name}.{sysctl}"],
                           capture_output=True)
        ip("-n", ns, "link", "set", dev.name, "mtu", str(dev.mtu))
        ip("-n", ns, "addr", "add", str(dev.peer_addr), "dev", dev.name)
        if dev.peer_addr6 is not None:
            ip("-n", ns, "addr", "add", str(dev.peer_addr6), "dev", dev.name, "nodad")
    ip("-n", ns, "link", "set", dev.name, "up")
    for net in dev.peer_routes:
        ip("-n", ns, "route", "replace", str(net), "via", str(dev.addr.ip), "dev", dev.name)


def teardown_device(dev: Device, instance: str) -> None:
    ns = dev.netns(instance)
    if not netns_exists(ns):
        return
    for pid in ip("netns", "pids", ns, check=False).stdout.split():
        _kill(int(pid), signal.SIGKILL)
    ip("-n", ns, "link", "del", dev.name, check=False)
    ip("netns", "del", ns, check=False)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def instance_pids(instance: str) -> list[int]:
    """Processes of this instance (supervisor and services), found by their argv."""
    out = []
    for d in glob.glob("/proc/[0-9]*"):
        pid = int(d[6:])
        args = procfs.argv(pid)
        if pid != os.getpid() and procfs.of_instance(args, instance) and any(
                a.startswith(b"services.") for a in args):
            out.append(pid)
    return out


def kill_instance(instance: str, grace: float = 2.0) -> None:
    pids = instance_pids(instance)
    for pid in pids:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists(f"/proc/{p}") and not _zombie(p)]
        time.sleep(0.05)
    for pid in pids:
        _kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def instance_shm(cfg: Config, instance: str) -> list[str]:
    """The instance's files in /dev/shm: its slab and its services' state stores,
    by exact name (a prefix glob of instance "a" would take those of "a-b" too)."""
    names = [endpoints.slab_path(instance)] + [endpoints.state_dir(instance, s) for s in cfg.services]
    return [p for p in names if os.path.lexists(p)]


def remove_instance_files(cfg: Config, instance: str) -> None:
    for path in instance_shm(cfg, instance):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)     # a service's state directory
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    shutil.rmtree(endpoints.run_dir(cfg.run_dir, instance), ignore_errors=True)
    shutil.rmtree(endpoints.public_dir(endpoints.run_dir(cfg.run_dir, instance)), ignore_errors=True)


def leftovers(cfg: Config, instance: str) -> list[str]:
    """What of the instance still exists (empty after a clean ``down``)."""
    out = [f"process {p}" for p in instance_pids(instance)]
    out += instance_shm(cfg, instance)
    rd = endpoints.run_dir(cfg.run_dir, instance)
    out += [d for d in (rd, endpoints.public_dir(rd)) if os.path.exists(d)]
    out += [f"netns {d.netns(instance)}" for d in cfg.devices if netns_exists(d.netns(instance))]
    return out
