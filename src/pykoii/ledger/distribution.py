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

import re
from collections.abc import Mapping
from typing import Any

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
from .audits import audit_ring, cast_vote, is_judged_valid, penalize_losing_votes, submission_is_valid
from .codec import canonical_bytes, to_plain
from .events import (
    DistributionChunkUploaded,
    DistributionSubmitted,
    Event,
    RoundFailed,
    RoundPaid,
)
from .merkle import inclusion_proofs, merkle_root, verify_inclusion
from .rounds import (
    describe,
    distribution_attempt,
    distribution_audit_window,
    distribution_judgement_window,
    distribution_window,
    settle_slot,
)
from .state import (
    PAYOUT_FAILED,
    PAYOUT_SUCCESSFUL,
    DistributionList,
    LedgerState,
    Submission,
    TaskState,
    add,
    add_all,
    assign,
    put,
    put_all,
    remove,
    round_map,
)
from .submissions import require_in_window
from .tasks import newest_version
from .transactions import AuditDistribution, Payout, SubmitDistribution, UploadDistributionChunk
from .types import DISTRIBUTION_CHUNK_KEYS, SLASH_PERCENT, Address, Roe, RoundNumber, Slot

_HEX_HASH = re.compile(r"[0-9a-f]{64}")

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


def distribution_candidates(
    state: LedgerState | None, task: TaskState, round_number: int, count: int | None = None
) -> list[Address]:
    """The nodes that may submit a round's list, in the order attempts go to them: the revealed
    submitters whose proof stands, in ring order (all of them in ring order if none stands). With
    ``count``, only the first ``count`` of that order: the walk stops there, so finding an attempt's
    node costs a few lookups, not a pass over the round in ring order (random reads of every
    submission: the list's and the payout's growth from 30,000 to 100,000 nodes)."""
    ring = audit_ring(state, task, round_number)
    valid: list[Address] = []
    for key in ring.order:
        if submission_is_valid(task, round_number, key):
            valid.append(key)
            if count is not None and len(valid) >= count:
                break
    return valid or list(ring.order[:count])


def selected_submitter(
    state: LedgerState | None, task: TaskState, round_number: int, attempt: int
) -> Address | None:
    """The node selected for distribution ``attempt`` of a round, or ``None`` if nobody is left."""
    if not 0 <= attempt <= task.allowed_failed_distributions:
        return None
    candidates = distribution_candidates(state, task, round_number, attempt + 1)
    return candidates[attempt] if attempt < len(candidates) else None


def selected_submitters(task: TaskState, round_number: int) -> list[Address | None]:
    """``selected_submitter`` of every attempt (0 first) of a round, from one pass over it (read-only)."""
    attempts = range(task.allowed_failed_distributions + 1)
    candidates = distribution_candidates(None, task, round_number, len(attempts))
    return [candidates[attempt] if attempt < len(candidates) else None for attempt in attempts]


def list_chunks(rewards: Mapping[Address, int], slashes: Mapping[Address, int]) -> list[DistributionList]:
    """A list in its canonical chunks: the keys with a non-zero amount, sorted, in groups of
    ``DISTRIBUTION_CHUNK_KEYS`` (a key's reward and slash in the same chunk); an empty list is one
    empty chunk. Zero amounts are dropped: they pay and take nothing."""
    paid = {key: amount for key, amount in rewards.items() if amount}
    taken = {key: amount for key, amount in slashes.items() if amount}
    keys = sorted(paid.keys() | taken.keys())
    chunks = []
    for start in range(0, max(len(keys), 1), DISTRIBUTION_CHUNK_KEYS):
        part = keys[start : start + DISTRIBUTION_CHUNK_KEYS]
        chunks.append(
            DistributionList(
                rewards={k: Roe(paid[k]) for k in part if k in paid},
                slashes={k: Roe(taken[k]) for k in part if k in taken},
            )
        )
    return chunks


def chunk_bytes(rewards: Mapping[Address, int], slashes: Mapping[Address, int]) -> bytes:
    """The canonical bytes of one chunk: the Merkle leaf it is checked as."""
    return canonical_bytes({"rewards": dict(rewards), "slashes": dict(slashes)})


