"""The beacon a read computed, reused when the first vote stores it; the ring's hash order."""

from __future__ import annotations

import hashlib

from pykoii.ledger import beacon_of, round_beacon
from pykoii.ledger.audits import revealed, ring_for

from .helpers import World


def test_ring_order_is_sha256_of_beacon_colon_key():
    keys = [f"node-{i}-é" for i in range(300)]
    beacon = "ab" * 32
    expected = sorted(keys, key=lambda key: hashlib.sha256(f"{beacon}:{key}".encode()).digest())
    ring = ring_for(beacon, reversed(keys), 3)
    assert list(ring.order) == expected
    assert all(ring.position[key] == i for i, key in enumerate(expected))


def test_the_state_stores_the_beacon_a_read_computed_and_it_is_the_beacon_of_the_reveals():
    world = World(node_count=6)
    world.submit_all(0)
    read = round_beacon(None, world.task, 0)
    stored = round_beacon(world.state, world.task, 0)
    assert read == stored == beacon_of(world.task_id, 0, revealed(world.task.submissions[0]))
    assert world.task.round_beacons == {0: stored}


def test_a_read_before_the_last_reveal_is_not_reused_once_more_reveals_are_in():
    world = World(node_count=6)
    world.submit_all(0, reveal=False)
    world.reveal_all(0, world.nodes[:4])
    early = round_beacon(None, world.task, 0)
    world.reveal_all(0, world.nodes[4:])
    stored = round_beacon(world.state, world.task, 0)
    assert stored != early
    assert stored == beacon_of(world.task_id, 0, revealed(world.task.submissions[0]))
    assert len(revealed(world.task.submissions[0])) == 6
