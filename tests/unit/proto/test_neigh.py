from shared.proto.neigh import NeighTable, NudState, Overflow, Solicit, Unresolved

IP = bytes([10, 0, 0, 1])
MAC = b"\x02\0\0\0\0\x01"


def table(**kw):
    return NeighTable(reachable_time=30, retrans_time=1, mcast_solicit=3, unres_qlen=3, gc_stale_time=60, **kw)


def test_first_use_queues_and_solicits_then_reply_releases_queue():
    t = table()
    mac, acts = t.resolve(2, IP, "p1", now=0)
    assert mac is None and acts == [Solicit(2, IP, None)]
    mac, acts = t.resolve(2, IP, "p2", now=0.1)
    assert mac is None and acts == []           # one solicitation in flight is enough
    assert t.update(2, IP, MAC, now=0.2, create=False) == ["p1", "p2"]
    assert t.resolve(2, IP, "p3", now=0.3) == (MAC, [])


def test_unanswered_solicitations_are_retried_then_fail_with_queued_items():
    t = table()
    t.resolve(2, IP, "p", now=0)
    assert t.poll_at() == 1
    assert t.poll(0.5) == []
    assert t.poll(1.0) == [Solicit(2, IP, None)]
    assert t.poll(2.0) == [Solicit(2, IP, None)]
    assert t.poll(3.0) == [Unresolved(2, IP, ["p"])]
    assert t.entries == {}


def test_pending_queue_is_bounded():
    t = table()
    for i in range(3):
        t.resolve(2, IP, i, now=0)
    assert t.resolve(2, IP, 3, now=0) == (None, [Overflow(0)])   # oldest pushed out


def test_unsolicited_arp_creates_entry_only_when_we_are_the_target():
    t = table()
    assert t.update(2, IP, MAC, now=0, create=False) == []
    assert t.entries == {}
    t.update(2, IP, MAC, now=0, create=True)
    assert t.entries[(2, IP)].state is NudState.REACHABLE


def test_stale_entry_is_used_and_reconfirmed_by_unicast_probe():
    t = table()
    t.update(2, IP, MAC, now=0, create=True)
    mac, acts = t.resolve(2, IP, "p", now=31)
    assert mac == MAC and acts == [Solicit(2, IP, MAC)]
    assert t.entries[(2, IP)].state is NudState.PROBE
    t.update(2, IP, MAC, now=31.5, create=False)
    assert t.entries[(2, IP)].state is NudState.REACHABLE


def test_failed_probe_forgets_the_entry_and_unused_stale_entries_are_collected():
    t = table()
    t.update(2, IP, MAC, now=0, create=True)
    t.resolve(2, IP, "p", now=31)
    for now in (32, 33, 34):
        t.poll(now)
    assert (2, IP) not in t.entries
    t.update(2, IP, MAC, now=100, create=True)
    t.poll(131)                                 # reachable -> stale
    assert t.entries[(2, IP)].state is NudState.STALE
    t.poll(161)
    assert (2, IP) not in t.entries


def test_flush_returns_queued_items():
    t = table()
    t.resolve(2, IP, "a", now=0)
    t.resolve(3, IP, "b", now=0)
    assert t.flush(2) == ["a"]
    assert list(t.entries) == [(3, IP)]
