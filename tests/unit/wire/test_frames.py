"""Parse/emit round trips, golden frames and truncation for Ethernet, ARP, IPv4, ICMP."""

import random

import pytest

from shared.wire import WireError
from shared.wire.arp import ARPOP_REPLY, ARPOP_REQUEST, ArpPacket, emit_arp, parse_arp
from shared.wire.ethernet import ETH_P_ARP, EthHeader, emit_eth, mac_aton, mac_ntoa, parse_eth
from shared.wire.icmp import ICMP_ECHO, ICMP_ECHOREPLY, IcmpHeader, emit_icmp, parse_icmp
from shared.wire.ipv4 import IPPROTO_ICMP, Ipv4Header, emit_ipv4, ip_aton, ip_ntoa, parse_ipv4

from tests.unit.wire.golden import GOLDEN_ARP, GOLDEN_PING_FRAME

GOLDEN_PING = GOLDEN_PING_FRAME[14:]
# mkstack's echo reply to it, which the kernel accepted.
GOLDEN_REPLY = bytes.fromhex(
    "45000024" "d25a0000" "4001" "93f8" "0a420002" "0a420001"
    "0000" "e5c1" "0e2d0001" "0001020304050607")


def test_golden_arp_request():
    eth, payload = parse_eth(GOLDEN_ARP)
    assert eth.ethertype == ETH_P_ARP and eth.dst == b"\xff" * 6
    arp = parse_arp(payload)
    assert arp.op == ARPOP_REQUEST
    assert ip_ntoa(arp.spa) == "10.66.0.1" and ip_ntoa(arp.tpa) == "10.66.0.2"
    assert mac_ntoa(arp.sha) == "e2:a9:5b:91:d8:1d"


def test_golden_ping_checksums_verify():
    ip, payload = parse_ipv4(GOLDEN_PING)
    assert (ip.proto, ip.ttl, ip.df, ip.total_len) == (IPPROTO_ICMP, 64, True, 36)
    icmp, data = parse_icmp(payload)
    assert (icmp.type, icmp.ident, icmp.seq) == (ICMP_ECHO, 0x0E2D, 1)
    assert bytes(data) == bytes(range(8))


def test_ipv4_emit_reproduces_golden_header():
    ip, _ = parse_ipv4(GOLDEN_PING)
    buf = bytearray(20)
    emit_ipv4(ip, buf)
    assert bytes(buf) == GOLDEN_PING[:20]


def test_emit_reproduces_the_golden_reply():
    buf = bytearray(GOLDEN_REPLY)
    buf[:] = bytes(20) + bytes(8) + GOLDEN_REPLY[28:]
    emit_icmp(IcmpHeader(ICMP_ECHOREPLY, 0, 0x0E2D0001), buf, 20, 8)
    emit_ipv4(Ipv4Header(src=ip_aton("10.66.0.2"), dst=ip_aton("10.66.0.1"), proto=IPPROTO_ICMP,
                         total_len=36, ident=0xD25A), buf)
    assert bytes(buf) == GOLDEN_REPLY


def test_ethernet_of_golden_ping():
    eth, payload = parse_eth(GOLDEN_PING_FRAME)
    assert mac_ntoa(eth.dst) == "02:6d:6b:00:00:02" and eth.ethertype == 0x0800
    assert bytes(payload) == GOLDEN_PING


def test_round_trips():
    eth = EthHeader(mac_aton("02:00:00:00:00:01"), mac_aton("02:00:00:00:00:02"), 0x0800)
    buf = bytearray(14)
    emit_eth(eth, buf)
    assert parse_eth(buf)[0] == eth
    arp = ArpPacket(ARPOP_REPLY, b"\x02" * 6, ip_aton("1.2.3.4"), b"\x04" * 6, ip_aton("5.6.7.8"))
    buf = bytearray(28)
    emit_arp(arp, buf)
    assert parse_arp(buf) == arp
    hdr = Ipv4Header(src=ip_aton("10.0.0.1"), dst=ip_aton("10.0.0.2"), proto=17, total_len=28 + 4,
                     ttl=3, tos=0x10, ident=999, mf=True, frag_off=1480, options=b"\x01\x01\x01\x00")
    buf = bytearray(32)
    emit_ipv4(hdr, buf)
    assert parse_ipv4(buf)[0] == hdr


@pytest.mark.parametrize("frame,parser", [(GOLDEN_ARP[:13], parse_eth), (GOLDEN_ARP[14:41], parse_arp),
                                          (GOLDEN_PING[:19], parse_ipv4), (GOLDEN_PING[20:27], parse_icmp)])
def test_truncated_frames_are_rejected(frame, parser):
    with pytest.raises(WireError):
        parser(frame)


def test_ipv4_rejects_each_bad_field():
    def mutate(i, v):
        b = bytearray(GOLDEN_PING)
        b[i] = v
        return bytes(b)
    cases = {
        "version": mutate(0, 0x65),
        "ihl too small": mutate(0, 0x44),
        "ihl beyond packet": mutate(0, 0x4F),
        "total length beyond packet": mutate(3, 0x30),
        "total length below header": mutate(3, 0x10),
        "checksum": mutate(11, 0x05),
    }
    for name, frame in cases.items():
        with pytest.raises(WireError, match=r"^\[IPv4\]"):
            parse_ipv4(frame)
            pytest.fail(name)


def test_ipv4_trims_payload_to_total_length():
    padded = GOLDEN_PING + b"\0" * 10     # Ethernet minimum-size padding
    _, payload = parse_ipv4(padded)
    assert len(payload) == 16


def test_bogus_arp_is_rejected():
    bad_htype = bytearray(GOLDEN_ARP[14:])
    bad_htype[1] = 6
    bad_op = bytearray(GOLDEN_ARP[14:])
    bad_op[7] = 9
    mcast_sender = bytearray(GOLDEN_ARP[14:])
    mcast_sender[8] = 0x01
    for frame in (bad_htype, bad_op, mcast_sender):
        with pytest.raises(WireError, match=r"^\[ARP\]"):
            parse_arp(frame)


def test_icmp_bad_checksum():
    b = bytearray(GOLDEN_PING[20:])
    b[-1] ^= 1
    with pytest.raises(WireError, match="checksum"):
        parse_icmp(b)


def test_garbage_raises_only_wire_errors():
    rng = random.Random(7)
    for _ in range(20000):
        frame = rng.randbytes(rng.randrange(0, 80))
        if frame and rng.random() < 0.5:
            frame = bytes([0x45]) + frame[1:]   # look like IPv4 to get past the version check
        for parser in (parse_eth, parse_arp, parse_ipv4, parse_icmp):
            try:
                parser(frame)
            except WireError:
                pass
