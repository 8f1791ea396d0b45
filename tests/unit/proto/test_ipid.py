"""IPv4 IDs per destination (RFC 7739): one sequence per path, unrelated across paths and runs."""

from shared.proto.ipid import IpIdents

A, B = bytes([10, 66, 0, 2]), bytes([10, 66, 0, 1])


def test_ids_to_one_destination_advance_one_by_one():
    ids = IpIdents()
    first = ids.reserve(A, B, 6)
    assert [ids.reserve(A, B, 6) for _ in range(5)] == [(first + n) & 0xFFFF for n in range(1, 6)]


def test_a_tso_segment_reserves_the_ids_of_its_datagrams():
    ids = IpIdents()
    first = ids.reserve(A, B, 6, segs=45)
    assert ids.reserve(A, B, 6) == (first + 45) & 0xFFFF


def test_traffic_to_one_host_does_not_show_in_the_ids_seen_by_another():
    ids = IpIdents()
    # a host whose path shares no counter with B's (1 in 2048 share one, as in Linux)
    others = (bytes([10, 66, 1, n]) for n in range(256))
    c = next(h for h in others if ids.bucket(A, h, 17) != ids.bucket(A, B, 17))
    before = ids.reserve(A, c, 17)
    for _ in range(1000):
        ids.reserve(A, B, 17)
    # C sees its own counter move by one: the 1000 datagrams to B are invisible to it (a global counter moves 1001)
    assert ids.reserve(A, c, 17) == (before + 1) & 0xFFFF


def test_ids_wrap_at_16_bits():
    ids = IpIdents(buckets=1, seed=bytes(8) + b"\xff\xfe")
    assert [ids.reserve(A, B, 1) for _ in range(3)] == [0xFFFE, 0xFFFF, 0]


def test_starting_points_are_random_per_run():
    # two stacks (or one restarted) start the same path at unrelated IDs
    starts = {IpIdents().reserve(A, B, 6) for _ in range(20)}
    assert len(starts) > 15
