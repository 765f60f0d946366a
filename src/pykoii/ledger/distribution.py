"""Distribution lists: the default rule, who submits a round's list, its audit, and payout.

**Who submits.** The candidates for round r are its submitters whose proofs stood their audit, in the
round's beacon order (all submitters if none stood). Attempt ``k`` (0 first) belongs to the
``k``-th candidate and runs in round ``r + 2 + k``: the list in the submission window, its audit in
the audit window. If no list of an attempt passes its audit, the next attempt gets the next round,
up to ``allowed_failed_distributions`` re-submissions; then the round is marked ``PayoutFailed``.
This replaces Koii's ASCII-sum lottery, whose retry branch can select nobody (koii-reference §4.7).

**What a list may hold.** Rewards and slashes only for keys that submitted in round r, as
non-negative integers; rewards summing to at most ``bounty_amount_per_round`` and at most the
task's remaining bounty; each slash at most that key's stake. Which amounts are *right* is the
task's rule, checked by the nodes that audit the list, not by the ledger.

**Payout.** Anyone may send it once the audit window of an attempt has closed. It pays the first
attempt whose list stood its audit: slashes are taken from stakes into the bounty pot, then rewards
go from the pot to ``available_balances``. A round is settled once (paid or failed); old settled
rounds are pruned from the state, as Koii keeps only a few rounds of submission data on chain.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import (
    AlreadyPaidError,
    DuplicateSubmissionError,
    InvalidDistributionListError,
    NotAssignedAuditorError,
    NotSelectedSubmitterError,
    PayoutNotReadyError,
    UnknownSubmissionError,
)
from .accounts import get_task, koii
from .audits import audit_ring, cast_vote, is_judged_valid, submission_is_valid
from .codec import canonical_bytes, sha256_hex, to_plain
from .events import DistributionSubmitted, Event, Rewarded, RoundFailed, RoundPaid, Slashed
from .rounds import describe, distribution_attempt, distribution_audit_window, distribution_window
from .state import (
    PAYOUT_FAILED,
    PAYOUT_SUCCESSFUL,
    DistributionList,
    LedgerState,
    Submission,
    TaskState,
    add,
    assign,
    put,
    remove,
    round_map,
)
from .submissions import require_in_window
from .transactions import AuditDistribution, Payout, SubmitDistribution
from .types import SLASH_PERCENT, Address, Roe, RoundNumber, Slot

ROUNDS_KEPT = 3
"""Settled rounds older than ``round - ROUNDS_KEPT - allowed_failed_distributions`` are pruned."""


def default_distribution(
    submitters: Mapping[Address, bool], stakes: Mapping[Address, int], bounty: int
) -> DistributionList:
    """The seed's rule: slash 70 % of each invalid submitter's stake (rounded down) and split
    ``bounty`` equally, rounded down, among the valid submitters.

    ``submitters`` maps each submitter to whether its proof stood its audit; ``bounty`` is what the
    round may pay (``bounty_amount_per_round``, or less when the pot holds less).
    """
    valid = [key for key, ok in submitters.items() if ok]
    share = bounty // len(valid) if valid else 0
    rewards = {key: Roe(share) for key in valid}
    slashes = {
        key: Roe(stakes.get(key, 0) * SLASH_PERCENT // 100) for key, ok in submitters.items() if not ok
    }
    return DistributionList(rewards=rewards, slashes=slashes)


def round_bounty(task: TaskState) -> int:
    """What one round may pay: ``bounty_amount_per_round``, or the whole pot when it holds less."""
    return min(task.bounty_amount_per_round, task.total_bounty_amount)


def judged_submitters(task: TaskState, round_number: int) -> dict[Address, bool]:
    """``{submitter: stood its audit}`` for a round, in submission order."""
    submissions = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    return {key: submission_is_valid(task, round_number, key) for key in submissions}


def default_distribution_for(task: TaskState, round_number: int) -> DistributionList:
    """The default list for a round, from the task's public state."""
    return default_distribution(judged_submitters(task, round_number), task.stake_list, round_bounty(task))


def distribution_candidates(state: LedgerState | None, task: TaskState, round_number: int) -> list[Address]:
    """The nodes that may submit a round's list, in the order attempts go to them."""
    ring = audit_ring(state, task, round_number)
    valid = [key for key in ring.order if submission_is_valid(task, round_number, key)]
    return valid or list(ring.order)


def selected_submitter(
    state: LedgerState | None, task: TaskState, round_number: int, attempt: int
) -> Address | None:
    """The node selected for distribution ``attempt`` of a round, or ``None`` if nobody is left."""
    if not 0 <= attempt <= task.allowed_failed_distributions:
        return None
    candidates = distribution_candidates(state, task, round_number)
    return candidates[attempt] if attempt < len(candidates) else None


