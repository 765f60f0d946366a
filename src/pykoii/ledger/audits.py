"""Votes on proofs, their tally, and who must audit whom.

**Votes.** A ``false`` vote on a candidate raises an audit trigger (or adds to one); a ``true`` vote
is accepted only on a candidate that has a trigger, since honest nodes only defend the accused. A
candidate is judged invalid when its trigger holds more false votes (the raiser's included) than
true ones; a candidate without a trigger is valid. The same rules apply to distribution lists.

**Assignment.** Koii picks auditors with ``Math.random``, so nobody can check who should have voted.
Here every round has a public *beacon*: the SHA-256 of the canonical JSON of the task id, the round
number and every submission of that round. It is fixed once the round's submission window has
closed, which is before any vote is accepted. Submitters are ordered by ``sha256(beacon:pubkey)``;
each candidate is audited by the ``sample_size`` submitters that follow it in that ring, never by
itself. So every node audits ``sample_size`` candidates, and anyone can recompute the assignment
from public state with the functions below. Votes from nodes that were not assigned are refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import (
    DuplicateVoteError,
    NoAuditTriggerError,
    NotAssignedAuditorError,
    UnknownSubmissionError,
)
from .accounts import get_task
from .codec import canonical_bytes, sha256_hex
from .events import AuditTriggered, Event, VoteCast
from .rounds import audit_window
from .state import AuditTrigger, LedgerState, TaskState, Vote, put, round_map
from .submissions import require_in_window
from .transactions import AuditSubmission
from .types import Address, RoundNumber, Slot


def beacon_of(task_id: str, round_number: int, submissions: Mapping[str, str]) -> str:
    """The round beacon from public data: task id, round, and ``{submitter: submission_value}``."""
    return sha256_hex(
        canonical_bytes({"task_id": task_id, "round": round_number, "submissions": dict(submissions)})
    )


def round_beacon(state: LedgerState | None, task: TaskState, round_number: int) -> str:
    """The beacon of ``round_number``, computed once and kept in ``task.round_beacons``.

    Pass ``state=None`` to compute without storing (read-only callers).
    """
    beacon = task.round_beacons.get(RoundNumber(round_number))
    if beacon is None:
        submissions = task.submissions.get(RoundNumber(round_number), {})
        beacon = beacon_of(
            task.task_id, round_number, {key: sub.submission_value for key, sub in submissions.items()}
        )
        if state is not None:
            put(state, task.round_beacons, round_number, beacon)
    return beacon


@dataclass(frozen=True, slots=True)
class AuditRing:
    """Submitters of a round in beacon order, with each one's position."""

    order: tuple[Address, ...]
    position: Mapping[Address, int]
    sample_size: int

    def auditors_of(self, candidate: str) -> list[Address]:
        """The nodes that must audit ``candidate``: the ``sample_size`` that follow it in the ring."""
        n = len(self.order)
        start = self.position[Address(candidate)]
        count = min(self.sample_size, n - 1)
        return [self.order[(start + step) % n] for step in range(1, count + 1)]

    def candidates_of(self, auditor: str) -> list[Address]:
        """The candidates ``auditor`` must audit: the ``sample_size`` that precede it in the ring."""
        n = len(self.order)
        start = self.position.get(Address(auditor))
        if start is None:
            return []
        count = min(self.sample_size, n - 1)
        return [self.order[(start - step) % n] for step in range(1, count + 1)]

    def is_assigned(self, auditor: str, candidate: str) -> bool:
        """Whether ``auditor`` must audit ``candidate``."""
        a = self.position.get(Address(auditor))
        c = self.position.get(Address(candidate))
        if a is None or c is None:
            return False
        distance = (a - c) % len(self.order)
        return 1 <= distance <= min(self.sample_size, len(self.order) - 1)


_RINGS: dict[tuple[str, int], AuditRing] = {}
_RING_CACHE_SIZE = 64


def ring_for(beacon: str, submitters: Iterable[Address], sample_size: int) -> AuditRing:
    """Order ``submitters`` by ``sha256(beacon:pubkey)``. Memoized by beacon, which fixes the set,
    so ``submitters`` is only read when the ring is not cached yet."""
    key = (beacon, sample_size)
    ring = _RINGS.get(key)
    if ring is None:
        prefix = beacon.encode() + b":"
        order = tuple(sorted(submitters, key=lambda pk: hashlib.sha256(prefix + pk.encode()).digest()))
        ring = AuditRing(order=order, position={pk: i for i, pk in enumerate(order)}, sample_size=sample_size)
        if len(_RINGS) >= _RING_CACHE_SIZE:
            del _RINGS[next(iter(_RINGS))]
        _RINGS[key] = ring
    return ring


