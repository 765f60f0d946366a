"""Reveals, votes on proofs, their tally, and who must audit whom.

**An assignment no participant can choose (commit-reveal).** Every ``submit`` carries a
``commitment``: ``beacon_commitment(task_id, round, submitter, secret)`` of a 32-byte secret only the
submitter knows (the node derives it from a signature of its staking key, so it survives restarts).
Once the submission window has closed, every commitment is fixed; in the *reveal window* (the first
``reveal_slots`` slots of the audit window) each submitter sends ``reveal {round, secret}``. The
round's *beacon* is the SHA-256 of the task id, the round and every revealed secret, fixed when the
reveal window closes, before any vote is accepted. A submitter that does not reveal is judged
invalid (its proof stands for nothing, and the default distribution slashes it), and takes no part
in the audit. Nobody can pick the beacon after seeing the others' values: the last revealer can only
choose between revealing and withholding, and withholding costs it the slash (docs/protocol.md §8).

**Assignment.** Revealed submitters are ordered by ``sha256(beacon:pubkey)`` into a ring. Each
candidate's *sample* is the ``sample_size`` submitters that follow it; its *panel* is the
``escalation_size`` that follow it (the sample first), never itself.

**Votes.** A ``false`` vote from a sample auditor, in the audit window, raises an audit trigger
(accuses). Once accused, every panel member may vote, ``true`` (defend) or ``false``, in the audit
window or in the *judgement window* that follows it (the rest of the round): every defender has
that whole window, however late the accusation came. An accused candidate is invalid when its false
votes outnumber its true votes (the majority of votes cast; a tie stands). A candidate nobody
accused is valid. The same trigger rules apply to distribution lists (their panel is every other
revealed submitter of the round).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import (
    DuplicateSubmissionError,
    DuplicateVoteError,
    InvalidRevealError,
    NoAuditTriggerError,
    NotAssignedAuditorError,
    UnknownSubmissionError,
    WrongPhaseError,
)
from .accounts import get_task
from .codec import canonical_bytes, sha256_hex
from .events import AuditTriggered, Event, Revealed, VoteCast, VotePenalized
from .rounds import audit_window, describe, judgement_window, reveal_window
from .state import AuditTrigger, LedgerState, Submission, TaskState, Vote, add, assign, put, round_map
from .submissions import require_in_window
from .tasks import newest_version
from .transactions import AuditSubmission, Reveal
from .types import Address, Roe, RoundNumber, Slot


def beacon_commitment(task_id: str, round_number: int, submitter: str, secret: str) -> str:
    """What a proof commits to: the hex SHA-256 of the task, round, submitter and beacon secret."""
    return sha256_hex(
        canonical_bytes({"task_id": task_id, "round": round_number, "submitter": submitter, "secret": secret})
    )


def beacon_of(task_id: str, round_number: int, reveals: Mapping[Address, str]) -> str:
    """The round beacon from public data: task id, round, and ``{submitter: revealed secret}``."""
    return sha256_hex(canonical_bytes({"task_id": task_id, "round": round_number, "reveals": dict(reveals)}))


def revealed(submissions: Mapping[Address, Submission]) -> dict[Address, str]:
    """``{submitter: secret}`` of the submitters who revealed, in the order they submitted. Every user
    orders them itself (the beacon's canonical bytes sort the keys, the ring sorts by hash); walking
    the submissions in their own order is about 3 times cheaper at 100,000 submitters than looking
    each one up in key order, whose random reads of the dict and of the records grew faster than
    the round (the first vote's growth, 30,000 to 100,000 nodes)."""
    return {key: submission.reveal for key, submission in submissions.items() if submission.reveal}


def round_beacon(state: LedgerState | None, task: TaskState, round_number: int) -> str:
    """The beacon of ``round_number``, computed once and kept in ``task.round_beacons``.

    Pass ``state=None`` to compute without storing (read-only callers, such as every node's read
    of its round in the audit window, before any vote stored it). Either way a computed beacon is
    remembered per round's submissions (the same map object) and count of reveals, which fix the
    revealed secrets (a reveal is never undone, and one reveal per submitter), so a later call (a
    read, or the first vote storing it after a read) costs one pass counting reveals instead of
    sorting and hashing all of them.
    """
    beacon = task.round_beacons.get(RoundNumber(round_number))
    if beacon is not None:
        return beacon
    submissions = task.submissions.get(RoundNumber(round_number), {})
    count = sum(1 for submission in submissions.values() if submission.reveal)
    known = _READ_BEACONS.get(id(submissions))
    if known is not None and known[0] is submissions and known[1] == count:
        beacon = known[2]
    else:
        beacon = beacon_of(task.task_id, round_number, revealed(submissions))
        if len(_READ_BEACONS) >= _RING_CACHE_SIZE:
            del _READ_BEACONS[next(iter(_READ_BEACONS))]
        _READ_BEACONS[id(submissions)] = (submissions, count, beacon)
    if state is not None:
        put(state, task.round_beacons, round_number, beacon)
    return beacon


_READ_BEACONS: dict[int, tuple[Mapping[Address, Submission], int, str]] = {}
"""Beacons computed by read-only callers: ``id(submissions) -> (submissions, reveal count, beacon)``
(the map is kept, so its id is not reused while it is remembered)."""


@dataclass(frozen=True, slots=True)
class AuditRing:
    """Revealed submitters of a round in beacon order, with each one's position."""

    order: tuple[Address, ...]
    position: Mapping[Address, int]
    sample_size: int
    escalation_size: int = 0
    """The panel size (0: the sample only)."""

    def _reach(self, size: int) -> int:
        return min(size, len(self.order) - 1)

    def panel_of(self, candidate: str) -> list[Address]:
        """Who judges ``candidate`` once accused: the ``escalation_size`` that follow it, sample first."""
        n = len(self.order)
        start = self.position[Address(candidate)]
        count = self._reach(max(self.escalation_size, self.sample_size))
        return [self.order[(start + step) % n] for step in range(1, count + 1)]

    def on_panel(self, voter: str, candidate: str) -> bool:
        """Whether ``voter`` sits on ``candidate``'s panel."""
        a = self.position.get(Address(voter))
        c = self.position.get(Address(candidate))
        if a is None or c is None:
            return False
        return 1 <= (a - c) % len(self.order) <= self._reach(max(self.escalation_size, self.sample_size))

    def panel_candidates_of(self, voter: str) -> list[Address]:
        """The candidates whose panel ``voter`` sits on."""
        n = len(self.order)
        start = self.position.get(Address(voter))
        if start is None:
            return []
        count = self._reach(max(self.escalation_size, self.sample_size))
        return [self.order[(start - step) % n] for step in range(1, count + 1)]

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


_RINGS: dict[tuple[str, int, int], AuditRing] = {}
_RING_CACHE_SIZE = 64


def ring_for(
    beacon: str, submitters: Iterable[Address], sample_size: int, escalation_size: int = 0
) -> AuditRing:
    """Order ``submitters`` by ``sha256(beacon:pubkey)``. Memoized by beacon, which fixes the set,
    so ``submitters`` is only read when the ring is not cached yet."""
    key = (beacon, sample_size, escalation_size)
    ring = _RINGS.get(key)
    if ring is None:
        # sha256(beacon:pubkey) of each submitter, from one hash of the prefix copied per key: the
        # same digests (the prefix's whole blocks are compressed once), about a quarter less CPU.
        keyed = hashlib.sha256(beacon.encode() + b":")

        def digest(pk: str) -> bytes:
            h = keyed.copy()
            h.update(pk.encode())
            return h.digest()

        order = tuple(sorted(submitters, key=digest))
        ring = AuditRing(
            order=order,
            position={pk: i for i, pk in enumerate(order)},
            sample_size=sample_size,
            escalation_size=escalation_size,
        )
        if len(_RINGS) >= _RING_CACHE_SIZE:
            del _RINGS[next(iter(_RINGS))]
        _RINGS[key] = ring
    return ring


def audit_ring(state: LedgerState | None, task: TaskState, round_number: int) -> AuditRing:
    """The audit ring of a round: its revealed submitters (only final once the reveal window closed)."""
    beacon = round_beacon(state, task, round_number)
    submissions = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    # Lazy: ``ring_for`` reads the revealed submitters only when the ring is not cached yet, so a vote
    # costs O(1) and not a pass over the round (the ring sorts them by hash, whatever their order).
    lazy = (key for key, submission in submissions.items() if submission.reveal)
    return ring_for(beacon, lazy, task.sample_size, task.escalation_size)


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
    """Whether ``submitter``'s proof for ``round_number`` stands: its secret was revealed and it was
    not judged invalid."""
    submission = task.submissions.get(round_number, {}).get(submitter)  # type: ignore[call-overload]
    if submission is None or not submission.reveal:
        return False
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


def reveal(state: LedgerState, tx: Reveal, slot: int) -> list[Event]:
    """A submitter reveals the beacon secret it committed with its proof, in the reveal window."""
    task = get_task(state, tx.task_id)
    require_in_window("reveal", tx.round, slot, reveal_window(task, tx.round))
    submission = task.submissions.get(tx.round, {}).get(tx.signer)
    if submission is None:
        raise UnknownSubmissionError(
            f"{tx.signer} has no submission in round {tx.round} of task {task.task_id}; only submitters "
            "reveal",
            candidate=tx.signer,
        )
    if submission.reveal:
        raise DuplicateSubmissionError(f"{tx.signer} already revealed for round {tx.round}", round=tx.round)
    expected = beacon_commitment(task.task_id, tx.round, tx.signer, tx.secret)
    if expected != submission.commitment:
        raise InvalidRevealError(
            f"secret does not match the commitment {submission.commitment} sent with {tx.signer}'s proof "
            f"for round {tx.round}: it hashes to {expected} (beacon_commitment(task_id, round, submitter, "
            "secret))",
            commitment=submission.commitment,
        )
    assign(state, submission, "reveal", tx.secret)
    return [Revealed(task_id=task.task_id, round=tx.round, submitter=tx.signer)]


def audit_submission(state: LedgerState, tx: AuditSubmission, slot: int) -> list[Event]:
    """A vote on a proof: an accusation from a sample auditor in the audit window, or a vote on an
    accused proof from its panel in the audit or judgement window."""
    task = get_task(state, tx.task_id)
    votes, judging = audit_window(task, tx.round), judgement_window(task, tx.round)
    if slot not in votes and slot not in judging:
        raise WrongPhaseError(
            f"audit for round {tx.round} arrived at slot {slot}; round {tx.round} accepts audits in "
            f"{describe(votes)} and votes on accused proofs until slot {judging.stop - 1}",
            round=tx.round,
            slot=slot,
            window_start=votes.start,
            window_end=judging.stop - 1,
        )
    submission = task.submissions.get(tx.round, {}).get(tx.candidate)
    if submission is None:
        raise UnknownSubmissionError(
            f"{tx.candidate} has no submission in round {tx.round} of task {task.task_id}",
            candidate=tx.candidate,
        )
    if not submission.reveal:
        raise UnknownSubmissionError(
            f"{tx.candidate} did not reveal its beacon secret for round {tx.round}: its proof is invalid "
            "without a vote",
            candidate=tx.candidate,
        )
    ring = audit_ring(state, task, tx.round)
    accused = tx.candidate in task.submissions_audit_trigger.get(tx.round, {})
    if not accused:
        if slot not in votes:
            raise WrongPhaseError(
                f"{tx.candidate}'s proof for round {tx.round} was not accused in the audit window "
                f"({describe(votes)}); the judgement window (until slot {judging.stop - 1}) only takes "
                "votes on accused proofs",
                round=tx.round,
                slot=slot,
                window_start=votes.start,
                window_end=votes.stop - 1,
            )
        if not ring.is_assigned(tx.signer, tx.candidate):
            raise NotAssignedAuditorError(
                f"{tx.signer} is not assigned to audit {tx.candidate} in round {tx.round}; its auditors "
                f"are {', '.join(ring.auditors_of(tx.candidate)) or 'nobody'} "
                "(see GET /tasks/<id>/rounds/<r>)",
                voter=tx.signer,
            )
    elif not ring.on_panel(tx.signer, tx.candidate):
        raise NotAssignedAuditorError(
            f"{tx.signer} is not on the panel that judges {tx.candidate}'s accused proof for round "
            f"{tx.round}; the panel is {', '.join(ring.panel_of(tx.candidate))}",
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


def penalize_losing_votes(state: LedgerState, task: TaskState, round_number: RoundNumber) -> list[Event]:
    """At settlement, every vote on the losing side of an accused proof's judgement costs its voter
    ``vote_penalty_percent`` of the stake it still has (rounded down): defenders of a proof judged
    invalid, accusers of a proof judged valid. The ROE go to the pot (a migrated task's to the newest
    version's pot), never to the voters, so no vote is paid for. In key order: the receipt is a
    function of the log."""
    triggers = task.submissions_audit_trigger.get(round_number, {})
    if not triggers or not task.vote_penalty_percent:
        return []
    pot = newest_version(state, task)
    events: list[Event] = []
    total = 0
    for candidate in sorted(triggers):
        valid = submission_is_valid(task, round_number, candidate)
        for voter in sorted(triggers[candidate].votes):
            if triggers[candidate].votes[voter].is_valid == valid:
                continue
            amount = task.stake_list.get(voter, 0) * task.vote_penalty_percent // 100
            if amount:
                add(state, task.stake_list, voter, -amount)
                total += amount
                events.append(
                    VotePenalized(
                        task_id=task.task_id,
                        round=round_number,
                        voter=voter,
                        candidate=candidate,
                        amount=Roe(amount),
                    )
                )
    if total:
        assign(state, task, "total_stake_amount", Roe(task.total_stake_amount - total))
        assign(state, pot, "total_bounty_amount", Roe(pot.total_bounty_amount + total))
    return events
