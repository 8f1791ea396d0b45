import errno

from shared.proto.udp import DUAL, V4, V6, PortTable

A, B = 0x0A420002, 0x0A430002          # two local addresses
PEER, PEER2 = 0x0A420001, 0x0A420009
BCAST = 0x0A4200FF


def table():
    return PortTable((40000, 40009), local={A, B}, broadcasts={BCAST})


def test_bind_rules_as_linux():
    t = table()
    assert t.bind(1, 0, 53) == (0, 0, 53)
    assert t.bind(2, A, 53)[0] == errno.EADDRINUSE        # wildcard overlaps everything
    assert t.bind(1, A, 54)[0] == errno.EINVAL            # already bound
    assert t.bind(3, 0x01020304, 55)[0] == errno.EADDRNOTAVAIL
    assert t.bind(4, A, 60) == (0, A, 60)
    assert t.bind(5, B, 60) == (0, B, 60)                 # distinct specific addresses coexist
    assert t.bind(6, 0, 60)[0] == errno.EADDRINUSE


def test_reuseaddr_needs_both():
    t = table()
    t.bind(1, 0, 53, reuse=True)
    assert t.bind(2, 0, 53, reuse=False)[0] == errno.EADDRINUSE
    assert t.bind(3, 0, 53, reuse=True)[0] == 0


def test_ephemeral_ports_cycle_and_run_out():
    t = table()
    ports = [t.bind(i, 0, 0)[2] for i in range(10)]
    assert sorted(ports) == list(range(40000, 40010))
    assert t.bind(99, 0, 0)[0] == errno.EADDRINUSE
    t.unbind(3)
    assert t.bind(100, 0, 0)[2] == ports[3]


def test_ephemeral_ports_are_not_predictable():
    """RFC 6056: from a random point of the range, not one after the other."""
    t = PortTable((32768, 60999))
    ports = [t.bind(i, 0, 0)[2] for i in range(20)]
    assert len(set(ports)) == 20 and all(32768 <= p <= 60999 for p in ports)
    assert {b - a for a, b in zip(ports, ports[1:])} != {1}


def test_lookup_prefers_the_most_specific_socket():
    t = table()
    t.bind(1, 0, 53)
    assert t.lookup(PEER, 999, A, 53) == [1]
    t2 = table()
    t2.bind(1, 0, 53, reuse=True)
    t2.bind(2, A, 53, reuse=True)
    t2.bind(3, A, 53, reuse=True)
    t2.connect(3, A, PEER, 999)
    assert t2.lookup(PEER, 999, A, 53) == [3]            # connected to exactly this peer
    assert t2.lookup(PEER2, 999, A, 53) == [2]           # bound to the address beats the wildcard
    assert t2.lookup(PEER2, 999, B, 53) == [1]
    assert t2.lookup(PEER, 999, A, 54) == []


def test_connected_socket_ignores_other_peers():
    t = table()
    t.bind(1, A, 53)
    t.connect(1, A, PEER, 1000)
    assert t.lookup(PEER, 1001, A, 53) == []
    t.connect(1, A, 0, 0)                                  # disconnect
    assert t.lookup(PEER, 1001, A, 53) == [1]


def test_among_equals_the_last_bound_wins_and_broadcast_reaches_all():
    t = table()
    t.bind(1, 0, 67, reuse=True)
    t.bind(2, 0, 67, reuse=True)
    assert t.lookup(PEER, 68, A, 67) == [2]
    assert sorted(t.lookup(PEER, 68, BCAST, 67)) == [1, 2]
    assert sorted(t.lookup(PEER, 68, 0xFFFFFFFF, 67)) == [1, 2]


def test_find_sender_for_icmp_errors_and_restore():
    t = table()
    t.bind(1, 0, 5000)
    t.connect(1, A, PEER, 9)
    assert t.socks[1].laddr == A                           # connect fixed the source address
    assert t.find_sender(A, 5000, PEER, 9).sock == 1
    assert t.find_sender(A, 5000, PEER, 10) is None
    fresh = table()
    assert fresh.restore(1, A, 5000, False, PEER, 9) == 0
    assert fresh.lookup(PEER, 9, A, 5000) == [1]


