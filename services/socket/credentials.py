"""Who a client process is, as the kernel says, and acting as it on the filesystem.

The socket server runs as root for everyone; each call is judged by the caller's
own credentials, read from /proc/PID/status when a call needs them (a process
that dropped its privileges since it started is judged by what it has now).
Filesystem work on a caller's behalf (an AF_UNIX socket file made or looked up)
runs under the caller's fsuid, fsgid, groups and umask, so the kernel applies
its own permission rules: nothing is created where the caller could not, and
the file belongs to the caller.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from dataclasses import dataclass
from typing import Iterator

from shared import procfs

CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW = 10, 12, 13
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Creds:
    uid: int              # effective
    gid: int
    fsuid: int
    fsgid: int
    groups: tuple[int, ...]
    caps: int             # CapEff
    umask: int

    def capable(self, cap: int) -> bool:
        return bool(self.caps >> cap & 1)


def creds_of(pid: int, start: str | None = None) -> Creds:
    """The process's credentials now; ESRCH if it is gone (or, given the start time
    it had, if its pid now names another process)."""
    if start is not None and procfs.start_time(pid) != start:
        raise OSError(errno.ESRCH, "No such process")
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        uids, gids = fields["Uid"].split(), fields["Gid"].split()
        return Creds(uid=int(uids[1]), gid=int(gids[1]), fsuid=int(uids[3]), fsgid=int(gids[3]),
                     groups=tuple(int(g) for g in fields.get("Groups", "").split()),
                     caps=int(fields["CapEff"], 16), umask=int(fields.get("Umask", "0022"), 8))
    except (OSError, KeyError, ValueError, IndexError):
        raise OSError(errno.ESRCH, "No such process") from None


def unprivileged_port_start() -> int:
    """net.ipv4.ip_unprivileged_port_start: ports below need CAP_NET_BIND_SERVICE."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024


@contextlib.contextmanager
def acting_as(c: Creds) -> Iterator[None]:
    """Filesystem calls of this thread as the caller's (setfsuid drops root's file
    capabilities while it is not 0, and gives them back after)."""
    saved_groups = os.getgroups()
    saved_umask = os.umask(c.umask)
    try:
        os.setgroups(list(c.groups))
        _libc.setfsgid(c.fsgid)
        _libc.setfsuid(c.fsuid)
        yield
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(0)
        os.setgroups(saved_groups)
        os.umask(saved_umask)
