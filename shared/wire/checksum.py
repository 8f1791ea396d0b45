"""The Internet checksum (RFC 1071), computed with big-integer arithmetic.

The one's complement sum of 16-bit words equals the value of the whole buffer,
read as one big-endian integer, modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF).
CPython does that reduction in C, so a 1500-byte buffer costs about a
microsecond instead of the ~13 us of a word-by-word Python loop.
"""

_MOD = 0xFFFF


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """One's complement sum (not inverted) of ``data`` plus ``initial``."""
    n = int.from_bytes(data, "big")
    if len(data) & 1:
        n <<= 8  # pad the odd byte on the right, as RFC 1071 says
    total = n + initial
    s = total % _MOD
    if s == 0 and total != 0:
        s = _MOD  # one's complement has two zeros; a non-zero sum is 0xFFFF
    return s


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The checksum field value for ``data`` (whose checksum field is zero)."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """True if ``data`` (checksum field included) sums to all ones."""
    return ones_sum(data, initial) == _MOD


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial sum of the IPv4 pseudo-header for TCP/UDP checksums (RFC 768/793)."""
    return ones_sum(src + dst + bytes((0, proto)) + length.to_bytes(2, "big"))


def pseudo_header_sum6(src: bytes, dst: bytes, next_header: int, length: int) -> int:
    """Partial sum of the IPv6 pseudo-header for upper-layer checksums (RFC 8200 8.1):
    source, destination, the 32-bit upper-layer length, three zero bytes, next header."""
    return ones_sum(bytes(src) + bytes(dst) + length.to_bytes(4, "big") + bytes((0, 0, 0, next_header)))
