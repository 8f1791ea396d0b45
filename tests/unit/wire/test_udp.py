import pytest

from shared.wire import WireError
from shared.wire.checksum import ones_sum, pseudo_header_sum
from shared.wire.udp import UdpHeader, emit_udp, parse_udp

SRC, DST = bytes([10, 66, 0, 1]), bytes([10, 66, 0, 2])
# A datagram "hello" from 10.66.0.1:40000 to 10.66.0.2:9999 as the Linux kernel sends it.
GOLDEN = bytes.fromhex("9c40" "270f" "000d" "e42b") + b"hello"   # captured on tap0


def with_csum(dgram: bytes) -> bytes:
    b = bytearray(dgram)
    b[6:8] = b"\0\0"
    c = ~ones_sum(b, pseudo_header_sum(SRC, DST, 17, len(b))) & 0xFFFF
    b[6:8] = (c or 0xFFFF).to_bytes(2, "big")
    return bytes(b)


def test_golden_and_checksum():
    assert with_csum(GOLDEN) == GOLDEN
    hdr, data = parse_udp(GOLDEN, SRC, DST)
    assert (hdr.sport, hdr.dport, hdr.length) == (40000, 9999, 13) and bytes(data) == b"hello"


def test_round_trip():
    buf = bytearray(8 + 3)
    buf[8:] = b"abc"
    emit_udp(UdpHeader(1, 2, 11), buf)
    hdr, data = parse_udp(with_csum(bytes(buf)), SRC, DST)
    assert (hdr.sport, hdr.dport, hdr.length, bytes(data)) == (1, 2, 11, b"abc")


def test_zero_checksum_means_none():
    b = bytearray(GOLDEN)
    b[6:8] = b"\0\0"
    assert bytes(parse_udp(b, SRC, DST)[1]) == b"hello"


def test_errors():
    bad = bytearray(GOLDEN)
    bad[-1] ^= 1
    with pytest.raises(WireError, match="checksum"):
        parse_udp(bad, SRC, DST)
    with pytest.raises(WireError, match="shorter"):
        parse_udp(GOLDEN[:7], SRC, DST)
    long_len = bytearray(GOLDEN)
    long_len[4:6] = (40).to_bytes(2, "big")
    with pytest.raises(WireError, match="length"):
        parse_udp(long_len, SRC, DST)
    with pytest.raises(WireError, match="checksum"):     # checked against the other pseudo-header
        parse_udp(GOLDEN, DST, SRC[:3] + b"\x05")


def test_trailing_bytes_beyond_length_are_ignored():
    hdr, data = parse_udp(GOLDEN + b"pad", SRC, DST)
    assert bytes(data) == b"hello"
