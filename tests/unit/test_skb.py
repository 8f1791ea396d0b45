import os
import subprocess
import sys

import pytest

from shared.skb import NoBuffers, SizeClass, SkbError, SkbPool, StaleHandle

CLASSES = [SizeClass(2048, 64), SizeClass(65792, 8)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def path(tmp_path):
    p = str(tmp_path / "slab")
    SkbPool(p, owner=0, n_owners=2, classes=CLASSES, create=True).close()
    return p


def test_push_pull_put_reserve_in_place(path):
    a = SkbPool(path, owner=1, n_owners=2)
    skb = a.alloc(100, headroom=64)
    assert (len(skb), skb.headroom()) == (0, 64)
    skb.put(5)[:] = b"hello"
    skb.push(3)[:] = b"hdr"
    assert bytes(skb.data) == b"hdrhello"
    skb.pull(3)
    assert bytes(skb.data) == b"hello"
    skb.trim(2)
    assert bytes(skb.data) == b"he"
    with pytest.raises(SkbError):
        skb.push(1000)
    with pytest.raises(SkbError):
        skb.put(4096)
    with pytest.raises(SkbError):
        skb.pull(3)


def test_size_classes(path):
    a = SkbPool(path, owner=1, n_owners=2)
    assert a.alloc(1500).cls.slot_size == 2048
    assert a.alloc(60000).cls.slot_size == 65792
    with pytest.raises(NoBuffers):
        a.alloc(70000)


def test_handover_and_stale_handles(path):
    a = SkbPool(path, owner=1, n_owners=2)
    b = SkbPool(path, owner=2, n_owners=2)
    skb = a.alloc(10)
    skb.put(3)[:] = b"abc"
    h = a.give(skb, 2)
    with pytest.raises(StaleHandle):
        a.take(h)                       # not in transit to owner 1
    got = b.take(h)
    assert bytes(got.data) == b"abc"
    with pytest.raises(StaleHandle):
        b.take(h)                       # already taken: state is OWNED
    b.free(got)
    with pytest.raises(StaleHandle):
        b.take(h)                       # freed
    for junk in (-1, 1 << 60, (1 << 24) | 5):
        with pytest.raises(StaleHandle):
            b.take(junk)
    assert b.stale == 5


def test_partitions_never_overlap_and_exhaustion_is_an_error(path):
    a = SkbPool(path, owner=1, n_owners=2)
    b = SkbPool(path, owner=2, n_owners=2)
    sa = {a.alloc(1000).slot for _ in range(32)}
    sb = {b.alloc(1000).slot for _ in range(32)}
    assert len(sa) == len(sb) == 32 and not sa & sb
    big = [a.alloc(1000) for _ in range(4)]   # the small class is full: falls to the large one
    assert all(s.cls.slot_size == 65792 for s in big)
    with pytest.raises(NoBuffers):
        a.alloc(1000)
    assert a.drops == 1


def test_slot_freed_by_another_owner_is_found_again(path):
    a = SkbPool(path, owner=1, n_owners=2)
    b = SkbPool(path, owner=2, n_owners=2)
    skbs = [a.alloc(1000, 0) for _ in range(32)]
    for s in skbs:
        b.free(b.take(a.give(s, 2)))
    assert len({a.alloc(1000, 0).slot for _ in range(32)}) == 32


def test_reclaim_frees_a_dead_owner_and_its_transit(path):
    a = SkbPool(path, owner=1, n_owners=2, epoch=3)
    b = SkbPool(path, owner=2, n_owners=2)
    held = [a.alloc(100) for _ in range(5)]
    in_flight = [a.give(a.alloc(100), 2) for _ in range(3)]
    sup = SkbPool(path, owner=0, n_owners=2)
    assert sup.usage()["classes"][0]["used"] == 8
    assert sup.reclaim(1) == 5
    assert sup.reclaim(-1, token=(1 << 16) | 3) == 3
    assert sup.usage()["classes"][0]["used"] == 0
    with pytest.raises(StaleHandle):
        b.take(in_flight[0])
    del held


def test_reclaim_spares_what_was_sent_to_the_dead_until_told(path):
    """Slots given to a dead service survive its reclaim, back in transit to it
    (with ``taken``, also the ones it took), so their sender can hand them to the next incarnation;
    whatever nobody took by the deadline is freed by handle, and nothing a new
    incarnation took is. Its own slots are freed at once without ``spare``."""
    a = SkbPool(path, owner=1, n_owners=2)
    dead = SkbPool(path, owner=2, n_owners=2)
    taken = a.give(a.alloc(100), 2)
    dead.take(taken)                                    # read, its effects not out yet
    queued = [a.give(a.alloc(100), 2) for _ in range(3)]   # still in its inbox when it died
    sup = SkbPool(path, owner=0, n_owners=2)
    spared: list[int] = []
    assert sup.reclaim(2, spare=spared, taken=True) == 0
    assert sorted(spared) == sorted([taken, *queued])
    assert all(a.in_transit(h, 2) for h in spared) and not a.in_transit(taken, 1)
    reborn = SkbPool(path, owner=2, n_owners=2)        # the next incarnation, sent the same handles again
    again = reborn.take(queued[0])
    assert sup.reclaim_handles(spared, 2) == 3          # the three nobody took
    assert not any(a.in_transit(h, 2) for h in spared)
    assert sup.usage()["classes"][0]["used"] == 1       # the one the new incarnation holds
    reborn.free(again)
    with pytest.raises(StaleHandle):
        reborn.take(queued[1])
    mine = reborn.alloc(100)
    assert sup.reclaim(2) == 1 and sup.usage()["classes"][0]["used"] == 0
    del mine


def test_reclaim_frees_what_the_dead_took_unless_told_it_is_unchanged(path):
    a = SkbPool(path, owner=1, n_owners=2)
    dead = SkbPool(path, owner=2, n_owners=2)
    taken = a.give(a.alloc(100), 2)
    dead.take(taken).push(14)                           # a header pushed in place: not what was sent
    queued = a.give(a.alloc(100), 2)
    spared: list[int] = []
    assert SkbPool(path, owner=0, n_owners=2).reclaim(2, spare=spared) == 1
    assert spared == [queued] and not a.in_transit(taken, 2)


def test_visible_across_processes(path):
    a = SkbPool(path, owner=1, n_owners=2)
    skb = a.alloc(100)
    skb.put(11)[:] = b"cross-proc!"
    h = a.give(skb, 2)
    code = (f"import sys; sys.path.insert(0, {ROOT!r})\n"
            "from shared.skb import SkbPool\n"
            f"b = SkbPool({path!r}, owner=2, n_owners=2)\n"
            f"s = b.take({h})\n"
            "assert bytes(s.data) == b'cross-proc!'\n"
            "s.push(4)[:] = b'sub:'\n"
            "print(b.give(s, 1))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    back = a.take(int(out.stdout))
    assert bytes(back.data) == b"sub:cross-proc!"
