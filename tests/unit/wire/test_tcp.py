import pytest

from shared.wire import WireError
from shared.wire.checksum import ones_sum, pseudo_header_sum
from shared.wire.tcp import ACK, SYN, TcpHeader, TcpOptions, emit_tcp, parse_tcp, tcp_hlen

SRC, DST = bytes([10, 66, 0, 1]), bytes([10, 66, 0, 2])
# The Linux kernel's SYN from 10.66.0.1:40001 to 10.66.0.2:80, captured on tap0.
GOLDEN_SYN = bytes.fromhex("9c41005096dba19500000000a002faf0eeaf0000"
                           "020405b40402080ae45b9077000000000103030a")


def with_csum(seg: bytes) -> bytes:
    b = bytearray(seg)
    b[16:18] = b"\0\0"
    c = ~ones_sum(b, pseudo_header_sum(SRC, DST, 6, len(b))) & 0xFFFF
    b[16:18] = c.to_bytes(2, "big")
    return bytes(b)


def test_golden_kernel_syn():
    assert with_csum(GOLDEN_SYN) == GOLDEN_SYN
    hdr, data = parse_tcp(GOLDEN_SYN, SRC, DST)
    assert (hdr.sport, hdr.dport, hdr.flags, hdr.wnd, len(data)) == (40001, 80, SYN, 64240, 0)
    assert hdr.opts == TcpOptions(mss=1460, wscale=10, sack_ok=True, ts=(0xE45B9077, 0))


@pytest.mark.parametrize("opts", [
    TcpOptions(),
    TcpOptions(mss=1460, wscale=7, sack_ok=True, ts=(1, 0)),
    TcpOptions(mss=536),
    TcpOptions(sack_ok=True),
    TcpOptions(ts=(5, 6), sack=((100, 200), (300, 400), (500, 600))),
    TcpOptions(sack=((1, 2), (3, 4), (5, 6), (7, 8))),
])
def test_round_trip(opts):
    hdr = TcpHeader(1234, 80, 0xFFFFFFFF, 7, ACK | SYN, 29200, 0, opts)
    buf = bytearray(tcp_hlen(opts) + 3)
    n = emit_tcp(hdr, buf)
    buf[n:] = b"abc"
    got, data = parse_tcp(with_csum(bytes(buf)), SRC, DST)
    assert got == hdr and bytes(data) == b"abc"


def test_bad_segments():
    bad = bytearray(GOLDEN_SYN)
    bad[-1] ^= 1
    with pytest.raises(WireError, match="checksum"):
        parse_tcp(bad, SRC, DST)
    with pytest.raises(WireError, match="shorter"):
        parse_tcp(GOLDEN_SYN[:19], SRC, DST)
    off = bytearray(GOLDEN_SYN)
    off[12] = 0xF0                                   # data offset 60 in a 40-byte segment
    with pytest.raises(WireError, match="offset"):
        parse_tcp(with_csum(bytes(off)), SRC, DST)


@pytest.mark.parametrize("opt", [b"\x02\x00\x00\x00", b"\x02\x09\x05\xb4", b"\x08\x03\x00\x00",
                                 b"\x03\x02\x01\x01", b"\x05\x03\x00\x00"])
def test_impossible_option_lengths(opt):
    base = bytearray(GOLDEN_SYN[:20])
    base[12] = ((20 + len(opt)) // 4) << 4
    with pytest.raises(WireError, match=r"^\[TCP\]"):
        parse_tcp(with_csum(bytes(base) + opt), SRC, DST)


def test_window_scale_over_14_is_taken_as_14():
    base = bytearray(GOLDEN_SYN[:20])
    base[12] = 6 << 4
    hdr, _ = parse_tcp(with_csum(bytes(base) + b"\x01\x03\x03\x1e"), SRC, DST)
    assert hdr.opts.wscale == 14
