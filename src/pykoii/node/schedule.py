"""The round schedule: what a node must do for a task at a slot. Pure; shared by node and simulator.

``due_actions(task, slot, record, me)`` looks at the task's public state, the slot and what this node
already did (its ``NodeRecord``) and returns the ``Action``s due now, following DESIGN §4 and the
seed's "Stacking Rounds" diagram. In round ``R`` (slots ``[ss + R*rt, ss + (R+1)*rt)``)::

    offset in round R:  0 ........ sw ........ sw+aw ........ rt
    RUN_TASK(R)         |<------------ whole round ----------->|
    SUBMIT_PROOF(R-1)   |<-- sw -->|            (with the commitment to its beacon secret)
    REVEAL(R-1)                    |<rv>|       (first half of the audit window)
    AUDIT_PROOFS(R-1)                   |<aw-rv>|<- judgement ->|
                        (sample: accuse or defend; panel of an accused proof: vote, until rt)
    SUBMIT_DISTRIBUTION(R-2-k)     (attempt k; only the node the beacon selected)
                        |<-- sw -->|
    AUDIT_DISTRIBUTION(R-2-k)      |<-- aw -->|
    PAYOUT(r)           once the audit window of r's passing (or last) attempt has closed

The runner (``pykoii.node.runtime`` or ``pykoii.testing``) executes each action, then records it in
the ``NodeRecord`` (``record.mark(action.key)``) so the action is not offered again; the record is
JSON (``to_json``/``from_json``) and the node persists it, so a restarted node never submits twice.
The ledger state is checked as well: a proof, list or vote the ledger already holds is never due.

Audits follow Koii's vote rule (koii-reference §2.3), see ``decide_vote``: a proof judged wrong gets
a ``false`` vote (it raises or joins an audit trigger); a proof judged right gets a ``true`` vote only
if somebody accused it, else no vote. Because an accusation may arrive after a node audited, the
record keeps each verdict (``record.note_verdict``); a candidate judged right that is accused later in
the window comes back in ``Action.votes`` as a ``true`` vote to cast, without running ``audit`` again.

Rounds before a node's first ``RUN_TASK`` are not submitted for: a node that starts mid-round submits
from the next full round on.

**Two lanes, Koii's phase model.** ``RUN_TASK`` (the round's work) runs on its own lane, alongside
everything else: a slow ``task(R)`` never holds up ``submission``, ``audit``, distribution or payout
of earlier rounds. Two rules tie the lanes together (``waits_for_work``): one ``task()`` at a time,
and the proof of round R waits while ``task(R)`` is still running (within the proof window; after it
the ledger refuses the proof anyway). Each action has the window the ledger accepts it in
(``action_window``); a phase that ends after its window closed is reported with its numbers
(``overrun``). The node and the simulator both apply these rules.

The task may be the ledger's ``TaskState`` or its plain JSON form (what the ledger's HTTP API
returns); plain JSON is converted with ``pykoii.ledger.codec.from_plain`` (see ``as_task_state``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from ..ledger.audits import (
    AuditRing,
    beacon_of,
    is_judged_valid,
    revealed,
    ring_for,
    submission_is_valid,
)
from ..ledger.codec import from_plain
from ..ledger.distribution import distribution_candidates, list_root, passed_list, round_bounty
from ..ledger.rounds import (
    audit_window,
    describe,
    distribution_audit_window,
    distribution_window,
    judgement_window,
    reveal_window,
    round_of,
    round_start,
    settle_slot,
    submission_window,
)
from ..ledger.state import AuditTrigger, DistributionList, TaskState
from ..ledger.types import Roe
from ..sdk import Submitter
from .actions import Action, ActionKind, NodeRecord, action_key


def as_task_state(task: TaskState | Mapping[str, Any]) -> TaskState:
    """The ledger's ``TaskState``, from itself or from its plain JSON form (the HTTP API's)."""
    if isinstance(task, TaskState):
        return task
    return from_plain(TaskState, dict(task))


# --- public state, read the way every node reads it ---------------------------------------------

_BEACONS: dict[tuple[str, int, int], str] = {}
_CACHE_SIZE = 256


def clear_memos() -> None:
    """Forget memoized beacons and distribution orders. They are keyed by task id, round and
    submission count, which is only unique within one ledger: a process that runs several ledgers
    holding the same task ids (the simulator, run after run with one seed) clears them between runs."""
    _BEACONS.clear()
    _CANDIDATES.clear()


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_SIZE:
        del cache[next(iter(cache))]
    cache[key] = value


def round_beacon_of(task: TaskState, round_number: int) -> str:
    """The round's beacon as the ledger computes it (``ledger.round_beacon``), without storing it."""
    beacon = task.round_beacons.get(round_number)  # type: ignore[call-overload]
    if beacon is not None:
        return str(beacon)
    reveals = revealed(task.submissions.get(round_number, {}))  # type: ignore[call-overload]
    # Memoized by (task, round, reveal count): once the reveal window has closed they are fixed.
    memo_key = (task.task_id, round_number, len(reveals))
    beacon = _BEACONS.get(memo_key)
    if beacon is None:
        beacon = beacon_of(task.task_id, round_number, reveals)
        _remember(_BEACONS, memo_key, beacon)
    return beacon


