"""Files that root keeps in /dev/shm, made and reopened so that no other user can plant them.

/dev/shm is writable by every user (sticky, 1777), and our names there are
predictable. A user who creates one of them first could have root write
through a symlink, or read and write every packet in a slab of their own.
So: nothing is created through an existing name (O_EXCL; what was there is
removed first, a symlink unlinked and never followed), nothing is reopened
through a symlink (O_NOFOLLOW), and what is reopened must be ours and private
(owner our euid, no group or other access) or it is refused. Inside a checked
0700 directory of ours nobody else can create anything, so its files only need
O_NOFOLLOW as a second line.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat

log = logging.getLogger("shmfiles")
_RW = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


class NotPrivate(PermissionError):
    """A file or directory at one of our names that is not ours and private."""


def _check(st: os.stat_result, path: str, want_dir: bool) -> None:
    kind_ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    if not kind_ok or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise NotPrivate(errno.EPERM, f"not a private {'directory' if want_dir else 'file'} of uid {os.geteuid()}"
                         f" (uid {st.st_uid}, mode {stat.filemode(st.st_mode)})", path)


def _remove(path: str) -> None:
    """Whatever is at ``path`` (a symlink itself, never its target)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)          # does not follow symlinks inside
    else:
        os.unlink(path)


def create(path: str, mode: int = 0o600) -> int:
    """A new, empty file of ours at ``path`` (an fd); whatever held the name is removed first."""
    _remove(path)
    return os.open(path, _RW | os.O_CREAT | os.O_EXCL, mode)


def reopen(path: str) -> int:
    """An fd of the existing file at ``path``, refused (NotPrivate, ELOOP for a symlink)
    unless it is a regular file of ours that no one else may read or write."""
    fd = os.open(path, _RW)
    try:
        _check(os.fstat(fd), path, want_dir=False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_private(path: str) -> int:
    """The file at ``path`` in a checked private directory, created if absent (O_EXCL)."""
    try:
        return os.open(path, _RW | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return reopen(path)


def private_dir(path: str) -> bool:
    """Make sure ``path`` is a 0700 directory of ours; one that is not (planted by another
    user, a symlink, loosened modes) cannot hold state we wrote, so it is removed and made
    anew. True if the directory was already there and kept."""
    for _ in range(3):
        try:
            os.mkdir(path, 0o700)
            return False
        except FileExistsError:
            pass
        st = os.lstat(path)
        try:
            _check(st, path, want_dir=True)
            return True
        except NotPrivate as exc:
            log.warning("%s; removed and made anew", exc)
            _remove(path)
    raise NotPrivate(errno.EPERM, "recreated by someone else three times", path)
