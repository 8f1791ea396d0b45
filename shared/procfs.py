"""What /proc says of a process: its argv, its start time, its own descriptors."""

from __future__ import annotations

import os


def argv(pid: int) -> list[bytes]:
    """The process's argv ([] if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def of_instance(args: list[bytes], instance: str) -> bool:
    """``args`` name ``--instance INSTANCE``: a process of that mkstack instance."""
    i = args.index(b"--instance") if b"--instance" in args else -1
    return i >= 0 and args[i + 1:i + 2] == [instance.encode()]


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of its stat):
    tells a live process from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


LIBRARY_POLLERS = 2      # the client library's ZeroMQ context: its I/O thread's and its reaper's epoll


def program_fds(pid: int) -> int:
    """How many kernel descriptors process ``pid`` holds for itself, leaving out what
    mkstack's client library holds in it: ZeroMQ's sockets, eventfds and two pollers,
    and the readiness socket pairs. (Under mkstack a program makes no kernel sockets.)
    What the kernel would count besides the program's sockets; 0 if it is gone."""
    n = polls = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for name in names:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue                  # closed meanwhile
        if link.startswith("socket:") or link == "anon_inode:[eventfd]":
            continue
        if link == "anon_inode:[eventpoll]":
            polls += 1
            continue
        n += 1
    return n + max(0, polls - LIBRARY_POLLERS)
