"""Netfilter hooks: five chains of rules with an iptables-like syntax (sans-IO).

A rule matches on protocol, source and destination prefixes, ports (TCP and
UDP, first fragments only) and input/output device, and ends in ACCEPT, DROP
or REJECT; each rule counts the packets and bytes it matched. The first
matching rule of a chain decides; with none, the chain's policy (ACCEPT) does.
Rules are written as iptables writes them:

    FORWARD -p icmp -s 10.66.0.0/24 -j DROP
    INPUT -p tcp --dport 8080 -i tap0 -j REJECT
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
VERDICTS = ("ACCEPT", "DROP", "REJECT")
PROTOS = {"icmp": 1, "tcp": 6, "udp": 17}
# which devices a chain knows: -i on the way in, -o on the way out (as iptables refuses the others)
_IN_OK = {"PREROUTING", "INPUT", "FORWARD"}
_OUT_OK = {"FORWARD", "OUTPUT", "POSTROUTING"}


class RuleError(ValueError):
    """A rule that cannot be parsed; the message names the bad part."""


@dataclass
class Rule:
    chain: str
    verdict: str
    proto: int | None = None
    src: ipaddress.IPv4Network | None = None
    dst: ipaddress.IPv4Network | None = None
    sport: int | None = None
    dport: int | None = None
    in_dev: str | None = None
    out_dev: str | None = None
    packets: int = field(default=0, compare=False)
    bytes: int = field(default=0, compare=False)

    def text(self) -> str:
        parts = [self.chain]
        if self.proto is not None:
            parts += ["-p", next((n for n, p in PROTOS.items() if p == self.proto), str(self.proto))]
        for flag, v in (("-s", self.src), ("-d", self.dst), ("--sport", self.sport), ("--dport", self.dport),
                        ("-i", self.in_dev), ("-o", self.out_dev)):
            if v is not None:
                parts += [flag, str(v)]
        return " ".join([*parts, "-j", self.verdict])


@dataclass(frozen=True, slots=True)
class Packet:
    """What the hooks look at, taken from the IP header by the caller."""
    proto: int
    src: int
    dst: int
    length: int
    sport: int | None = None     # TCP/UDP first fragments only
    dport: int | None = None
    in_dev: str | None = None
    out_dev: str | None = None


def parse_rule(tokens: list[str]) -> Rule:
    """``CHAIN [-p P] [-s NET] [-d NET] [--sport N] [--dport N] [-i DEV] [-o DEV] -j VERDICT``."""
    if not tokens:
        raise RuleError("empty rule")
    chain = tokens[0].upper()
    if chain not in CHAINS:
        raise RuleError(f"no chain {tokens[0]!r} (one of {', '.join(CHAINS)})")
    opts: dict[str, str] = {}
    rest = tokens[1:]
    if len(rest) % 2:
        raise RuleError(f"option {rest[-1]!r} needs a value")
    for flag, value in zip(rest[::2], rest[1::2]):
        if flag not in ("-p", "-s", "-d", "--sport", "--dport", "-i", "-o", "-j"):
            raise RuleError(f"unknown option {flag!r}")
        if flag in opts:
            raise RuleError(f"option {flag} given twice")
        opts[flag] = value
    verdict = opts.get("-j", "").upper()
    if verdict not in VERDICTS:
        raise RuleError(f"-j {opts.get('-j')!r}: the verdict must be one of {', '.join(VERDICTS)}")
    rule = Rule(chain, verdict)
    if "-p" in opts:
        p = opts["-p"].lower()
        if p in PROTOS:
            rule.proto = PROTOS[p]
        elif p.isdigit() and 0 < int(p) < 256:
            rule.proto = int(p)
        else:
            raise RuleError(f"-p {opts['-p']!r}: not tcp, udp, icmp or a protocol number")
    for flag, attr in (("-s", "src"), ("-d", "dst")):
        if flag in opts:
            try:
                setattr(rule, attr, ipaddress.IPv4Network(opts[flag], strict=False))
            except ValueError:
                raise RuleError(f"{flag} {opts[flag]!r}: not an IPv4 address or prefix") from None
    for flag, attr in (("--sport", "sport"), ("--dport", "dport")):
        if flag in opts:
            if rule.proto not in (6, 17):
                raise RuleError(f"{flag} needs -p tcp or -p udp")
            v = opts[flag]
            if not v.isdigit() or not 0 <= int(v) <= 0xFFFF:
                raise RuleError(f"{flag} {v!r}: not a port number")
            setattr(rule, attr, int(v))
    if "-i" in opts:
        if chain not in _IN_OK:
            raise RuleError(f"-i cannot be used in {chain}")
        rule.in_dev = opts["-i"]
    if "-o" in opts:
        if chain not in _OUT_OK:
            raise RuleError(f"-o cannot be used in {chain}")
        rule.out_dev = opts["-o"]
    return rule


def _matches(r: Rule, p: Packet) -> bool:
    if r.proto is not None and r.proto != p.proto:
        return False
    if r.src is not None and (p.src & int(r.src.netmask)) != int(r.src.network_address):
        return False
    if r.dst is not None and (p.dst & int(r.dst.netmask)) != int(r.dst.network_address):
        return False
    if r.sport is not None and r.sport != p.sport:
        return False
    if r.dport is not None and r.dport != p.dport:
        return False
    if r.in_dev is not None and r.in_dev != p.in_dev:
        return False
    return r.out_dev is None or r.out_dev == p.out_dev


class Table:
    """The filter table: a list of rules per chain, policy ACCEPT."""

    def __init__(self) -> None:
        self.chains: dict[str, list[Rule]] = {c: [] for c in CHAINS}

    def add(self, rule: Rule) -> int:
        self.chains[rule.chain].append(rule)
        return len(self.chains[rule.chain])

    def delete(self, chain: str, n: int) -> Rule:
        rules = self.chains.get(chain.upper())
        if rules is None:
            raise RuleError(f"no chain {chain!r}")
        if not 1 <= n <= len(rules):
            raise RuleError(f"{chain.upper()} has no rule {n} (it has {len(rules)})")
        return rules.pop(n - 1)

    def verdict(self, chain: str, p: Packet) -> str:
        for r in self.chains[chain]:
            if _matches(r, p):
                r.packets += 1
                r.bytes += p.length
                return r.verdict
        return "ACCEPT"

    def active(self, chain: str) -> bool:
        return bool(self.chains[chain])

    def texts(self) -> list[str]:
        return [r.text() for c in CHAINS for r in self.chains[c]]

    def listing(self) -> list[dict]:
        return [{"chain": c, "num": i, "rule": r.text(), "packets": r.packets, "bytes": r.bytes}
                for c in CHAINS for i, r in enumerate(self.chains[c], 1)]
