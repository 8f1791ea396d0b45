"""Records and rings in tmpfs files: what a killed process wrote, the next one reads."""

import os

import pytest

from shared.statestore import RecordTooBig, StateDir, StateFile


@pytest.fixture
def d(tmp_path):
    sd = StateDir(str(tmp_path / "svc.state"), slot=512, rings=(1024, 4096))
    yield sd
    sd.destroy()


def test_newest_record_wins_and_a_torn_one_falls_back(d, tmp_path):
    f = d.file("c1")
    f.put({"n": 1})
    f.put({"n": 2})
    again = StateFile(f.path, 512, (1024, 4096), create=False)
    assert again.get() == {"n": 2}
    # a write torn by a kill: the newest slot's payload half written
    f.put({"n": 3, "pad": "x" * 100})
    slot = (f.write_slot ^ 1) * 512
    f.mm[slot + 20:slot + 40] = bytes(20)
    assert StateFile(f.path, 512, (1024, 4096), create=False).get() == {"n": 2}
    # and writing continues from the reader's view of it
    again = StateFile(f.path, 512, (1024, 4096), create=False)
    again.get()
    again.put({"n": 4})
    assert StateFile(f.path, 512, (1024, 4096), create=False).get() == {"n": 4}


def test_empty_or_garbage_file_has_no_record(d):
    f = d.file("c2")
    assert f.get() is None
    f.mm[:512] = os.urandom(512)
    f.mm[512:1024] = os.urandom(512)
    assert f.get() is None


def test_record_too_big(d):
    with pytest.raises(RecordTooBig):
        d.file("c3").put(b"x" * 600)


def test_ring_wraps_by_position(d):
    f = d.file("c4")
    f.ring_write(0, 1020, b"abcdefghij")          # crosses the end of the 1024-byte ring
    assert f.ring_read(0, 1020, 10) == b"abcdefghij"
    assert f.ring_read(0, 0, 6) == b"efghij"      # by position: 1024 is 0 again
    assert f.ring_read(0, 2048 + 1022, 4) == b"cdef"
    f.ring_write(1, 2**32 - 3, b"seqwrap")        # positions are sequence numbers: 2**32 is 0 again
    assert f.ring_read(1, 2**32 - 3, 7) == b"seqwrap"
    assert f.ring_read(1, 1, 3) == b"rap"
    f.ring_write(0, 0, bytes(range(256)) * 5)     # longer than the ring: its last 1024 bytes stay
    assert f.ring_read(0, 256, 1024) == (bytes(range(256)) * 5)[256:]
    with pytest.raises(ValueError):
        f.ring_read(0, 0, 2000)


def test_rings_do_not_overlap_records(d):
    f = d.file("c5")
    f.put([1, 2, 3])
    f.ring_write(0, 0, b"\xff" * 1024)
    f.ring_write(1, 0, b"\xee" * 4096)
    assert f.get() == [1, 2, 3]


def test_keys_remove_and_sparse_size(d):
    d.file("c6").put(1)
    d.file("table", slot=4096, rings=()).put({"x": 1})
    assert d.keys() == ["c6", "table"]
    st = os.stat(os.path.join(d.path, "c6"))
    assert st.st_size == 2 * 512 + 1024 + 4096 and st.st_blocks * 512 <= 8192   # sparse
    d.remove("c6")
    assert d.keys() == ["table"]


def test_a_file_opened_again_writes_after_its_newest_record(d):
    f = d.file("c7")
    for n in range(5):
        f.put(n)
    d.release("c7")
    d.file("c7").put("after")               # a new process's first write must not lose to record 4
    assert StateFile(f.path, 512, (1024, 4096), create=False).get() == "after"


class _Killed(Exception):
    pass


def _kill_after(monkeypatch, writes):
    """SIGKILL stand-in: the process stops after ``writes`` more record writes."""
    real, left = StateFile.put_packed, [writes]

    def put_packed(self, payload):
        if left[0] == 0:
            raise _Killed
        left[0] -= 1
        real(self, payload)
    monkeypatch.setattr(StateFile, "put_packed", put_packed)
    return lambda: monkeypatch.setattr(StateFile, "put_packed", real)


def _turn(d, **records):
    for key, value in records.items():
        if value is None:
            d.stage_remove(key)
        else:
            d.stage(key, value)
    d.write_turn()


def _values(path, *keys, journal=1 << 24):
    again = StateDir(path, slot=512, rings=(1024, 4096), journal=journal)
    again.replay()
    return [again.file(k).get() if k in again.keys() else None for k in keys]


def test_a_turn_cut_short_after_its_journal_is_finished_by_replay(d, monkeypatch):
    _turn(d, sock=["offset", 0], call=["pending"], old=1)
    revive = _kill_after(monkeypatch, 2)     # the journal and the first file, not the rest
    with pytest.raises(_Killed):
        _turn(d, sock=["offset", 4096], call=["replied", 4096], old=None)
    revive()
    assert _values(d.path, "sock", "call", "old") == [["offset", 4096], ["replied", 4096], None]


def test_a_kill_while_the_journal_is_written_leaves_the_previous_turn(d, monkeypatch):
    _turn(d, sock=["offset", 0], call=["pending"])
    revive = _kill_after(monkeypatch, 0)
    with pytest.raises(_Killed):
        _turn(d, sock=["offset", 4096], call=["replied", 4096])
    revive()
    assert _values(d.path, "sock", "call") == [["offset", 0], ["pending"]]


def test_an_older_turn_is_not_written_again_over_a_single_record(d):
    _turn(d, sock=["offset", 0], call=["pending"])
    _turn(d, sock=["offset", 10])            # one record: no journal, and the old one cleared
    assert _values(d.path, "sock", "call") == [["offset", 10], ["pending"]]


def test_a_turn_too_big_for_the_journal_is_written_without_it(tmp_path):
    sd = StateDir(str(tmp_path / "small.state"), slot=512, journal=256)
    _turn(sd, a=1, b=2)
    _turn(sd, a="x" * 200, b="y" * 200)
    assert sd.journal_skipped == 1
    assert _values(sd.path, "a", "b", journal=256) == ["x" * 200, "y" * 200]


def test_a_garbage_journal_is_ignored(d):
    _turn(d, a=1, b=2)
    d.journal.put([["../escape", 512, b"x"], [".journal", 512, b"x"], ["a", 10**9, b"x"], "junk", ["b"]])
    assert _values(d.path, "a", "b") == [1, 2]
    assert not os.path.exists(os.path.join(os.path.dirname(d.path), "escape"))
