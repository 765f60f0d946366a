"""The entry point: recency, replay protection, all-or-nothing, receipts and pruning of tx ids."""

from __future__ import annotations

import json

from pykoii.errors import DuplicateTransactionError, InsufficientFundsError, StaleTransactionError
from pykoii.ledger import LedgerState, apply_transaction, from_plain, receipt_to_plain, state_root, to_plain
from pykoii.ledger.transactions import INSTRUCTIONS
from pykoii.ledger.transition import HANDLERS
from pykoii.ledger.types import REPLAY_HORIZON_SLOTS

from .helpers import KOII, address, apply, assert_rejected, devnet, make_tx

ALICE, BOB = address("alice"), address("bob")


def funded() -> LedgerState:
    state = devnet()
    apply(state, "airdrop", ALICE, 0, to=ALICE, amount=10 * KOII)
    return state


def test_every_instruction_has_a_handler():
    assert set(HANDLERS) == set(INSTRUCTIONS.values())


def test_receipt_carries_tx_id_slot_and_events():
    state = funded()
    tx = make_tx("transfer", ALICE, 5, to=BOB, amount=3)
    receipt = apply_transaction(state, tx, 5)
    assert receipt_to_plain(receipt) == {
        "tx_id": tx.tx_id,
        "slot": 5,
        "events": [{"kind": "Transferred", "source": ALICE, "to": BOB, "amount": 3}],
    }


def test_recent_slot_too_old_is_stale():
    state = funded()
    slot = 400
    assert_rejected(
        state,
        StaleTransactionError,
        "transfer",
        ALICE,
        slot,
        ("recent_slot is 249 at slot 400", f"accepted: 250 to 400 (the last {REPLAY_HORIZON_SLOTS} slots)"),
        to=BOB,
        amount=1,
        recent_slot=slot - REPLAY_HORIZON_SLOTS - 1,
    )
    apply(state, "transfer", ALICE, slot, to=BOB, amount=1, recent_slot=slot - REPLAY_HORIZON_SLOTS)


def test_recent_slot_in_the_future_is_stale():
    assert_rejected(
        funded(),
        StaleTransactionError,
        "transfer",
        ALICE,
        10,
        ("recent_slot is 11 at slot 10", "accepted: 0 to 10"),
        to=BOB,
        amount=1,
        recent_slot=11,
    )


def test_same_transaction_twice_is_a_replay():
    state = funded()
    tx = make_tx("transfer", ALICE, 5, to=BOB, amount=3)
    apply_transaction(state, tx, 5)
    before = state_root(state)
    try:
        apply_transaction(state, tx, 9)
    except DuplicateTransactionError as exc:
        assert f"transaction {tx.tx_id} was already accepted at slot 5" in str(exc)
    else:
        raise AssertionError("replay accepted")
    assert state_root(state) == before


def test_refused_transaction_is_not_remembered():
    state = funded()
    tx = make_tx("transfer", ALICE, 5, to=BOB, amount=100 * KOII)
    before = state_root(state)
    for _ in range(2):
        try:
            apply_transaction(state, tx, 5)
        except InsufficientFundsError:
            pass
    assert state_root(state) == before


def test_transaction_ids_are_forgotten_past_the_horizon():
    state = funded()
    apply(state, "transfer", ALICE, 10, to=BOB, amount=1)
    assert 10 in state.recent_transactions
    apply(state, "transfer", ALICE, 10 + REPLAY_HORIZON_SLOTS, to=BOB, amount=1)
    assert 10 in state.recent_transactions  # still inside the horizon
    apply(state, "transfer", ALICE, 11 + REPLAY_HORIZON_SLOTS, to=BOB, amount=1)
    assert 10 not in state.recent_transactions


def test_pruning_does_not_depend_on_dict_order():
    """Regression: pruning stopped at the first unexpired bucket, so a state loaded from its sorted
    (canonical) form kept expired buckets that the ledger which wrote it had dropped."""
    state = funded()
    apply(state, "transfer", ALICE, 60, to=BOB, amount=1)
    apply(state, "transfer", ALICE, 100, to=BOB, amount=1)
    loaded = from_plain(LedgerState, json.loads(json.dumps(to_plain(state), sort_keys=True)))
    assert list(loaded.recent_transactions) != list(state.recent_transactions)
    for ledger in (state, loaded):
        apply(ledger, "transfer", ALICE, 220, to=BOB, amount=1)
        assert sorted(ledger.recent_transactions) == [100, 220]
    assert state_root(state) == state_root(loaded)
