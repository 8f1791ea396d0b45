"""The stack's SNMP-style counters in one table, as nstat and /proc/net/snmp show them.

Each service counts under the MIB names of the layer it implements (ip counts
IpInReceives, tcp counts TcpActiveOpens, ...). ``collect`` gathers them from
every service's stats into one table in /proc/net/snmp order (RFC 4293, RFC
4022, RFC 4113 names), followed by the stack's own extensions (Arp*, raw
sockets, ...) in name order.
"""

from __future__ import annotations

import re

SNMP_ORDER = (
    "IpForwarding IpDefaultTTL IpInReceives IpInHdrErrors IpInAddrErrors IpForwDatagrams IpInUnknownProtos "
    "IpInDiscards IpInDelivers IpOutRequests IpOutDiscards IpOutNoRoutes IpReasmTimeout IpReasmReqds IpReasmOKs "
    "IpReasmFails IpFragOKs IpFragFails IpFragCreates "
    "IcmpInMsgs IcmpInErrors IcmpInCsumErrors IcmpInDestUnreachs IcmpInTimeExcds IcmpInEchos IcmpInEchoReps "
    "IcmpOutMsgs IcmpOutErrors IcmpOutDestUnreachs IcmpOutTimeExcds IcmpOutEchos IcmpOutEchoReps "
    "TcpActiveOpens TcpPassiveOpens TcpAttemptFails TcpEstabResets TcpCurrEstab TcpInSegs TcpOutSegs "
    "TcpRetransSegs TcpInErrs TcpOutRsts TcpInCsumErrors "
    "UdpInDatagrams UdpNoPorts UdpInErrors UdpOutDatagrams UdpRcvbufErrors UdpSndbufErrors UdpInCsumErrors"
).split()
_MIB_NAME = re.compile(r"^(Ip6?|Icmp6?|Tcp|Udp6?|Arp|Raw|Ndisc6)[A-Z][A-Za-z0-9]+$")   # snmp6 names: Icmp6InType128


def collect(per_service: dict[str, dict]) -> dict[str, int]:
    """Every MIB-named counter of every service, summed, standard ones first
    (present even when zero), then the rest."""
    found: dict[str, int] = {}
    for counters in per_service.values():
        for name, value in counters.items():
            if _MIB_NAME.match(name) and isinstance(value, int) and not isinstance(value, bool):
                found[name] = found.get(name, 0) + value
    table = {name: found.pop(name, 0) for name in SNMP_ORDER}
    table.update(sorted(found.items()))
    return table