def audit_ring(state: LedgerState | None, task: TaskState, round_number: int) -> AuditRing:
    """The audit ring of a round (only meaningful once its submission window has closed)."""
    beacon = round_beacon(state, task, round_number)
    submitters = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    return ring_for(beacon, submitters, task.sample_size)


def audit_assignments(task: TaskState, round_number: int) -> dict[Address, list[Address]]:
    """``{candidate: [auditors]}`` for a round, recomputed from public state."""
    ring = audit_ring(None, task, round_number)
    return {candidate: ring.auditors_of(candidate) for candidate in ring.order}


def is_judged_valid(trigger: AuditTrigger | None) -> bool:
    """A candidate is invalid only if its trigger has more false votes than true ones."""
    if trigger is None:
        return True
    false_votes = sum(1 for vote in trigger.votes.values() if not vote.is_valid)
    return false_votes <= len(trigger.votes) - false_votes


def submission_is_valid(task: TaskState, round_number: int, submitter: str) -> bool:
    """Whether ``submitter``'s proof for ``round_number`` stands after its audit."""
    triggers = task.submissions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
    return is_judged_valid(triggers.get(submitter))


def cast_vote(
    state: LedgerState,
    task: TaskState,
    triggers: dict[RoundNumber, dict[Address, AuditTrigger]],
    target: str,
    round_number: RoundNumber,
    candidate: Address,
    voter: Address,
    is_valid: bool,
    slot: int,
) -> list[Event]:
    """Record a vote under the trigger rules shared by proofs and distribution lists."""
    trigger = triggers.get(round_number, {}).get(candidate)
    if trigger is not None and voter in trigger.votes:
        raise DuplicateVoteError(
            f"{voter} already voted on {candidate}'s {target} for round {round_number}",
            voter=voter,
        )
    vote = Vote(is_valid=is_valid, voter=voter, slot=Slot(slot))
    events: list[Event] = []
    if trigger is None:
        if is_valid:
            raise NoAuditTriggerError(
                f"nobody has accused {candidate}'s {target} for round {round_number}; a true vote is "
                "accepted only on a triggered candidate (no trigger already counts as valid)",
                candidate=candidate,
            )
        trigger = AuditTrigger(trigger_by=voter, slot=Slot(slot), votes={voter: vote})
        put(state, round_map(state, triggers, round_number), candidate, trigger)
        events.append(
            AuditTriggered(
                task_id=task.task_id, round=round_number, target=target, candidate=candidate, trigger_by=voter
            )
        )
    else:
        put(state, trigger.votes, voter, vote)
    events.append(
        VoteCast(
            task_id=task.task_id,
            round=round_number,
            target=target,
            candidate=candidate,
            voter=voter,
            is_valid=is_valid,
        )
    )
    return events


def audit_submission(state: LedgerState, tx: AuditSubmission, slot: int) -> list[Event]:
    """A vote on a proof, from an assigned auditor, in the round's audit window."""
    task = get_task(state, tx.task_id)
    require_in_window("audit", tx.round, slot, audit_window(task, tx.round))
    if tx.candidate not in task.submissions.get(tx.round, {}):
        raise UnknownSubmissionError(
            f"{tx.candidate} has no submission in round {tx.round} of task {task.task_id}",
            candidate=tx.candidate,
        )
    ring = audit_ring(state, task, tx.round)
    if not ring.is_assigned(tx.signer, tx.candidate):
        raise NotAssignedAuditorError(
            f"{tx.signer} is not assigned to audit {tx.candidate} in round {tx.round}; its auditors "
            f"are {', '.join(ring.auditors_of(tx.candidate)) or 'nobody'} (see GET /tasks/<id>/rounds/<r>)",
            voter=tx.signer,
        )
    return cast_vote(
        state,
        task,
        task.submissions_audit_trigger,
        "submission",
        tx.round,
        tx.candidate,
        tx.signer,
        tx.is_valid,
        slot,
    )