def list_root(rewards: Mapping[Address, int], slashes: Mapping[Address, int]) -> str:
    """The Merkle root of a list's canonical chunks: what its submitter commits, and what an auditor
    who recomputed the list compares with the ``submission_value`` on the ledger."""
    return merkle_root([chunk_bytes(c.rewards, c.slashes) for c in list_chunks(rewards, slashes)])


def distribution_transactions(
    task_id: str, round_number: int, rewards: Mapping[Address, int], slashes: Mapping[Address, int]
) -> list[dict[str, Any]]:
    """The transaction bodies (unsigned, without ``recent_slot``) that submit a list, in order: the
    commitment (``submit_distribution``: root and chunk count), then one ``upload_distribution_chunk``
    per canonical chunk with its inclusion proof."""
    chunks = list_chunks(rewards, slashes)
    leaves = [chunk_bytes(c.rewards, c.slashes) for c in chunks]
    head = {"task_id": task_id, "round": round_number}
    bodies: list[dict[str, Any]] = [
        {"type": "submit_distribution", **head, "root": merkle_root(leaves), "chunks": len(chunks)}
    ]
    for index, (chunk, proof) in enumerate(zip(chunks, inclusion_proofs(leaves), strict=True)):
        bodies.append(
            {
                "type": "upload_distribution_chunk",
                **head,
                "index": index,
                "rewards": dict(chunk.rewards),
                "slashes": dict(chunk.slashes),
                "proof": proof,
            }
        )
    return bodies


