import random
import struct

from shared.wire.checksum import checksum, ones_sum, pseudo_header_sum, verify


def reference(data: bytes) -> int:
    """RFC 1071 word-by-word, the slow obvious way."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def test_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2
    assert ones_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_matches_reference_on_random_data_of_every_parity():
    rng = random.Random(1)
    for n in list(range(0, 40)) + [1499, 1500, 65535]:
        data = rng.randbytes(n)
        assert checksum(data) == reference(data), n


def test_all_ones_and_zero_edge_cases():
    assert checksum(b"") == 0xFFFF
    assert checksum(b"\0\0") == 0xFFFF
    assert checksum(b"\xff\xff") == 0x0000      # sum is 0xFFFF (negative zero)
    assert reference(b"\xff\xff") == 0


def test_verify_accepts_a_filled_in_checksum_and_rejects_a_flipped_bit():
    data = bytearray(random.Random(2).randbytes(64))
    data[10:12] = b"\0\0"
    struct.pack_into("!H", data, 10, checksum(data))
    assert verify(data)
    data[3] ^= 0x10
    assert not verify(data)


def test_pseudo_header_sum_feeds_into_checksum():
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    seg = b"\x12\x34\x00\x35\x00\x0c\x00\x00abcd"
    ph = pseudo_header_sum(src, dst, 17, len(seg))
    assert checksum(seg, ph) == reference(src + dst + b"\x00\x11" + len(seg).to_bytes(2, "big") + seg)
