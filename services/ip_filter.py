"""Netfilter hooks in the ip service: where the five chains are consulted.

The rules come from the config's ``[netfilter] rules`` and change at run time
through CTL_FILTER (``launcher.py filter``); every change is written to the run
directory, so a restarted ip keeps the table (its counters start over).
"""

from __future__ import annotations

import errno
import json
import os
import struct
from typing import TYPE_CHECKING

from services.routes import Iface
from shared.proto.netfilter import Packet, RuleError, Table, parse_rule
from shared.wire.icmp import ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, IcmpHeader

if TYPE_CHECKING:
    from shared.skb import Skb

FILTER_FILE = "ip.filter"


class NetfilterHooks:
    """Mixed into Ip."""

    def filter_init(self) -> None:
        self.nf = Table()
        path = os.path.join(self.rundir, FILTER_FILE)
        try:
            with open(path) as f:
                texts = json.load(f)
        except (OSError, ValueError):
            texts = list(self.cfg.filter_rules)
        for text in texts:
            try:
                self.nf.add(parse_rule(str(text).split()))
            except RuleError as exc:
                self.log.warning("netfilter rule %r ignored: %s", text, exc)

    def filter_save(self) -> None:
        path = os.path.join(self.rundir, FILTER_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(self.nf.texts(), f)
        os.replace(path + ".tmp", path)

    def nf_hook(self, chain: str, skb: "Skb", in_dev: Iface | None, out_dev: Iface | None) -> bool:
        """Run ``chain`` on the datagram at skb.data; False if it was dropped or
        rejected (the skb is then freed here)."""
        if not self.nf.chains[chain]:        # no rules (the usual case): not even a call to ask
            return True
        data = skb.data
        hlen = (data[0] & 0xF) * 4
        proto, frag = data[9], struct.unpack_from("!H", data, 6)[0] & 0x1FFF
        sport = dport = None
        if proto in (6, 17) and not frag and len(data) >= hlen + 4:
            sport, dport = struct.unpack_from("!HH", data, hlen)
        p = Packet(proto, int.from_bytes(data[12:16], "big"), int.from_bytes(data[16:20], "big"), len(data),
                   sport, dport, in_dev.name if in_dev else None, out_dev.name if out_dev else None)
        verdict = self.nf.verdict(chain, p)
        if verdict == "ACCEPT":
            return True
        self.counters[f"Nf{chain.title()}{verdict.title()}s"] += 1
        if verdict == "REJECT":
            if bytes(data[12:16]) in self.local_ifaces:
                # our own datagram: the sender hears of it as of an ICMP error
                self.icmp_error_up(IcmpHeader(ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0), bytes(data[:hlen + 8]))
            else:
                self.icmp_send(skb, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, ifc=in_dev)
        self.pool.free(skb)
        return False

    def filter_control(self, op: str, args: list) -> object:
        """CTL_FILTER: add CHAIN ... -j V | del CHAIN N | list | flush."""
        try:
            if op == "add":
                rule = parse_rule([str(a) for a in args])
                n = self.nf.add(rule)
                self.filter_save()
                return {"chain": rule.chain, "num": n, "rule": rule.text()}
            if op == "del":
                if len(args) != 2 or not str(args[1]).isdigit():
                    raise RuleError("del needs CHAIN and a rule number")
                rule = self.nf.delete(str(args[0]), int(args[1]))
                self.filter_save()
                return {"deleted": rule.text()}
            if op == "flush":
                self.nf = Table()
                self.filter_save()
                return {"flushed": True}
            if op == "list":
                return self.nf.listing()
        except RuleError as exc:
            raise OSError(errno.EINVAL, str(exc)) from None
        raise OSError(errno.EINVAL, f"unknown filter operation {op!r}")
