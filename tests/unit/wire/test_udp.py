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


# -- over IPv6 (RFC 8200 8.1) ---------------------------------------------------------
SRC6, DST6 = bytes.fromhex("fd66" + "00" * 13 + "01"), bytes.fromhex("fd66" + "00" * 13 + "02")


def with_csum6(dgram: bytes) -> bytes:
    """The checksum over RFC 8200's pseudo-header, written out byte by byte here."""
    b = bytearray(dgram)
    b[6:8] = b"\0\0"
    pseudo = SRC6 + DST6 + len(b).to_bytes(4, "big") + bytes((0, 0, 0, 17))
    c = ~ones_sum(pseudo + bytes(b) + (b"\0" if len(b) % 2 else b"")) & 0xFFFF
    b[6:8] = (c or 0xFFFF).to_bytes(2, "big")
    return bytes(b)


def test_over_ipv6_the_checksum_covers_the_ipv6_pseudo_header():
    dgram = with_csum6(bytes.fromhex("9c40" "270f" "000d" "0000") + b"hello")
    hdr, data = parse_udp(dgram, SRC6, DST6)
    assert (hdr.sport, hdr.dport, hdr.length, bytes(data)) == (40000, 9999, 13, b"hello")
    with pytest.raises(WireError, match="checksum"):
        parse_udp(dgram, SRC6, bytes.fromhex("fd66" + "00" * 13 + "03"))     # another destination
    with pytest.raises(WireError, match="checksum"):
        parse_udp(dgram, SRC, DST)                                          # IPv4's pseudo-header


def test_a_zero_checksum_means_none_over_ipv4_and_is_refused_over_ipv6():
    dgram = bytes.fromhex("9c40" "270f" "000d" "0000") + b"hello"
    assert bytes(parse_udp(dgram, SRC, DST)[1]) == b"hello"
    with pytest.raises(WireError, match="zero checksum"):
        parse_udp(dgram, SRC6, DST6)
    with pytest.raises(WireError, match="zero checksum"):
        parse_udp(dgram, SRC6, DST6, verify=False)        # even when the device vouched for the rest
