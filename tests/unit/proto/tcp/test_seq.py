"""The comparisons agree with the sign of the signed distance, at the edges of the half-space."""
import itertools

from shared.proto.tcp import seq as S

EDGES = [0, 1, 2, S.HALF - 1, S.HALF, S.HALF + 1, S.MOD - 2, S.MOD - 1, 12345, 0xDEADBEEF]


def test_comparisons_follow_the_signed_distance():
    for a, b in itertools.product(EDGES, repeat=2):
        d = S.sub(a, b)
        assert -S.HALF < d <= S.HALF
        assert (S.lt(a, b), S.le(a, b), S.gt(a, b), S.ge(a, b)) == (d < 0, d <= 0, d > 0, d >= 0), (a, b)


def test_wrapping():
    assert S.add(S.MOD - 1, 2) == 1
    assert S.sub(1, S.MOD - 1) == 2 and S.lt(S.MOD - 1, 1) and S.gt(1, S.MOD - 1)
    assert S.between(S.MOD - 10, 3, 20) and not S.between(S.MOD - 10, 20, 20)
    assert S.max_seq(S.MOD - 1, 5) == 5
