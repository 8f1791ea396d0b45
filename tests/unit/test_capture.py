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


def test_summaries_of_ipv6_frames_the_kernel_sent():
    from tests.unit.wire import golden6 as G
    assert summary(G.NS) == "IP6 fd66::1 > ff02::1:ff00:2: ICMP6 neighbor solicitation, target fd66::2, " \
                            "hop limit 255, length 32"
    assert summary(G.MLD2_REPORT_HBH) == "IP6 :: > ff02::16: HBH, ICMP6 multicast listener report v2, " \
                                         "hop limit 1, length 28"
    assert summary(G.FRAG_2) == "IP6 fd66::1 > fd66::2: frag offset 1448+, length 1448"
    assert summary(G.UDP6) == "IP6 fd66::1 > fd66::2: UDP 41347 > 9, length 13"


def test_ipv6_summary_never_raises_on_garbage():
    from tests.unit.wire import golden6 as G
    rng = random.Random(66)
    for _ in range(5000):
        f = bytearray(rng.choice([G.ECHO6_REQUEST, G.MLD2_REPORT_HBH, G.FRAG_1, G.NS]))
        for _ in range(rng.randint(1, 8)):
            f[rng.randrange(14, len(f))] = rng.randrange(256)
        assert isinstance(summary(bytes(f[:rng.randrange(14, len(f) + 1)])), str)
