"""Round math, exactly as the seed's "Stacking Rounds" diagram.

Round ``r`` of a task covers slots ``[starting_slot + r*round_time, starting_slot + (r+1)*round_time)``.
Rounds stack: during round ``R`` a node works on ``R``, submits and audits proofs of ``R-1`` and
submits and audits the distribution list of ``R-2``::

    round R:  | submission_window | audit_window | delay ... |
    work R    |<------------------------------------------->|
    proofs    |  submit R-1       |  audit R-1   |           |
    lists     |  list for R-2     |  audit list  |  payout   |

Windows are half-open ranges of slots. The diagram prints its window check with strict
inequalities on both ends joined by ``||``, which is true for almost any slot; we read it as the
interval it means (koii-reference §1.2) and make its start inclusive, so that a window of
``submission_window`` slots holds exactly that many slots.

A distribution list that fails its audit, or never arrives, is retried by the next selected node in
the next round's windows: attempt ``k`` for round ``r`` runs in round ``r + 2 + k``, for ``k`` up to
``allowed_failed_distributions``.
"""

from __future__ import annotations

import enum

from .state import TaskState


class Phase(enum.Enum):
    """Where a slot falls inside its round."""

    SUBMISSION = "submission"
    """The first ``submission_window`` slots: proofs of R-1 and the list of R-2 are submitted."""
    AUDIT = "audit"
    """The next ``audit_window`` slots: proofs of R-1 and the list of R-2 are audited."""
    DELAY = "delay"
    """The rest of the round: the judgement window (the panels of accused proofs of R-1 and of an
    accused list of R-2 still vote; no new accusations); payouts happen."""


def round_of(task: TaskState, slot: int) -> int:
    """The round that ``slot`` falls in (``-1`` before the task's starting slot).

    >>> # starting slot 0, round time 10: slot 45 is in round 4.
    """
    return (slot - task.starting_slot) // task.round_time


def submission_round(task: TaskState, slot: int) -> int:
    """``s(slot)`` of the diagram: the round whose proofs are submitted and audited at ``slot``."""
    return round_of(task, slot) - 1


def distribution_round(task: TaskState, slot: int) -> int:
    """``d(slot)`` of the diagram: the round whose distribution is handled at ``slot``.

    The diagram's example: starting slot 0, round time 10, slot 45 → round 2.
    """
    return round_of(task, slot) - 2


def round_start(task: TaskState, round_number: int) -> int:
    """The first slot of ``round_number``."""
    return task.starting_slot + round_number * task.round_time


def phase_of(task: TaskState, slot: int) -> Phase:
    """The phase of its round that ``slot`` falls in."""
    offset = slot - round_start(task, round_of(task, slot))
    if offset < task.submission_window:
        return Phase.SUBMISSION
    if offset < task.submission_window + task.audit_window:
        return Phase.AUDIT
    return Phase.DELAY


def submission_window(task: TaskState, round_number: int) -> range:
    """Slots in which proofs for ``round_number`` are accepted: the start of the next round."""
    start = round_start(task, round_number + 1)
    return range(start, start + task.submission_window)


def reveal_slots(task: TaskState) -> int:
    """How many slots of the audit window take reveals: half of it, rounded down, at least 1; the
    other half is the auditors'. It grows with the audit window an author sets, so a task with many
    submitters gives their reveals as much time as their votes (a fixed cap of 4 slots refused half
    of 1,000 nodes' reveals on a loaded machine, and an unrevealed proof is judged invalid)."""
    return max(1, task.audit_window // 2)


def reveal_window(task: TaskState, round_number: int) -> range:
    """Slots in which submitters of ``round_number`` reveal their beacon secrets: the start of the
    audit window, once every commitment is fixed. The beacon is fixed when it closes."""
    start = round_start(task, round_number + 1) + task.submission_window
    return range(start, start + reveal_slots(task))


def audit_window(task: TaskState, round_number: int) -> range:
    """Slots in which proofs for ``round_number`` are accused and voted on: the audit window after
    its reveals."""
    start = round_start(task, round_number + 1) + task.submission_window
    return range(start + reveal_slots(task), start + task.audit_window)


def judgement_window(task: TaskState, round_number: int) -> range:
    """Slots after the audit window in which the panel of an accused proof still votes (no new
    accusations): every defender has this whole window, however late the accusation came."""
    start = round_start(task, round_number + 1) + task.submission_window + task.audit_window
    return range(start, round_start(task, round_number + 2))


def distribution_window(task: TaskState, round_number: int, attempt: int = 0) -> range:
    """Slots in which distribution list ``attempt`` (0 first) for ``round_number`` is submitted."""
    start = round_start(task, round_number + 2 + attempt)
    return range(start, start + task.submission_window)


def distribution_audit_window(task: TaskState, round_number: int, attempt: int = 0) -> range:
    """Slots in which distribution list ``attempt`` for ``round_number`` is audited."""
    start = round_start(task, round_number + 2 + attempt) + task.submission_window
    return range(start, start + task.audit_window)


def distribution_judgement_window(task: TaskState, round_number: int, attempt: int = 0) -> range:
    """Slots after a list's audit window in which votes on an accused list are still taken: the rest
    of its round but the last slot, which is left to payout."""
    start = round_start(task, round_number + 2 + attempt) + task.submission_window + task.audit_window
    return range(start, settle_slot(task, round_number, attempt))


def settle_slot(task: TaskState, round_number: int, attempt: int = 0) -> int:
    """The first slot at which distribution ``attempt`` of a round is decided (its judgement closed):
    the last slot of the attempt's round, so that the round is paid before the next round's list is
    computed (at the next slot) from the stakes it leaves."""
    return round_start(task, round_number + 3 + attempt) - 1


def distribution_attempt(task: TaskState, round_number: int, slot: int) -> int:
    """Which distribution attempt for ``round_number`` the round of ``slot`` hosts (may be out of range)."""
    return round_of(task, slot) - round_number - 2


def describe(window: range) -> str:
    """A window as people read it: ``slots 2801–2850`` (both ends included)."""
    return f"slots {window.start}–{window.stop - 1}"
