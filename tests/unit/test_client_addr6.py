"""The client library's AF_INET6 names: what it sends the socket server and what it shows."""

import socket as ksock

import pytest

from shared.client import mksocket


def test_ipv6_addresses_are_checked_and_carry_their_scope(monkeypatch):
    monkeypatch.setenv(mksocket.IFACES_ENV, "1:lo,2:tap0")
    assert mksocket._inet6_addr(("fd66::1", 53)) == ("fd66::1", 53)
    assert mksocket._inet6_addr(("", 53, 0, 0)) == ("::", 53)
    assert mksocket._inet6_addr(("fe80::1", 53, 0, 2)) == ("fe80::1%2", 53)
    assert mksocket._inet6_addr(("fe80::1%tap0", 53)) == ("fe80::1%2", 53)
    assert mksocket._inet6_addr(("localhost", 53)) == ("::1", 53)
    with pytest.raises(ksock.gaierror):
        mksocket._inet6_addr(("10.66.0.1", 53))          # as CPython: a name AF_INET6 cannot resolve
    with pytest.raises(ksock.gaierror):
        mksocket._inet6_addr(("fe80::1%eth9", 53))
    with pytest.raises(OverflowError):
        mksocket._inet6_addr(("::1", 70000))
    with pytest.raises(OverflowError):
        mksocket._inet6_addr(("::1", 53, 1 << 20))
    with pytest.raises(TypeError):
        mksocket._inet6_addr(("::1",))


def test_names_from_the_server_become_4_tuples():
    assert mksocket._inet6_name("fd66::2", 53) == ("fd66::2", 53, 0, 0)
    assert mksocket._inet6_name("fe80::1%2", 53) == ("fe80::1", 53, 0, 2)
    assert mksocket._inet6_name("::ffff:10.66.0.1", 7) == ("::ffff:10.66.0.1", 7, 0, 0)


def test_getaddrinfo_gives_ipv6_rows_for_ipv6_literals_and_af_inet6():
    [row] = mksocket.getaddrinfo("fd66::1", 53, type=ksock.SOCK_DGRAM)
    assert row == (ksock.AF_INET6, ksock.SOCK_DGRAM, ksock.IPPROTO_UDP, "", ("fd66::1", 53, 0, 0))
    [row] = mksocket.getaddrinfo(None, 53, ksock.AF_INET6, ksock.SOCK_DGRAM, 0, ksock.AI_PASSIVE)
    assert row[4] == ("::", 53, 0, 0)
    # a name, family unspecified: IPv4 rows only while AF_INET6 takes only UDP
    assert {r[0] for r in mksocket.getaddrinfo("localhost", 80)} == {ksock.AF_INET}
    with pytest.raises(ksock.gaierror):
        mksocket.getaddrinfo("fd66::1", 53, ksock.AF_INET)
