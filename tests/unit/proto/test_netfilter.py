"""The rule language and matching of the netfilter table."""

import ipaddress

import pytest

from shared.proto.netfilter import Packet, RuleError, Table, parse_rule


def ip(a):
    return int(ipaddress.IPv4Address(a))


def test_rules_round_trip_as_text():
    text = "FORWARD -p tcp -s 10.66.0.0/24 -d 10.67.0.1/32 --sport 1000 --dport 80 -i tap0 -o tap1 -j REJECT"
    assert parse_rule(text.split()).text() == text
    assert parse_rule("input -p 47 -j accept".split()).text() == "INPUT -p 47 -j ACCEPT"


@pytest.mark.parametrize("text, why", [
    ("", "empty"), ("NOPE -j DROP", "no chain"), ("INPUT -j", "needs a value"), ("INPUT -x 1 -j DROP", "unknown"),
    ("INPUT -p tcp", "verdict"), ("INPUT -p sctp -j DROP", "-p"), ("INPUT -s 10.0.0.300 -j DROP", "-s"),
    ("INPUT --dport 80 -j DROP", "needs -p tcp"), ("INPUT -p udp --dport 70000 -j DROP", "port"),
    ("OUTPUT -i tap0 -j DROP", "-i cannot"), ("INPUT -o tap0 -j DROP", "-o cannot"),
    ("INPUT -p tcp -p udp -j DROP", "twice"),
])
def test_bad_rules_say_what_is_wrong(text, why):
    with pytest.raises(RuleError, match=why):
        parse_rule(text.split())


def test_first_match_decides_counts_it_and_the_policy_is_accept():
    t = Table()
    t.add(parse_rule("INPUT -p tcp --dport 22 -j ACCEPT".split()))
    t.add(parse_rule("INPUT -p tcp -s 10.66.0.0/24 -j DROP".split()))
    ssh = Packet(6, ip("10.66.0.1"), ip("10.66.0.2"), 60, 40000, 22, "tap0")
    web = Packet(6, ip("10.66.0.1"), ip("10.66.0.2"), 100, 40000, 80, "tap0")
    other = Packet(6, ip("10.67.0.1"), ip("10.66.0.2"), 60, 40000, 80, "tap1")
    assert [t.verdict("INPUT", p) for p in (ssh, web, other)] == ["ACCEPT", "DROP", "ACCEPT"]
    assert [(r["packets"], r["bytes"]) for r in t.listing()] == [(1, 60), (1, 100)]
    assert t.verdict("FORWARD", web) == "ACCEPT" and not t.active("FORWARD")


def test_ports_need_a_first_fragment_and_devices_must_match():
    t = Table()
    t.add(parse_rule("FORWARD -p udp --dport 53 -o tap1 -j DROP".split()))
    frag = Packet(17, 1, 2, 100, None, None, "tap0", "tap1")
    dns = Packet(17, 1, 2, 100, 5000, 53, "tap0", "tap1")
    dns_other_way = Packet(17, 1, 2, 100, 5000, 53, "tap1", "tap0")
    assert [t.verdict("FORWARD", p) for p in (frag, dns, dns_other_way)] == ["ACCEPT", "DROP", "ACCEPT"]


def test_delete_by_number():
    t = Table()
    t.add(parse_rule("OUTPUT -j DROP".split()))
    with pytest.raises(RuleError, match="has no rule 2"):
        t.delete("OUTPUT", 2)
    assert t.delete("output", 1).verdict == "DROP" and t.texts() == []
