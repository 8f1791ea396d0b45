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


def test_hosts_that_never_answer_cannot_pin_more_than_unres_total_packets():
    """60 absent hosts x 101 queued packets would hold 6,060 slab slots; all of them together hold 20."""
    t = table(unres_total=20)
    dropped = []
    for n in range(60):
        for k in range(5):
            _, acts = t.resolve(2, bytes([10, 0, 1, n]), (n, k), now=0)
            dropped += [a.item for a in acts if isinstance(a, Overflow)]
    held = sum(len(e.queue) for e in t.entries.values())
    assert held == t.queued == 20 and len(dropped) == 300 - 20      # each dropped and freed by the caller
    # answers and failures give the room back
    assert len(t.update(2, bytes([10, 0, 1, 0]), MAC, now=0.1, create=False)) == 3
    for now in (1, 2, 3):
        t.poll(now)
    assert t.queued == 0 and t.resolve(2, bytes([10, 0, 2, 1]), "new", now=4)[1] == [Solicit(2, bytes([10, 0, 2, 1]),
                                                                                              None)]


def test_the_table_holds_gc_thresh3_entries_evicting_the_least_recently_used():
    """As Linux's forced GC: entries still resolving go too (with what they queued), so
    hosts that never answer cannot keep a real neighbour from being resolved."""
    from shared.proto.neigh import Evicted
    t = table(gc_thresh3=4)
    for n in range(4):                                           # four that never answer
        t.resolve(2, bytes([10, 0, 1, n]), f"p{n}", now=n)
    _, acts = t.resolve(2, bytes([10, 0, 2, 1]), "q", now=5)     # the oldest goes, its packet dropped
    assert acts[0] == Evicted(bytes([10, 0, 1, 0]), ["p0"]) and len(t.entries) == 4
    assert t.update(2, bytes([10, 0, 2, 1]), MAC, now=5.1, create=False) == ["q"]
    assert t.queued == 3
    t.update(2, bytes([10, 0, 3, 3]), MAC, now=6, create=True)   # a neighbour that asks for us: room made
    assert t.evicted == [Evicted(bytes([10, 0, 1, 1]), ["p1"])] and (2, bytes([10, 0, 3, 3])) in t.entries
    assert len(t.entries) == 4 and t.queued == 2
