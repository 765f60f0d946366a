"""Read views of the ledger state, as the HTTP API serves them (plain JSON-ready values).

Field names follow Koii's ``TaskState`` (koii-reference §2.1). ``task_view`` implements Koii's
partial fetch: the four ``TaskStateOptions`` flags default to false, and a false flag returns the
maps it gates as ``{}``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import InvalidRequestError, NotFoundError
from ..ledger import (
    LedgerState,
    TaskId,
    TaskState,
    audit_assignments,
    audit_window,
    default_distribution_for,
    distribution_audit_window,
    distribution_window,
    round_of,
    selected_submitter,
    submission_window,
    to_plain,
)
from ..ledger.codec import is_address

TASK_FLAGS: dict[str, tuple[str, ...]] = {
    "is_submission_required": ("submissions", "submissions_audit_trigger", "round_beacons"),
    "is_distribution_required": (
        "distribution_rewards_submission",
        "distributions_audit_trigger",
        "distributions_audit_record",
        "distribution_lists",
    ),
    "is_available_balances_required": ("available_balances",),
    "is_stake_list_required": ("stake_list", "last_submission_round"),
}
"""Koii's partial-fetch flags and the ``TaskState`` maps each one gates."""


def get_task(state: LedgerState, task_id: str) -> TaskState:
    """The task ``task_id`` or ``NotFoundError`` (404)."""
    task = state.tasks.get(TaskId(task_id))
    if task is None:
        raise NotFoundError(f"no task has id {task_id!r}; GET /tasks lists them", task_id=task_id)
    return task


def task_summary(task: TaskState, slot: int) -> dict[str, Any]:
    """The short form of a task for ``GET /tasks``."""
    return {
        "task_id": task.task_id,
        "task_name": task.task_name,
        "task_manager": task.task_manager,
        "is_active": task.is_active,
        "is_migrated": task.is_migrated,
        "migrated_to": task.migrated_to,
        "total_bounty_amount": task.total_bounty_amount,
        "bounty_amount_per_round": task.bounty_amount_per_round,
        "total_stake_amount": task.total_stake_amount,
        "minimum_stake_amount": task.minimum_stake_amount,
        "round_time": task.round_time,
        "starting_slot": task.starting_slot,
        "current_round": round_of(task, slot),
        "stakers": len(task.stake_list),
    }


def task_view(task: TaskState, slot: int, flags: dict[str, bool]) -> dict[str, Any]:
    """A task with Koii's field names; maps gated by a false flag come back as ``{}``."""
    skipped = {name for flag, names in TASK_FLAGS.items() if not flags.get(flag, False) for name in names}
    view: dict[str, Any] = {}
    for field in dataclasses.fields(task):
        view[field.name] = {} if field.name in skipped else to_plain(getattr(task, field.name))
    view["current_round"] = round_of(task, slot)
    return view


def _window(window: range) -> dict[str, int]:
    return {"first_slot": window.start, "last_slot": window.stop - 1}


def round_view(task: TaskState, round_number: int, slot: int) -> dict[str, Any]:
    """Everything about one round of a task: proofs, audits, assignments, lists and payout."""
    if round_number < 0:
        raise InvalidRequestError(f"round must be 0 or more, got {round_number}", round=round_number)
    closed = slot >= submission_window(task, round_number).stop
    attempts = range(task.allowed_failed_distributions + 1)
    record = task.distributions_audit_record.get(round_number)  # type: ignore[call-overload]
    submissions = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    return {
        "task_id": task.task_id,
        "round": round_number,
        "slot": slot,
        "windows": {
            "round": _window(
                range(
                    task.starting_slot + round_number * task.round_time,
                    task.starting_slot + (round_number + 1) * task.round_time,
                )
            ),
            "submission": _window(submission_window(task, round_number)),
            "audit": _window(audit_window(task, round_number)),
            "distribution": [_window(distribution_window(task, round_number, k)) for k in attempts],
            "distribution_audit": [
                _window(distribution_audit_window(task, round_number, k)) for k in attempts
            ],
        },
        "submissions": to_plain(submissions),
        "submissions_audit_trigger": to_plain(
            task.submissions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
        ),
        "assignments_final": closed,
        "assignments": to_plain(audit_assignments(task, round_number)) if closed and submissions else {},
        "selected_distribution_submitters": (
            [selected_submitter(None, task, round_number, k) for k in attempts]
            if closed and submissions
            else []
        ),
        "default_distribution": to_plain(default_distribution_for(task, round_number))
        if submissions
        else None,
        "distribution_rewards_submission": to_plain(
            task.distribution_rewards_submission.get(round_number, {})  # type: ignore[call-overload]
        ),
        "distributions_audit_trigger": to_plain(
            task.distributions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
        ),
        "distribution_lists": to_plain(task.distribution_lists.get(round_number, {})),  # type: ignore[call-overload]
        "payout_record": record,
    }


def account_view(state: LedgerState, pubkey: str) -> dict[str, Any]:
    """A wallet's balance and, per task, its stake and available (claimable) balance."""
    if not is_address(pubkey):
        raise InvalidRequestError(f"{pubkey!r} is not a base58 public key (32-44 characters)", pubkey=pubkey)
    tasks = {}
    for task_id, task in state.tasks.items():
        stake = task.stake_list.get(pubkey)  # type: ignore[call-overload]
        available = task.available_balances.get(pubkey)  # type: ignore[call-overload]
        if stake is not None or available is not None:
            tasks[task_id] = {"stake": stake or 0, "available_balance": available or 0}
    return {"pubkey": pubkey, "balance": state.balances.get(pubkey, 0), "tasks": tasks}  # type: ignore[call-overload]
