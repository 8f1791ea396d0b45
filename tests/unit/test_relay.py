"""The relay floors (tests/bench/relay.py) run laps and leave no process behind."""
import multiprocessing as mp

import pytest

from tests.bench import relay


@pytest.mark.parametrize("ring", [relay.ring, relay.eventfd_ring])
def test_a_ring_laps_and_stops(ring):
    r = ring(3, 0.2)
    assert r["hops"] == 3 and r["laps"] > 10 and 0 < r["median_us"] <= r["p99_us"]
    assert not [p for p in mp.active_children() if p.is_alive()]