def list_digest(rewards: Mapping[Address, int], slashes: Mapping[Address, int]) -> str:
    """The hex SHA-256 of a list's canonical JSON, recorded as its ``submission_value``."""
    return sha256_hex(canonical_bytes({"rewards": dict(rewards), "slashes": dict(slashes)}))


def _require_unsettled(task: TaskState, round_number: int) -> None:
    record = task.distributions_audit_record.get(round_number)  # type: ignore[call-overload]
    if record is not None:
        raise AlreadyPaidError(
            f"round {round_number} of task {task.task_id} was already settled: {record}",
            round=round_number,
            record=record,
        )


def _passed_list(task: TaskState, round_number: int, submitter: Address | None) -> DistributionList | None:
    if submitter is None:
        return None
    found = task.distribution_lists.get(round_number, {}).get(submitter)  # type: ignore[call-overload]
    triggers = task.distributions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
    return found if found is not None and is_judged_valid(triggers.get(submitter)) else None


def validate_list(
    task: TaskState, round_number: int, rewards: Mapping[Address, int], slashes: Mapping[Address, int]
) -> None:
    """Refuse a list that pays or slashes what it may not (see the module docstring)."""
    submitters = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    for name, entries in (("rewards", rewards), ("slashes", slashes)):
        for key, amount in entries.items():
            if key not in submitters:
                raise InvalidDistributionListError(
                    f"{name} names {key}, which did not submit in round {round_number}; only that round's "
                    "submitters may be paid or slashed",
                    key=key,
                )
            if amount < 0:
                raise InvalidDistributionListError(
                    f"{name}[{key}] is {amount}; amounts are non-negative integers of ROE", key=key
                )
    total = sum(rewards.values())
    limit = round_bounty(task)
    if total > limit:
        raise InvalidDistributionListError(
            f"rewards sum to {koii(total)}; round {round_number} may pay at most {koii(limit)} "
            f"(bounty_amount_per_round {koii(task.bounty_amount_per_round)}, remaining bounty "
            f"{koii(task.total_bounty_amount)})",
            total=total,
            limit=limit,
        )
    for key, amount in slashes.items():
        stake = task.stake_list.get(key, 0)
        if amount > stake:
            raise InvalidDistributionListError(
                f"slashes[{key}] is {koii(amount)} but its stake is {koii(stake)}; "
                "a slash is at most the stake",
                key=key,
            )


def submit_distribution(state: LedgerState, tx: SubmitDistribution, slot: int) -> list[Event]:
    """Record the selected node's list for a round, in the window of the current attempt."""
    task = get_task(state, tx.task_id)
    _require_unsettled(task, tx.round)
    attempt = distribution_attempt(task, tx.round, slot)
    clamped = min(max(attempt, 0), task.allowed_failed_distributions)
    require_in_window("distribution list", tx.round, slot, distribution_window(task, tx.round, clamped))
    if not task.submissions.get(tx.round):
        raise UnknownSubmissionError(
            f"round {tx.round} of task {task.task_id} has no submissions, so it has no distribution",
            round=tx.round,
        )
    for earlier in range(attempt):
        if _passed_list(task, tx.round, selected_submitter(state, task, tx.round, earlier)) is not None:
            raise DuplicateSubmissionError(
                f"the list of attempt {earlier} for round {tx.round} stood its audit; send payout instead",
                round=tx.round,
            )
    selected = selected_submitter(state, task, tx.round, attempt)
    if tx.signer != selected:
        raise NotSelectedSubmitterError(
            f"attempt {attempt} of round {tx.round}'s distribution belongs to {selected or 'nobody'}, "
            f"not {tx.signer}",
            selected=selected,
        )
    if tx.signer in task.distribution_rewards_submission.get(tx.round, {}):
        raise DuplicateSubmissionError(
            f"{tx.signer} already submitted a distribution list for round {tx.round}", round=tx.round
        )
    validate_list(task, tx.round, tx.rewards, tx.slashes)
    digest = list_digest(tx.rewards, tx.slashes)
    put(
        state,
        round_map(state, task.distribution_rewards_submission, tx.round),
        tx.signer,
        Submission(digest, Slot(slot), tx.round),
    )
    put(
        state,
        round_map(state, task.distribution_lists, tx.round),
        tx.signer,
        DistributionList(rewards=dict(tx.rewards), slashes=dict(tx.slashes)),
    )
    return [
        DistributionSubmitted(
            task_id=task.task_id,
            round=tx.round,
            submitter=tx.signer,
            attempt=attempt,
            reward_total=Roe(sum(tx.rewards.values())),
            slash_total=Roe(sum(tx.slashes.values())),
        )
    ]


