"""``put_all`` and ``add_all``: the same writes as ``put`` and ``add`` one key at a time, journaled as
one entry, so a rollback restores every value, every absence and (unless a key was dropped) the order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pykoii.ledger.state import LedgerState, add, add_all, put, put_all, rollback, snapshot

KEYS = st.sampled_from([f"k{i}" for i in range(12)])
BALANCES = st.dictionaries(KEYS, st.integers(min_value=1, max_value=50))
AMOUNTS = st.dictionaries(KEYS, st.integers(min_value=-50, max_value=50))


@given(BALANCES, AMOUNTS)
def test_add_all_makes_the_writes_of_add_and_rolls_back_to_the_same_dict(
    before: dict[str, int], amounts: dict[str, int]
) -> None:
    state = LedgerState()
    one_by_one = dict(before)
    for key, amount in amounts.items():
        if amount:  # add_all skips a zero amount: it adds nothing
            add(state, one_by_one, key, amount)
    together = dict(before)
    snapshot(state)
    add_all(state, together, amounts)
    assert list(together.items()) == list(one_by_one.items())
    assert all(together.values()), "an entry reaching 0 is dropped, as add drops it"
    rollback(state)
    assert together == before
    if all(before.get(key, 0) + amount for key, amount in amounts.items()):
        # nothing was dropped: the order is restored too (a dropped key comes back at the end, as
        # after ``add``'s ``remove``; what a state root covers is in key order, tests/ledger vectors)
        assert list(together.items()) == list(before.items())


@given(BALANCES, BALANCES)
def test_put_all_makes_the_writes_of_put_and_rolls_back_to_the_same_dict(
    before: dict[str, int], items: dict[str, int]
) -> None:
    state = LedgerState()
    one_by_one = dict(before)
    for key, value in items.items():
        put(state, one_by_one, key, value)
    together = dict(before)
    snapshot(state)
    put(state, together, "first", 1)  # entries before and after it are undone in order too
    put_all(state, together, items)
    add(state, together, "first", 1)
    assert {k: v for k, v in together.items() if k != "first"} == one_by_one
    rollback(state)
    assert list(together.items()) == list(before.items())


def test_outside_a_snapshot_nothing_is_journaled() -> None:
    state = LedgerState()
    mapping = {"a": 1}
    put_all(state, mapping, {"b": 2})
    add_all(state, mapping, {"a": -1, "c": 3, "d": 0})
    assert mapping == {"b": 2, "c": 3}
    assert state.journal is None