def test_reuseport_group_shares_a_port_and_splits_flows():
    t = PortTable(local={10})
    assert t.bind(1, 10, 5000, reuseport=True)[0] == 0
    assert t.bind(2, 10, 5000, reuseport=True)[0] == 0
    assert t.bind(3, 10, 5000)[0] == errno.EADDRINUSE            # not in the group
    picks = {t.lookup(99, sport, 10, 5000)[0] for sport in range(1000, 1064)}
    assert picks == {1, 2}                                      # both get flows
    assert all(t.lookup(99, 1234, 10, 5000) == t.lookup(99, 1234, 10, 5000) for _ in range(5))
    t.unbind(1)
    assert {t.lookup(99, sport, 10, 5000)[0] for sport in range(1000, 1064)} == {2}


# -- IPv6 beside IPv4 -----------------------------------------------------------------
G6, PEER6 = bytes.fromhex("fd66" + "00" * 13 + "02"), bytes.fromhex("fd66" + "00" * 13 + "01")


def table6():
    return PortTable((40000, 40009), local={A, B, G6}, broadcasts={BCAST})


def test_a_dual_stack_wildcard_overlaps_ipv4_and_a_v6only_one_does_not():
    t = table6()
    assert t.bind(1, 0, 53, fam=DUAL) == (0, 0, 53)
    assert t.bind(2, 0, 53, fam=V4)[0] == errno.EADDRINUSE     # [::]:53 takes IPv4 too, as Linux
    assert t.bind(3, A, 53, fam=V4)[0] == errno.EADDRINUSE
    assert t.bind(4, G6, 53, fam=V6)[0] == errno.EADDRINUSE
    assert t.bind(5, 0, 54, fam=V6) == (0, 0, 54)              # IPV6_V6ONLY
    assert t.bind(6, 0, 54, fam=V4) == (0, 0, 54)
    assert t.bind(7, G6, 54, fam=DUAL)[0] == errno.EADDRINUSE   # inside the v6-only wildcard
    assert t.bind(8, A, 55, fam=V4) == (0, A, 55)
    assert t.bind(9, G6, 55, fam=DUAL) == (0, G6, 55)          # a specific IPv6 address leaves IPv4 alone
    assert t.bind(10, bytes.fromhex("fd67" + "00" * 14), 56, fam=V6)[0] == errno.EADDRNOTAVAIL


def test_each_family_reaches_only_the_sockets_that_take_it():
    t = table6()
    t.bind(1, 0, 53, fam=V4)
    t.bind(2, 0, 53, fam=V6)
    assert t.lookup(PEER, 1000, A, 53) == [1]
    assert t.lookup(PEER6, 1000, G6, 53) == [2]
    t.bind(3, 0, 54, fam=DUAL)
    assert t.lookup(PEER, 1000, A, 54) == [3]                  # IPv4 to a dual-stack socket
    assert t.lookup(PEER6, 1000, G6, 54) == [3]
    t.bind(4, G6, 55, fam=DUAL)
    assert t.lookup(PEER, 1000, A, 55) == []                   # bound to an IPv6 address: IPv6 only
    t.connect(3, G6, PEER6, 7)
    assert t.lookup(PEER6, 7, G6, 54) == [3] and t.lookup(PEER6, 8, G6, 54) == []
    assert t.lookup(PEER, 7, A, 54) == []                      # connected over IPv6 now
    assert t.find_sender(G6, 54, PEER6, 7).sock == 3


def test_a_reuseport_group_of_ipv6_sockets_splits_flows_the_same_way_each_time():
    t = table6()
    for sock in (1, 2, 3):
        assert t.bind(sock, 0, 53, reuseport=True, fam=V6)[0] == 0
    peers = [bytes.fromhex("fd66" + "00" * 12 + f"{i:04x}") for i in range(1, 40)]
    first = [t.lookup(p, 1000, G6, 53) for p in peers]
    assert {s for [s] in first} == {1, 2, 3}
    assert [t.lookup(p, 1000, G6, 53) for p in peers] == first