def proof_ring(task: TaskState, round_number: int) -> AuditRing:
    """The round's audit ring (who audits whom, and each accused proof's panel), from public state;
    meaningful once the round's reveal window has closed, when its reveals can no longer change."""
    reveals = revealed(task.submissions.get(round_number, {}))  # type: ignore[call-overload]
    return ring_for(round_beacon_of(task, round_number), reveals, task.sample_size, task.escalation_size)


_CANDIDATES: dict[tuple[Any, ...], tuple[str, ...]] = {}


def distribution_order(task: TaskState, round_number: int) -> tuple[str, ...]:
    """Who may submit a round's distribution list, in attempt order (``ledger.distribution_candidates``):
    the round's valid submitters in beacon order, or all of them if none is valid."""
    beacon = round_beacon_of(task, round_number)
    triggers = task.submissions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
    verdicts = tuple(sorted((key, is_judged_valid(t)) for key, t in triggers.items()))
    memo_key = (beacon, task.sample_size, task.escalation_size, verdicts)
    order = _CANDIDATES.get(memo_key)
    if order is None:
        order = tuple(distribution_candidates(None, task, round_number))
        _remember(_CANDIDATES, memo_key, order)
    return order


def selected_for(task: TaskState, round_number: int, attempt: int) -> str | None:
    """The node selected for distribution ``attempt`` of a round, or ``None``."""
    if not 0 <= attempt <= task.allowed_failed_distributions:
        return None
    order = distribution_order(task, round_number)
    return order[attempt] if attempt < len(order) else None


def _trigger(
    triggers: Mapping[int, Mapping[str, AuditTrigger]], round_number: int, candidate: str
) -> AuditTrigger | None:
    return triggers.get(round_number, {}).get(candidate)


def is_triggered(task: TaskState, round_number: int, candidate: str, *, distribution: bool = False) -> bool:
    """Whether somebody accused ``candidate``'s proof (or its distribution list) for the round."""
    triggers = task.distributions_audit_trigger if distribution else task.submissions_audit_trigger
    return _trigger(triggers, round_number, candidate) is not None  # type: ignore[arg-type]


def has_voted(
    task: TaskState, round_number: int, candidate: str, voter: str, *, distribution: bool = False
) -> bool:
    """Whether the ledger holds ``voter``'s vote on ``candidate`` for the round."""
    triggers = task.distributions_audit_trigger if distribution else task.submissions_audit_trigger
    trigger = _trigger(triggers, round_number, candidate)  # type: ignore[arg-type]
    return trigger is not None and voter in trigger.votes


def net_votes(trigger: AuditTrigger | None) -> int:
    """Koii's vote count: 1 with no trigger ("no audit, valid"), else true votes minus false votes."""
    if trigger is None:
        return 1
    return sum(1 if vote.is_valid else -1 for vote in trigger.votes.values())


def decide_vote(audit_result: bool, triggered: bool) -> bool | None:
    """The vote to cast after an audit: ``False`` for a wrong proof; ``True`` for a right one only
    if it was accused (``triggered``); ``None`` (no vote) for a right, unaccused one."""
    if not audit_result:
        return False
    return True if triggered else None


def submitters_of(task: TaskState | Mapping[str, Any], round_number: int) -> list[Submitter]:
    """The ``Submitter`` list ``Task.distribution`` gets for a round, in submission order."""
    task = as_task_state(task)
    submissions = task.submissions.get(round_number, {})  # type: ignore[call-overload]
    triggers = task.submissions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
    stakes = task.stake_list
    result = []
    for key, sub in submissions.items():
        trigger = triggers.get(key)
        result.append(
            Submitter(
                public_key=key,
                submission_value=sub.submission_value,
                valid=submission_is_valid(task, round_number, key),
                votes=net_votes(trigger),
                stake=stakes.get(key, Roe(0)),
            )
        )
    return result