def audit_distribution(state: LedgerState, tx: AuditDistribution, slot: int) -> list[Event]:
    """A vote on a round's list, from another submitter of that round, in the list's audit window."""
    task = get_task(state, tx.task_id)
    submitted = task.distribution_rewards_submission.get(tx.round, {}).get(tx.candidate)
    if submitted is None:
        raise UnknownSubmissionError(
            f"{tx.candidate} submitted no distribution list for round {tx.round} of task {task.task_id}",
            candidate=tx.candidate,
        )
    attempt = distribution_attempt(task, tx.round, submitted.slot)
    require_in_window(
        "distribution audit", tx.round, slot, distribution_audit_window(task, tx.round, attempt)
    )
    if tx.signer == tx.candidate or tx.signer not in task.submissions.get(tx.round, {}):
        raise NotAssignedAuditorError(
            f"{tx.signer} may not audit round {tx.round}'s distribution list: only the round's other "
            "submitters audit it",
            voter=tx.signer,
        )
    return cast_vote(
        state,
        task,
        task.distributions_audit_trigger,
        "distribution",
        tx.round,
        tx.candidate,
        tx.signer,
        tx.is_valid,
        slot,
    )


def payout(state: LedgerState, tx: Payout, slot: int) -> list[Event]:
    """Settle a round: pay the first list that stood its audit, or mark the round failed."""
    task = get_task(state, tx.task_id)
    _require_unsettled(task, tx.round)
    if not task.submissions.get(tx.round):
        raise PayoutNotReadyError(
            f"round {tx.round} of task {task.task_id} has no submissions, so there is nothing to pay",
            round=tx.round,
        )
    for attempt in range(task.allowed_failed_distributions + 1):
        window = distribution_audit_window(task, tx.round, attempt)
        if slot < window.stop:
            raise PayoutNotReadyError(
                f"round {tx.round}'s distribution list (attempt {attempt}) is audited in {describe(window)}; "
                f"payout is accepted from slot {window.stop}, now slot {slot}",
                round=tx.round,
                ready_slot=window.stop,
            )
        submitter = selected_submitter(state, task, tx.round, attempt)
        passed = _passed_list(task, tx.round, submitter)
        if passed is not None and submitter is not None:
            events = _pay(state, task, tx.round, attempt, submitter, passed)
            _prune(state, task, tx.round)
            return events
    return _fail(
        state,
        task,
        tx.round,
        f"no distribution list stood its audit in {task.allowed_failed_distributions + 1} attempts",
    )


def _pay(
    state: LedgerState,
    task: TaskState,
    round_number: RoundNumber,
    attempt: int,
    submitter: Address,
    dist: DistributionList,
) -> list[Event]:
    slashed = {key: min(amount, task.stake_list.get(key, 0)) for key, amount in dist.slashes.items()}
    slash_total = sum(slashed.values())
    reward_total = sum(dist.rewards.values())
    pot = task.total_bounty_amount + slash_total
    if reward_total > pot:
        return _fail(
            state, task, round_number, f"the list pays {koii(reward_total)} but the pot holds {koii(pot)}"
        )
    events: list[Event] = []
    for key, amount in slashed.items():
        if amount:
            add(state, task.stake_list, key, -amount)
            events.append(Slashed(task_id=task.task_id, round=round_number, staker=key, amount=Roe(amount)))
    for key, amount in dist.rewards.items():
        if amount:
            add(state, task.available_balances, key, amount)
            events.append(Rewarded(task_id=task.task_id, round=round_number, staker=key, amount=Roe(amount)))
    assign(state, task, "total_stake_amount", Roe(task.total_stake_amount - slash_total))
    assign(state, task, "total_bounty_amount", Roe(pot - reward_total))
    put(state, task.distributions_audit_record, round_number, PAYOUT_SUCCESSFUL)
    events.append(
        RoundPaid(
            task_id=task.task_id,
            round=round_number,
            attempt=attempt,
            distribution_submitter=submitter,
            reward_total=Roe(reward_total),
            slash_total=Roe(slash_total),
        )
    )
    return events


def _fail(state: LedgerState, task: TaskState, round_number: RoundNumber, reason: str) -> list[Event]:
    put(state, task.distributions_audit_record, round_number, PAYOUT_FAILED)
    _prune(state, task, round_number)
    return [RoundFailed(task_id=task.task_id, round=round_number, reason=reason)]


def _prune(state: LedgerState, task: TaskState, settled_round: int) -> None:
    """Drop the round data of settled rounds well behind ``settled_round``."""
    cutoff = settled_round - ROUNDS_KEPT - task.allowed_failed_distributions
    per_round_maps = (
        task.submissions,
        task.submissions_audit_trigger,
        task.distribution_rewards_submission,
        task.distributions_audit_trigger,
        task.distribution_lists,
        task.round_beacons,
    )
    old_rounds = [r for r in task.submissions if r < cutoff and r in task.distributions_audit_record]
    for round_number in old_rounds:
        for rounds in per_round_maps:
            remove(state, rounds, round_number)


def list_to_plain(dist: DistributionList) -> dict[str, dict[str, int]]:
    """A list as JSON."""
    plain: dict[str, dict[str, int]] = to_plain(dist)
    return plain
