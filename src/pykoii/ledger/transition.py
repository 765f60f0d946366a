"""The only entry point: ``apply_transaction(state, tx, slot) -> Receipt``.

Given the same state, transaction and slot, it always makes the same change and returns the same
receipt: no clock, no randomness, no I/O. A transaction that is refused raises a subclass of
``InvalidTransactionError`` and leaves the state exactly as it was.

Before any instruction runs, two rules common to all transactions apply:

1. ``recent_slot`` must lie in ``[slot - REPLAY_HORIZON_SLOTS, slot]``;
2. a transaction with the same id must not have been accepted before (replay). Ids are remembered
   under their ``recent_slot`` and forgotten once rule 1 would refuse them anyway.

The signature is checked before this function is called (``pykoii.keys.verify_envelope``), by the
service on arrival and again by anyone replaying the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DuplicateTransactionError, StaleTransactionError
from .accounts import airdrop, transfer
from .audits import audit_submission, reveal
from .distribution import audit_distribution, payout, submit_distribution, upload_distribution_chunk
from .events import Event, Receipt
from .staking import claim_reward, stake, withdraw
from .state import LedgerState, commit, put, remove, rollback, round_map, snapshot
from .submissions import submit
from .tasks import create_task, fund_task, set_active, update_task
from .transactions import (
    Airdrop,
    AuditDistribution,
    AuditSubmission,
    ClaimReward,
    CreateTask,
    FundTask,
    Payout,
    Reveal,
    SetActive,
    Stake,
    Submit,
    SubmitDistribution,
    Transaction,
    Transfer,
    UpdateTask,
    UploadDistributionChunk,
    Withdraw,
)
from .types import REPLAY_HORIZON_SLOTS, Slot

Handler = Callable[[LedgerState, Any, int], list[Event]]

HANDLERS: dict[type[Transaction], Handler] = {
    Airdrop: airdrop,
    Transfer: transfer,
    CreateTask: create_task,
    UpdateTask: update_task,
    SetActive: set_active,
    FundTask: fund_task,
    Stake: stake,
    Withdraw: withdraw,
    Submit: submit,
    Reveal: reveal,
    AuditSubmission: audit_submission,
    SubmitDistribution: submit_distribution,
    UploadDistributionChunk: upload_distribution_chunk,
    AuditDistribution: audit_distribution,
    Payout: payout,
    ClaimReward: claim_reward,
}
"""Instruction class → the function that applies it."""


def check_recency(state: LedgerState, tx: Transaction, slot: int) -> None:
    """Refuse a stale, future-dated or already accepted transaction."""
    oldest = slot - REPLAY_HORIZON_SLOTS
    if not oldest <= tx.recent_slot <= slot:
        raise StaleTransactionError(
            f"recent_slot is {tx.recent_slot} at slot {slot}; accepted: {max(oldest, 0)} to {slot} "
            f"(the last {REPLAY_HORIZON_SLOTS} slots); fetch GET /slot and sign again",
            recent_slot=tx.recent_slot,
            slot=slot,
        )
    seen = state.recent_transactions.get(tx.recent_slot)
    if seen is not None and tx.tx_id in seen:
        raise DuplicateTransactionError(
            f"transaction {tx.tx_id} was already accepted at slot {seen[tx.tx_id]}", tx_id=tx.tx_id
        )


def _remember(state: LedgerState, tx: Transaction, slot: int) -> None:
    buckets = state.recent_transactions
    put(state, round_map(state, buckets, tx.recent_slot), tx.tx_id, slot)
    oldest = slot - REPLAY_HORIZON_SLOTS
    # Every bucket older than the horizon goes, whatever the dict's order: a state loaded from its
    # canonical (sorted-key) form holds its buckets in another order than the ledger that wrote it,
    # and both must reach the same state root.
    if min(buckets) < oldest:
        for bucket in [bucket for bucket in buckets if bucket < oldest]:
            remove(state, buckets, bucket)


def apply_transaction(state: LedgerState, tx: Transaction, slot: int) -> Receipt:
    """Apply one verified transaction at ``slot``; return its receipt or raise, changing nothing."""
    check_recency(state, tx, slot)
    handler = HANDLERS[type(tx)]
    snapshot(state)
    try:
        events = handler(state, tx, slot)
        _remember(state, tx, slot)
    except BaseException:
        rollback(state)
        raise
    commit(state)
    return Receipt(tx_id=tx.tx_id, slot=Slot(slot), events=tuple(events))