def max_chunks(task: TaskState, round_number: int) -> int:
    """The most chunks a round's list may have: enough for every submitter at the chunk size."""
    submitters = len(task.submissions.get(round_number, {}))  # type: ignore[call-overload]
    return max(1, -(-submitters // DISTRIBUTION_CHUNK_KEYS))


def _require_unsettled(task: TaskState, round_number: int) -> None:
    record = task.distributions_audit_record.get(round_number)  # type: ignore[call-overload]
    if record is not None:
        raise AlreadyPaidError(
            f"round {round_number} of task {task.task_id} was already settled: {record}",
            round=round_number,
            record=record,
        )


def passed_list(task: TaskState, round_number: int, submitter: Address | None) -> DistributionList | None:
    """``submitter``'s list for the round if it is complete and stood its audit (what payout pays)."""
    if submitter is None:
        return None
    found = task.distribution_lists.get(round_number, {}).get(submitter)  # type: ignore[call-overload]
    triggers = task.distributions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
    if found is None or not found.complete:
        return None
    return found if is_judged_valid(triggers.get(submitter)) else None


def paid_from(task: TaskState, round_number: int) -> tuple[Address, DistributionList] | None:
    """``(submitter, list)`` a paid round was paid from, while the ledger still holds its list."""
    if task.distributions_audit_record.get(round_number) != PAYOUT_SUCCESSFUL:  # type: ignore[call-overload]
        return None
    for attempt in range(task.allowed_failed_distributions + 1):
        submitter = selected_submitter(None, task, round_number, attempt)
        found = passed_list(task, round_number, submitter)
        if found is not None and submitter is not None:
            return submitter, found
    return None


def validate_chunk(
    task: TaskState,
    round_number: int,
    dist: DistributionList,
    rewards: Mapping[Address, int],
    slashes: Mapping[Address, int],
) -> None:
    """Refuse a chunk that pays or slashes what its list may not (see the module docstring):
    keys of the round's submitters, each at most once in the list, non-negative amounts, the list's
    rewards within the round's bounty, each slash within the stake."""
    submitters = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    for name, entries, listed in (("rewards", rewards, dist.rewards), ("slashes", slashes, dist.slashes)):
        # The three rules over the whole chunk in C loops (no interpreted step per key: this runs
        # for every submitter of the round); only a chunk that breaks one is walked key by key
        # below, to name the first key that breaks it.
        if (
            all(map(submitters.__contains__, entries))
            and min(entries.values(), default=0) >= 0
            and not any(map(listed.__contains__, entries))
        ):
            continue
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
            if key in listed:
                raise InvalidDistributionListError(
                    f"{name}[{key}] is already in an earlier chunk of this list; each key at most once",
                    key=key,
                )
    total = dist.reward_total + sum(rewards.values())
    limit = round_bounty(task)
    if total > limit:
        raise InvalidDistributionListError(
            f"rewards sum to {koii(total)} with this chunk; round {round_number} may pay at most "
            f"{koii(limit)} (bounty_amount_per_round {koii(task.bounty_amount_per_round)}, remaining "
            f"bounty {koii(task.total_bounty_amount)})",
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
    """Commit the selected node's list for a round (its root and chunk count), in the window of the
    current attempt."""
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
        if passed_list(task, tx.round, selected_submitter(state, task, tx.round, earlier)) is not None:
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
    if not _HEX_HASH.fullmatch(tx.root):
        raise InvalidDistributionListError(
            f"root is {tx.root[:80]!r}; a list's root is the lowercase hex SHA-256 Merkle root of its "
            "chunks (64 characters)",
            received=tx.root[:80],
        )
    most = max_chunks(task, tx.round)
    if not 1 <= tx.chunks <= most:
        raise InvalidDistributionListError(
            f"chunks is {tx.chunks}; round {tx.round} has {len(task.submissions[tx.round])} submitters, so "
            f"its list has 1 to {most} chunks of at most {DISTRIBUTION_CHUNK_KEYS} keys",
            received=tx.chunks,
        )
    put(
        state,
        round_map(state, task.distribution_rewards_submission, tx.round),
        tx.signer,
        Submission(tx.root, Slot(slot), tx.round),
    )
    put(
        state,
        round_map(state, task.distribution_lists, tx.round),
        tx.signer,
        DistributionList(root=tx.root, chunks=tx.chunks),
    )
    return [
        DistributionSubmitted(
            task_id=task.task_id,
            round=tx.round,
            submitter=tx.signer,
            attempt=attempt,
            root=tx.root,
            chunks=tx.chunks,
        )
    ]


def upload_distribution_chunk(state: LedgerState, tx: UploadDistributionChunk, slot: int) -> list[Event]:
    """Store one chunk of the list the signer committed, once it is proven part of the committed root."""
    task = get_task(state, tx.task_id)
    _require_unsettled(task, tx.round)
    submitted = task.distribution_rewards_submission.get(tx.round, {}).get(tx.signer)
    dist = task.distribution_lists.get(tx.round, {}).get(tx.signer)
    if submitted is None or dist is None:
        raise UnknownSubmissionError(
            f"{tx.signer} committed no distribution list for round {tx.round} of task {task.task_id}; "
            "send submit_distribution (its root and chunk count) first",
            round=tx.round,
        )
    attempt = distribution_attempt(task, tx.round, submitted.slot)
    require_in_window("distribution chunk", tx.round, slot, distribution_window(task, tx.round, attempt))
    if not 0 <= tx.index < dist.chunks:
        raise InvalidDistributionListError(
            f"chunk index {tx.index} is out of range; the committed list has chunks 0 to {dist.chunks - 1}",
            received=tx.index,
        )
    if tx.index in dist.received:
        raise DuplicateSubmissionError(
            f"chunk {tx.index} of {tx.signer}'s list for round {tx.round} was already received",
            round=tx.round,
        )
    size = len(tx.rewards.keys() | tx.slashes.keys())
    if size > DISTRIBUTION_CHUNK_KEYS:
        raise InvalidDistributionListError(
            f"chunk {tx.index} holds {size} keys; a chunk holds at most {DISTRIBUTION_CHUNK_KEYS}",
            received=size,
        )
    if not verify_inclusion(chunk_bytes(tx.rewards, tx.slashes), tx.index, dist.chunks, tx.proof, dist.root):
        raise InvalidDistributionListError(
            f"chunk {tx.index} with this proof is not part of the committed root {dist.root}",
            index=tx.index,
        )
    validate_chunk(task, tx.round, dist, tx.rewards, tx.slashes)
    put_all(state, dist.rewards, tx.rewards)
    put_all(state, dist.slashes, tx.slashes)
    put(state, dist.received, tx.index, size)
    reward_total = Roe(dist.reward_total + sum(tx.rewards.values()))
    slash_total = Roe(dist.slash_total + sum(tx.slashes.values()))
    assign(state, dist, "reward_total", reward_total)
    assign(state, dist, "slash_total", slash_total)
    return [
        DistributionChunkUploaded(
            task_id=task.task_id,
            round=tx.round,
            submitter=tx.signer,
            index=tx.index,
            received=len(dist.received),
            chunks=dist.chunks,
            reward_total=reward_total,
            slash_total=slash_total,
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
    votes = distribution_audit_window(task, tx.round, attempt)
    accused = tx.candidate in task.distributions_audit_trigger.get(tx.round, {})
    if accused:
        # an accused list is judged once every other submitter had the judgement window to vote
        window = range(votes.start, distribution_judgement_window(task, tx.round, attempt).stop)
    else:
        window = votes
    require_in_window("distribution audit", tx.round, slot, window)
    voter = task.submissions.get(tx.round, {}).get(tx.signer)
    if tx.signer == tx.candidate or voter is None or not voter.reveal:
        raise NotAssignedAuditorError(
            f"{tx.signer} may not audit round {tx.round}'s distribution list: only the round's other "
            "submitters that revealed audit it",
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
        ready = settle_slot(task, tx.round, attempt)
        if slot < ready:
            window = distribution_audit_window(task, tx.round, attempt)
            raise PayoutNotReadyError(
                f"round {tx.round}'s distribution list (attempt {attempt}) is audited in {describe(window)} "
                f"and judged until slot {ready - 1}; payout is accepted from slot {ready}, now slot {slot}",
                round=tx.round,
                ready_slot=ready,
            )
        submitter = selected_submitter(state, task, tx.round, attempt)
        passed = passed_list(task, tx.round, submitter)
        if passed is not None and submitter is not None:
            events = penalize_losing_votes(state, task, tx.round)
            events += _pay(state, task, tx.round, attempt, submitter, passed)
            _prune(state, task, tx.round)
            return events
    events = penalize_losing_votes(state, task, tx.round)
    return events + _fail(
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
    """Apply a list that stood its audit: slashes (capped at the stake still there) into the pot,
    then rewards out of it.

    The receipt stays small whatever the list's size: totals, the list's root and the slashes that
    were capped (in key order, so a receipt is a function of the log alone). The per-key detail is
    the list itself, kept in the round's record and read page by page
    (``GET /tasks/{id}/rounds/{r}/distribution``).

    - A migrated task's round only slashes: its bounty moved to the newest version, and so do the
      slashed ROE (nothing is stranded in a pot that can no longer be funded or paid from).
    - When the pot (with the slashes) cannot cover the rewards, the slashes still apply and the round
      is ``PayoutFailed``: a garbage node does not escape because the bounty ran out.
    """
    stakes = task.stake_list
    capped = {
        key: Roe(stakes.get(key, 0)) for key in sorted(dist.slashes) if dist.slashes[key] > stakes.get(key, 0)
    }
    slash_total = dist.slash_total - sum(dist.slashes[key] - applied for key, applied in capped.items())
    for key, amount in dist.slashes.items():
        applied = capped.get(key, amount)
        if applied:
            add(state, stakes, key, -applied)
    for key, applied in capped.items():
        put(state, dist.capped, key, applied)
    assign(state, task, "total_stake_amount", Roe(task.total_stake_amount - slash_total))
    migrated = task.is_migrated
    if migrated:
        heir = newest_version(state, task)
        assign(state, heir, "total_bounty_amount", Roe(heir.total_bounty_amount + slash_total))
    reward_total = 0 if migrated else dist.reward_total
    pot = task.total_bounty_amount + (0 if migrated else slash_total)
    if reward_total > pot:
        assign(state, task, "total_bounty_amount", Roe(pot))
        return _fail(
            state,
            task,
            round_number,
            f"the list pays {koii(reward_total)} but the pot holds {koii(pot)}; its slashes "
            f"({koii(slash_total)}) were applied",
        )
    if not migrated:
        add_all(state, task.available_balances, dist.rewards)
    assign(state, task, "total_bounty_amount", Roe(pot - reward_total))
    put(state, task.distributions_audit_record, round_number, PAYOUT_SUCCESSFUL)
    return [
        RoundPaid(
            task_id=task.task_id,
            round=round_number,
            attempt=attempt,
            distribution_submitter=submitter,
            root=dist.root,
            rewarded=0 if migrated else sum(1 for amount in dist.rewards.values() if amount),
            slashed=sum(1 for key, amount in dist.slashes.items() if capped.get(key, amount)),
            reward_total=Roe(reward_total),
            slash_total=Roe(slash_total),
            capped=capped,
        )
    ]


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