def distribution_bounty(task: TaskState | Mapping[str, Any]) -> int:
    """The ``bounty`` a round's distribution may pay: ``bounty_amount_per_round``, or the pot if less."""
    return round_bounty(as_task_state(task))


def submitted_list(task: TaskState, round_number: int, submitter: str) -> DistributionList | None:
    """The header of the list ``submitter`` committed for the round (its root, chunk count, chunks
    received, totals), if the ledger holds it; the per-key entries are not part of a task's state
    as nodes read it."""
    found = task.distribution_lists.get(round_number, {}).get(submitter)  # type: ignore[call-overload]
    return cast(DistributionList | None, found)


def list_matches(task: TaskState, round_number: int, submitter: str, recomputed: DistributionList) -> bool:
    """Whether ``submitter``'s list is the one this node recomputed: complete on the ledger, with the
    root of the recomputed list (``ledger.distribution.list_root``: zero amounts count as absent).
    A missing or incomplete list never matches."""
    listed = submitted_list(task, round_number, submitter)
    if listed is None or not listed.complete:
        return False
    return listed.root == list_root(recomputed.rewards, recomputed.slashes)


def can_submit(task: TaskState, me: str) -> bool:
    """Whether the ledger would take a proof from ``me``: the task runs and the stake is enough."""
    stake = task.stake_list.get(me, 0)  # type: ignore[call-overload]
    return task.is_active and not task.is_migrated and stake > 0 and stake >= task.minimum_stake_amount


