"""Journaled writes: snapshot, commit, rollback, and copies."""

from __future__ import annotations

import pytest

from pykoii.ledger import copy_state, state_root
from pykoii.ledger.state import LedgerState, add, assign, commit, put, remove, rollback, round_map, snapshot

from .helpers import World


def test_rollback_undoes_every_kind_of_write_in_reverse():
    state = LedgerState(balances={"a": 5, "b": 1})
    before = state_root(state)
    snapshot(state)
    put(state, state.balances, "c", 3)
    put(state, state.balances, "a", 7)
    remove(state, state.balances, "b")
    remove(state, state.balances, "missing")
    add(state, state.balances, "a", -7)  # reaching 0 drops the entry
    assign(state, state, "total_supply", 99)
    round_map(state, state.recent_transactions, 4)["x"] = 1
    assert "a" not in state.balances and state.total_supply == 99
    rollback(state)
    assert state.balances == {"a": 5, "b": 1} and state.total_supply == 0 and state.recent_transactions == {}
    assert state.journal is None and state_root(state) == before


def test_commit_keeps_writes_and_closes_the_journal():
    state = LedgerState()
    snapshot(state)
    add(state, state.balances, "a", 4)
    commit(state)
    assert state.balances == {"a": 4} and state.journal is None
    add(state, state.balances, "a", 1)  # without a snapshot, writes are simply made
    assert state.balances == {"a": 5}


def test_copy_state_is_deep_and_refused_inside_a_snapshot():
    world = World(node_count=2)
    copy = copy_state(world.state)
    assert state_root(copy) == state_root(world.state)
    copy.tasks[world.task_id].stake_list.clear()
    assert world.task.stake_list
    snapshot(world.state)
    with pytest.raises(ValueError, match="inside an open snapshot"):
        copy_state(world.state)
    rollback(world.state)
