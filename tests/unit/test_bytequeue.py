"""ByteQueue against a bytearray doing the same appends, reads and front deletions."""

import random

import pytest

from shared.bytequeue import ByteQueue


def test_same_bytes_as_a_bytearray_under_random_use():
    rng = random.Random(7)
    q, ref = ByteQueue(), bytearray()
    for _ in range(3000):
        op = rng.random()
        if op < 0.45:
            data = rng.randbytes(rng.choice((1, 3, 100, 5000, 70000)))
            q += data
            ref += data
        elif op < 0.75 and ref:
            n = rng.randint(0, len(ref))
            del q[:n]
            del ref[:n]
        elif ref:
            a = rng.randint(0, len(ref))
            b = rng.randint(a, len(ref) + 10)
            assert q[a:b] == bytes(ref[a:b])
            i = rng.randrange(len(ref))
            assert q[i] == ref[i] and q[-1] == ref[-1]
        assert len(q) == len(ref) and bool(q) == bool(ref)
    assert bytes(q) == bytes(ref) and q == ref


def test_a_whole_chunk_is_returned_without_a_copy_and_input_is_not_aliased():
    block = bytes(range(256)) * 256
    q = ByteQueue()
    q += block
    assert q[0:len(block)] is block
    src = bytearray(b"x" * 10000)
    q += src
    src[:] = b"y" * 10000                    # the caller's buffer changes; the queue does not
    assert q[len(block):] == b"x" * 10000


def test_bad_uses_fail_clearly():
    q = ByteQueue(b"abc")
    with pytest.raises(IndexError):
        q[3]
    with pytest.raises(ValueError):
        del q[1:2]
    with pytest.raises(ValueError):
        q[::2]
    del q[:]
    assert not q and q[0:5] == b""
