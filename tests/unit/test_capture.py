"""Capture output: pcap records as libpcap lays them out; summaries of any bytes."""

import io
import random
import struct

from shared.capture import LINKTYPE_ETHERNET, PCAP_MAGIC, PcapWriter, summary
from tests.unit.wire.golden import GOLDEN_ARP, GOLDEN_PING_FRAME


def test_pcap_file_header_and_records():
    f = io.BytesIO()
    w = PcapWriter(f)
    w.write(1700000000.25, b"\x01" * 60)
    b = f.getvalue()
    magic, major, minor, _, _, snap, link = struct.unpack_from("<IHHiIII", b)
    assert (magic, major, minor, link) == (PCAP_MAGIC, 2, 4, LINKTYPE_ETHERNET) and snap >= 65535
    sec, usec, incl, orig = struct.unpack_from("<IIII", b, 24)
    assert (sec, usec, incl, orig) == (1700000000, 250000, 60, 60) and b[40:] == b"\x01" * 60


def test_summaries_of_captured_frames():
    assert summary(GOLDEN_ARP) == "ARP, Request who-has 10.66.0.2 tell 10.66.0.1"
    assert summary(GOLDEN_PING_FRAME) == "IP 10.66.0.1 > 10.66.0.2: ICMP echo request, code 0, ttl 64, length 16"


def test_summary_never_raises_on_garbage():
    rng = random.Random(7)
    for _ in range(5000):
        n = rng.randrange(0, 80)
        frame = bytes(rng.randrange(256) for _ in range(n))
        if n > 14 and rng.random() < 0.7:            # mostly IPv4 with random headers
            frame = frame[:12] + b"\x08\x00" + bytes([0x40 | rng.randrange(16)]) + frame[15:]
        assert isinstance(summary(frame), str)
