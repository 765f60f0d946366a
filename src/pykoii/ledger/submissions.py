"""Accepting one node's proof for a round.

A proof for round r is accepted only in round r's submission window (the first
``submission_window`` slots of round r+1), once per node, from a node whose stake is at least the
task's minimum, and only while the task is active.
"""

from __future__ import annotations

from ..errors import (
    DuplicateSubmissionError,
    InsufficientStakeError,
    NotStakedError,
    SubmissionTooLargeError,
    WrongPhaseError,
)
from .accounts import get_task, koii
from .events import Event, Submitted
from .rounds import describe, submission_window
from .staking import require_runnable
from .state import LedgerState, Submission, TaskState, put, round_map
from .transactions import Submit
from .types import MAX_SUBMISSION_BYTES, Slot


def require_in_window(what: str, round_number: int, slot: int, window: range) -> None:
    """Refuse ``what`` for ``round_number`` when ``slot`` is outside ``window``."""
    if slot not in window:
        raise WrongPhaseError(
            f"{what} for round {round_number} arrived at slot {slot}; round {round_number} accepts "
            f"{what}s in {describe(window)}",
            round=round_number,
            slot=slot,
            window_start=window.start,
            window_end=window.stop - 1,
        )


def require_stake(task: TaskState, staker: str) -> None:
    """Refuse a node whose stake on ``task`` is missing or below the minimum."""
    amount = task.stake_list.get(staker, 0)  # type: ignore[call-overload]
    if amount <= 0:
        raise NotStakedError(f"{staker} has no stake on task {task.task_id}; stake first", staker=staker)
    if amount < task.minimum_stake_amount:
        raise InsufficientStakeError(
            f"{staker} has {koii(amount)} staked, below the minimum_stake_amount of "
            f"{koii(task.minimum_stake_amount)}; stake more",
            stake=amount,
            minimum=task.minimum_stake_amount,
        )


def submit(state: LedgerState, tx: Submit, slot: int) -> list[Event]:
    """Record ``tx.signer``'s proof for ``tx.round``."""
    task = get_task(state, tx.task_id)
    require_runnable(task)
    size = len(tx.submission_value.encode())
    if size > MAX_SUBMISSION_BYTES:
        raise SubmissionTooLargeError(
            f"submission_value is {size} bytes; at most {MAX_SUBMISSION_BYTES} bytes of UTF-8 are accepted",
            size=size,
        )
    require_in_window("submission", tx.round, slot, submission_window(task, tx.round))
    require_stake(task, tx.signer)
    per_round = round_map(state, task.submissions, tx.round)
    previous = per_round.get(tx.signer)
    if previous is not None:
        raise DuplicateSubmissionError(
            f"{tx.signer} already submitted for round {tx.round} at slot {previous.slot}; "
            "one submission per node per round",
            round=tx.round,
        )
    put(state, per_round, tx.signer, Submission(tx.submission_value, Slot(slot), tx.round, tx.commitment))
    if task.last_submission_round.get(tx.signer, -1) < tx.round:
        put(state, task.last_submission_round, tx.signer, tx.round)
    return [Submitted(task_id=task.task_id, round=tx.round, submitter=tx.signer)]