@dataclass(frozen=True, slots=True)
class RoundFacts:
    """What the whole of a round's public state says to one node: what a node that reads only its
    own part of the task (``GET /tasks/{id}/nodes/{key}``, whose ``key_rounds`` these are) needs
    besides it. Without them, ``due_actions`` computes the same from a whole ``TaskState``."""

    candidates: tuple[str, ...] = ()
    """The proofs the node must audit (its sample in the ring), once the ring is final."""
    panel_candidates: tuple[str, ...] = ()
    """The accused proofs on whose panel the node sits."""
    distribution_submitters: tuple[str | None, ...] = ()
    """The node selected for each distribution attempt, once the round's judgement window closed."""
    distribution_passed: tuple[bool, ...] = ()
    """Whether each attempt's list is complete and stood its audit."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundFacts:
        """From one round of ``key_rounds``."""
        return cls(**{name: tuple(data.get(name, ())) for name in cls.__slots__})


class _Facts:
    """The ``RoundFacts`` of each round: given (a node's bounded read), or from the whole state."""

    def __init__(self, task: TaskState, me: str, given: Mapping[int, RoundFacts] | None) -> None:
        self.task, self.me, self.given = task, me, given

    def _of(self, round_number: int) -> RoundFacts:
        assert self.given is not None
        return self.given.get(round_number) or RoundFacts()

    def candidates(self, round_number: int) -> Iterable[str]:
        if self.given is not None:
            return self._of(round_number).candidates
        return proof_ring(self.task, round_number).candidates_of(self.me)

    def panel_candidates(self, round_number: int) -> Iterable[str]:
        if self.given is not None:
            return self._of(round_number).panel_candidates
        return proof_ring(self.task, round_number).panel_candidates_of(self.me)

    def selected(self, round_number: int, attempt: int) -> str | None:
        if self.given is None:
            return selected_for(self.task, round_number, attempt)
        chosen = self._of(round_number).distribution_submitters
        return chosen[attempt] if 0 <= attempt < len(chosen) else None

    def passed(self, round_number: int, attempt: int) -> bool:
        if self.given is None:
            return passed_list(self.task, round_number, self.selected(round_number, attempt)) is not None  # type: ignore[arg-type]
        passed = self._of(round_number).distribution_passed
        return passed[attempt] if 0 <= attempt < len(passed) else False


def payout_ready(
    task: TaskState, round_number: int, slot: int, facts: Mapping[int, RoundFacts] | None = None
) -> bool:
    """Whether the ledger would accept ``payout`` for the round at ``slot`` (mirrors its rule)."""
    known = _Facts(task, "", facts)
    for attempt in range(task.allowed_failed_distributions + 1):
        if slot < settle_slot(task, round_number, attempt):
            return False
        if known.passed(round_number, attempt):
            return True
    return True


# --- the schedule -----------------------------------------------------------------------------


def _audit_action(
    kind: ActionKind,
    task: TaskState,
    round_number: int,
    attempt: int,
    candidates: Iterable[tuple[str, str]],
    record: NodeRecord,
    me: str,
) -> Action | None:
    distribution = kind is ActionKind.AUDIT_DISTRIBUTION
    to_audit: list[tuple[str, str]] = []
    votes: list[tuple[str, bool]] = []
    for candidate, value in candidates:
        key = action_key(kind, round_number, candidate)
        if key in record.done or has_voted(task, round_number, candidate, me, distribution=distribution):
            continue
        verdict = record.verdicts.get(key)
        if verdict is None:
            to_audit.append((candidate, value))
            continue
        vote = decide_vote(verdict, is_triggered(task, round_number, candidate, distribution=distribution))
        if vote is not None:
            votes.append((candidate, vote))
    if not to_audit and not votes:
        return None
    return Action(kind, round_number, attempt, candidates=tuple(to_audit), votes=tuple(votes))


def due_actions(
    task: TaskState | Mapping[str, Any],
    slot: int,
    record: NodeRecord,
    me: str,
    facts: Mapping[int, RoundFacts] | None = None,
) -> list[Action]:
    """The actions node ``me`` (its staking key) must take at ``slot``, in the order to take them.

    ``task`` is the task's whole state, or (with ``facts``, per round) the part of it one node reads
    (``GET /tasks/{id}/nodes/{key}``): the same actions either way.
    Nothing here has side effects: running the same call twice gives the same list until the runner
    marks actions done or the ledger state moves on.
    """
    task = as_task_state(task)
    known = _Facts(task, me, facts)
    current = round_of(task, slot)
    if current < 0:
        return []
    offset = slot - round_start(task, current)
    in_submission = offset < task.submission_window
    in_audit = not in_submission and offset < task.submission_window + task.audit_window
    in_judgement = offset >= task.submission_window + task.audit_window
    actions: list[Action] = []
    staked = can_submit(task, me)
    first = record.first_round()

    # Work for the current round.
    if staked and not record.is_done(action_key(ActionKind.RUN_TASK, current)):
        actions.append(Action(ActionKind.RUN_TASK, current))

    # Proofs of the previous round: submit, then audit the candidates the beacon assigned.
    previous = current - 1
    if previous >= 0:
        submissions = task.submissions.get(previous, {})  # type: ignore[call-overload]
        if (
            in_submission
            and staked
            and first is not None
            and first <= previous
            and me not in submissions
            and not record.is_done(action_key(ActionKind.SUBMIT_PROOF, previous))
        ):
            actions.append(Action(ActionKind.SUBMIT_PROOF, previous))
        mine = submissions.get(me)
        if (
            mine is not None
            and not mine.reveal
            and slot in reveal_window(task, previous)
            and not record.is_done(action_key(ActionKind.REVEAL, previous))
        ):
            actions.append(Action(ActionKind.REVEAL, previous))
        voting = slot in audit_window(task, previous)
        if mine is not None and mine.reveal and (voting or slot in judgement_window(task, previous)):
            # The sample may accuse in the audit window; the panel of an accused proof votes until
            # the judgement window closes.
            accused = task.submissions_audit_trigger.get(previous, {})  # type: ignore[call-overload]
            chosen = dict.fromkeys(known.candidates(previous) if voting else [])
            chosen.update(dict.fromkeys(c for c in known.panel_candidates(previous) if c in accused))
            candidates = [(c, submissions[c].submission_value) for c in chosen]
            audit = _audit_action(ActionKind.AUDIT_PROOFS, task, previous, 0, candidates, record, me)
            if audit is not None:
                actions.append(audit)

    # Payout of rounds this node submitted in, once ready; first, so that a list due at the same slot
    # (the next round's) is computed from the stakes after this payout.
    for settled, held in task.submissions.items():
        if (
            settled <= current - 2
            and me in held
            and settled not in task.distributions_audit_record
            and not record.is_done(action_key(ActionKind.PAYOUT, settled))
            and payout_ready(task, settled, slot, facts)
        ):
            actions.append(Action(ActionKind.PAYOUT, settled))
    # Distribution lists: attempt k for round current-2-k.
    for attempt in range(task.allowed_failed_distributions + 1):
        round_number = current - 2 - attempt
        if round_number < 0:
            break
        if round_number in task.distributions_audit_record:
            continue
        submissions = task.submissions.get(round_number, {})  # type: ignore[call-overload]
        if me not in submissions or not submissions[me].reveal:
            continue
        selected = known.selected(round_number, attempt)
        if selected is None:
            continue
        listed = task.distribution_rewards_submission.get(round_number, {})  # type: ignore[call-overload]
        if in_submission:
            if (
                selected == me
                and me not in listed
                and not record.is_done(action_key(ActionKind.SUBMIT_DISTRIBUTION, round_number))
                and not any(known.passed(round_number, earlier) for earlier in range(attempt))
            ):
                actions.append(Action(ActionKind.SUBMIT_DISTRIBUTION, round_number, attempt))
        elif (
            selected != me
            and selected in listed
            and (in_audit or (in_judgement and is_triggered(task, round_number, selected, distribution=True)))
        ):
            window = distribution_window(task, round_number, attempt)
            if listed[selected].slot in window:
                audit = _audit_action(
                    ActionKind.AUDIT_DISTRIBUTION,
                    task,
                    round_number,
                    attempt,
                    [(selected, listed[selected].submission_value)],
                    record,
                    me,
                )
                if audit is not None:
                    actions.append(audit)

    return actions


# --- the two lanes and the windows ------------------------------------------------------------


PHASE_OF = {
    ActionKind.RUN_TASK: "task",
    ActionKind.SUBMIT_PROOF: "submission",
    ActionKind.REVEAL: "reveal",
    ActionKind.AUDIT_PROOFS: "audit",
    ActionKind.SUBMIT_DISTRIBUTION: "distribution",
    ActionKind.AUDIT_DISTRIBUTION: "distribution audit",
    ActionKind.PAYOUT: "payout",
}
"""The phase of the author's code each action runs (``reveal`` and ``payout`` run none)."""


def is_work(action: Action) -> bool:
    """Whether the action runs on the work lane (``task``), beside the other phases."""
    return action.kind is ActionKind.RUN_TASK


def waits_for_work(action: Action, working: int | None) -> bool:
    """Whether ``action`` must wait while ``task(working)`` runs (``working`` is ``None`` when the
    work lane is free): a second ``task()``, and the proof of the round being worked on, wait."""
    if working is None:
        return False
    if action.kind is ActionKind.RUN_TASK:
        return True
    return action.kind is ActionKind.SUBMIT_PROOF and action.round == working


def action_window(task: TaskState, action: Action) -> range:
    """The slots in which the action's phase must end: the window the ledger accepts its
    transaction in (``task``: its own round; ``payout``: from its first chance on)."""
    r, attempt = action.round, action.attempt
    kind = action.kind
    if kind is ActionKind.RUN_TASK:
        return range(round_start(task, r), round_start(task, r + 1))
    if kind is ActionKind.SUBMIT_PROOF:
        return submission_window(task, r)
    if kind is ActionKind.REVEAL:
        return reveal_window(task, r)
    if kind is ActionKind.AUDIT_PROOFS:  # accusations, then the panel's votes until judgement closes
        return range(audit_window(task, r).start, judgement_window(task, r).stop)
    if kind is ActionKind.SUBMIT_DISTRIBUTION:
        return distribution_window(task, r, attempt)
    if kind is ActionKind.AUDIT_DISTRIBUTION:
        return range(distribution_audit_window(task, r, attempt).start, settle_slot(task, r, attempt))
    start = settle_slot(task, r, 0)
    return range(start, start + (1 << 62))


def overrun(task: TaskState, action: Action, started: int, ended: int, seconds: float) -> str | None:
    """``None`` if the action's phase, run from slot ``started`` to slot ``ended`` (``seconds`` of
    wall time), ended inside its window; else what happened, with the numbers."""
    window = action_window(task, action)
    if ended < window.stop:
        return None
    took = ended - started
    return (
        f"{PHASE_OF[action.kind]} of round {action.round} took {took} slot{'s' if took != 1 else ''} "
        f"({seconds:.2f} s, slots {started}-{ended}); its window is {len(window)} slots "
        f"({describe(window)}) and closed before it ended"
    )


__all__ = [
    "PHASE_OF",
    "Action",
    "ActionKind",
    "NodeRecord",
    "RoundFacts",
    "action_key",
    "action_window",
    "as_task_state",
    "can_submit",
    "clear_memos",
    "decide_vote",
    "distribution_bounty",
    "distribution_order",
    "due_actions",
    "has_voted",
    "is_triggered",
    "is_work",
    "list_matches",
    "net_votes",
    "overrun",
    "payout_ready",
    "proof_ring",
    "round_beacon_of",
    "selected_for",
    "submitted_list",
    "submitters_of",
    "waits_for_work",
]
