import random

from shared.proto.reassembly import Complete, Discard, Reassembler

K = ("src", "dst", 17, 7)


def frags(total, step):
    return [(off, min(step, total - off), off + step < total) for off in range(0, total, step)]


def feed(r, pieces, now=0.0, key=K):
    out = []
    for off, length, more in pieces:
        out += r.add(key, off, length, more, f"f{off}", now)
    return out


def test_in_order():
    r = Reassembler()
    out = feed(r, frags(4000, 1480))
    assert out == [Complete(K, [(0, "f0"), (1480, "f1480"), (2960, "f2960")], 4000)]
    assert r.mem == 0 and not r.queues


def test_any_order_completes_exactly_once():
    for seed in range(20):
        pieces = frags(65000, 1480)
        random.Random(seed).shuffle(pieces)
        r = Reassembler()
        out = feed(r, pieces)
        assert len(out) == 1 and isinstance(out[0], Complete)
        assert [o for o, _ in out[0].frags] == list(range(0, 65000, 1480))


def test_duplicate_is_dropped_alone():
    r = Reassembler()
    a, b = frags(3000, 1480)[:2]
    assert r.add(K, *a, "x", 0) == []
    assert r.add(K, *a, "dup", 0) == [Discard(K, ["dup"], "duplicate")]
    assert len(r.queues[K].frags) == 1
    assert r.add(K, *b, "y", 0) == []


def test_overlap_discards_the_whole_datagram():
    r = Reassembler()
    r.add(K, 0, 1480, True, "a", 0)
    out = r.add(K, 1000, 1480, True, "evil", 0)
    assert out == [Discard(K, ["a", "evil"], "overlapping fragment", first="a")]
    assert not r.queues and r.mem == 0


def test_conflicting_or_bad_lengths():
    r = Reassembler()
    r.add(K, 0, 1480, True, "a", 0)
    r.add(K, 1480, 520, False, "end", 0)      # total is 2000 ... but 0-1480 and 1480-2000: complete!
    assert not r.queues
    r.add(K, 2960, 100, False, "last", 0)
    assert r.add(K, 4000, 8, True, "beyond", 0)[0].reason == "fragment beyond the end"
    assert r.add(K, 0, 13, True, "odd", 0)[0].reason == "bad fragment length"   # not a multiple of 8
    assert r.add(K, 65528, 100, False, "huge", 0)[0].reason == "bad fragment length"


def test_timeout_returns_first_fragment_for_icmp():
    r = Reassembler(timeout=30)
    r.add(K, 0, 1480, True, "first", 0)
    r.add(("b",), 1480, 8, True, "other", 10)
    assert r.poll_at() == 30
    assert r.poll(29.9) == []
    out = r.poll(30)
    assert out == [Discard(K, ["first"], "timeout", first="first")]
    assert r.poll(40) == [Discard(("b",), ["other"], "timeout", first=None)]
    assert r.mem == 0 and r.poll_at() is None


def test_memory_limit_evicts_oldest_queues():
    r = Reassembler(high_thresh=10000)
    for i in range(20):
        out = r.add(("q", i), 0, 1480, True, f"i{i}", now=i, cost=2048)
        if i >= 4:
            assert any(isinstance(d, Discard) and d.reason == "memory limit" for d in out)
    assert r.mem <= 10000
    assert ("q", 19) in r.queues and ("q", 0) not in r.queues


def test_never_grows_without_bound_under_garbage():
    rng = random.Random(5)
    r = Reassembler(high_thresh=1 << 20, max_queues=64)
    for i in range(20000):
        r.add(("k", rng.randrange(500)), rng.randrange(0, 8000, 8), rng.choice([8, 800, 1480]),
              rng.random() < 0.8, i, now=i / 1000, cost=2048)
        assert r.mem <= (1 << 20) and len(r.queues) <= 64


def test_ipv6_payloads_reach_65535_bytes_where_ipv4_stops_20_short():
    v4, v6 = Reassembler(), Reassembler(max_payload=0xFFFF)
    for r, ok in ((v4, False), (v6, True)):
        assert r.add(K, 0, 65512, True, "a", 0.0) == []
        out = r.add(K, 65512, 23, False, "b", 0.0)           # ends at 65,535
        assert isinstance(out[0], Complete if ok else Discard), out
