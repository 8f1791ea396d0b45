"""Sequence-number arithmetic modulo 2**32 (RFC 9293 3.4). Raw < on sequence
numbers appears nowhere else.

The comparisons each compute the distance themselves rather than call ``sub``:
tcp makes ~70 of them per request/response, and a Python call is most of their cost.
"""

MOD = 1 << 32
HALF = 1 << 31


def add(a: int, n: int) -> int:
    return (a + n) % MOD


def sub(a: int, b: int) -> int:
    """Signed distance a - b, in (-2**31, 2**31]."""
    d = (a - b) % MOD
    return d - MOD if d > HALF else d


def lt(a: int, b: int) -> bool:
    return (a - b) % MOD > HALF                 # sub(a, b) < 0


def le(a: int, b: int) -> bool:
    d = (a - b) % MOD
    return d == 0 or d > HALF                   # sub(a, b) <= 0


def gt(a: int, b: int) -> bool:
    return 0 < (a - b) % MOD <= HALF            # sub(a, b) > 0


def ge(a: int, b: int) -> bool:
    return (a - b) % MOD <= HALF                # sub(a, b) >= 0


def between(lo: int, x: int, hi: int) -> bool:
    """lo <= x < hi, modulo 2**32."""
    return le(lo, x) and lt(x, hi)


def max_seq(a: int, b: int) -> int:
    return a if ge(a, b) else b
