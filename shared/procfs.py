"""What /proc says of a process: its argv and its start time."""

from __future__ import annotations


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
