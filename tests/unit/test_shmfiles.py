"""Files in world-writable /dev/shm that another local user planted first: never written through, never trusted."""

import errno
import os
import stat

import pytest

from shared import shmfiles
from shared.skb import SizeClass, SkbPool
from shared.statestore import StateDir

NOBODY = 65534


@pytest.fixture
def victim(tmp_path):
    """A file root owns elsewhere, which a planted symlink points at."""
    v = tmp_path / "victim"
    v.write_bytes(b"precious")
    return v


def test_a_new_file_replaces_a_planted_symlink_without_following_it(tmp_path, victim):
    path = tmp_path / "mkstack-x-skb"
    os.symlink(victim, path)
    fd = shmfiles.create(str(path))
    os.write(fd, b"ours")
    os.close(fd)
    assert victim.read_bytes() == b"precious"
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o600


def test_reopening_refuses_symlinks_and_files_not_ours_or_not_private(tmp_path, victim):
    link = tmp_path / "link"
    os.symlink(victim, link)
    with pytest.raises(OSError) as e:
        shmfiles.reopen(str(link))
    assert e.value.errno == errno.ELOOP
    theirs = tmp_path / "theirs"
    theirs.write_bytes(b"x")
    os.chmod(theirs, 0o600)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(shmfiles.NotPrivate, match="uid 65534"):
        shmfiles.reopen(str(theirs))
    loose = tmp_path / "loose"
    loose.write_bytes(b"x")
    os.chmod(loose, 0o644)
    with pytest.raises(shmfiles.NotPrivate, match="-rw-r--r--"):
        shmfiles.reopen(str(loose))


def test_a_planted_state_directory_is_replaced_and_nothing_written_through_it(tmp_path, victim):
    planted = tmp_path / "mkstack-x-tcp.state"
    planted.mkdir(mode=0o777)
    os.symlink(victim, planted / ".journal")         # what root would extend and write through
    os.symlink(victim, planted / "c1")
    os.chown(planted, NOBODY, NOBODY)
    d = StateDir(str(planted), slot=512)
    d.file("c1").put({"n": 1})
    d.stage("c2", {"n": 2})
    d.stage("c1", {"n": 3})
    d.write_turn()
    assert victim.read_bytes() == b"precious"
    st = os.lstat(planted)
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
    assert sorted(os.listdir(planted)) == [".journal", "c1", "c2"]
    assert d.file("c1").get() == {"n": 3}
    d.destroy()


def test_a_symlink_in_place_of_the_state_directory_is_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    path = tmp_path / "svc.state"
    os.symlink(elsewhere, path)
    d = StateDir(str(path), slot=512)
    d.file("k").put(1)
    assert not os.path.islink(path) and os.listdir(elsewhere) == []
    d.destroy()


def test_our_own_state_directory_is_kept_across_restarts(tmp_path):
    d = StateDir(str(tmp_path / "svc.state"), slot=512)
    d.file("k").put({"n": 7})
    assert StateDir(str(tmp_path / "svc.state"), slot=512).file("k").get() == {"n": 7}


def test_a_slab_swapped_for_someone_elses_file_is_refused(tmp_path):
    path = str(tmp_path / "slab")
    SkbPool(path, owner=0, n_owners=2, classes=[SizeClass(2048, 64)], create=True).close()
    SkbPool(path, owner=1, n_owners=2).close()
    os.chown(path, NOBODY, NOBODY)                   # as if another user had made it
    with pytest.raises(shmfiles.NotPrivate):
        SkbPool(path, owner=1, n_owners=2)
