import ipaddress

import pytest

from shared.proto.fib import Fib, FibRoute, Scope


def route(cidr, ifindex=2, gw=None, metric=0):
    n = ipaddress.IPv4Network(cidr)
    return FibRoute(int(n.network_address), n.prefixlen, ifindex,
                    ipaddress.IPv4Address(gw).packed if gw else None, b"\x0a\0\0\x02", metric)


def ip(s):
    return ipaddress.IPv4Address(s).packed


def test_longest_prefix_wins_then_metric():
    f = Fib()
    f.add(route("0.0.0.0/0", gw="10.0.0.1", metric=5))
    f.add(route("10.0.0.0/8", ifindex=3))
    f.add(route("10.1.0.0/16", ifindex=4, metric=9))
    f.add(route("10.1.0.0/16", ifindex=5, metric=1))
    assert f.lookup(ip("8.8.8.8")).gateway == ip("10.0.0.1")
    assert f.lookup(ip("10.9.9.9")).ifindex == 3
    assert f.lookup(ip("10.1.2.3")).ifindex == 5
    assert f.lookup(ip("10.1.2.3")).scope is Scope.LINK
    assert f.lookup(ip("8.8.8.8")).next_hop(ip("8.8.8.8")) == ip("10.0.0.1")


def test_no_route():
    f = Fib()
    f.add(route("10.0.0.0/24"))
    assert f.lookup(ip("10.0.1.1")) is None


def test_cache_is_invalidated_on_change():
    f = Fib()
    f.add(route("0.0.0.0/0", gw="10.0.0.1"))
    assert f.lookup(ip("192.0.2.1")).plen == 0
    f.add(route("192.0.2.0/24", ifindex=7))
    assert f.lookup(ip("192.0.2.1")).ifindex == 7
    f.delete(int(ipaddress.IPv4Address("192.0.2.0")), 24)
    assert f.lookup(ip("192.0.2.1")).plen == 0


def test_duplicates_and_host_bits_are_refused():
    f = Fib()
    f.add(route("10.0.0.0/24"))
    with pytest.raises(FileExistsError):
        f.add(route("10.0.0.0/24"))
    with pytest.raises(ValueError):
        f.add(FibRoute(int(ipaddress.IPv4Address("10.0.0.5")), 24, 2, None, b"\0" * 4))
    with pytest.raises(LookupError):
        f.delete(0, 0)


def test_ipv6_routes_in_a_128_bit_fib():
    fib = Fib(bits=128)
    net = ipaddress.IPv6Network("fd99::/64")
    fib.add(FibRoute(int(net.network_address), 64, 2, ipaddress.IPv6Address("fd66::1").packed, b""))
    fib.add(FibRoute(0, 0, 3, ipaddress.IPv6Address("fd66::9").packed, b""))
    assert fib.lookup(ipaddress.IPv6Address("fd99::5").packed).ifindex == 2
    assert fib.lookup(ipaddress.IPv6Address("2001:db8::1").packed).ifindex == 3
    with pytest.raises(ValueError):
        fib.add(FibRoute(int(ipaddress.IPv6Address("fd99::1")), 64, 2, None, b""))     # host bits set
