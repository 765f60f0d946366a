"""Where a slot falls in a task's round, from the task's plain JSON numbers, for people.

The same arithmetic as ``pykoii.ledger.rounds`` (round ``r`` covers slots
``[starting_slot + r*round_time, starting_slot + (r+1)*round_time)``; a round opens with its
submission window, then its audit window, then the rest), plus what comes next and how long until.
"""

from __future__ import annotations

from typing import Any


def round_timing(task: dict[str, Any], slot: int, slot_ms: int) -> dict[str, Any]:
    """``{round, phase, doing, next, slots_left, ms_left}`` for ``task`` at ``slot``."""
    start, length = int(task["starting_slot"]), int(task["round_time"])
    submission, audit = int(task["submission_window"]), int(task["audit_window"])
    if slot < start:
        left = start - slot
        return {
            "round": -1,
            "phase": "not started",
            "doing": "the task has not started yet",
            "next": "round 0 begins",
            "slots_left": left,
            "ms_left": left * slot_ms,
        }
    number = (slot - start) // length
    offset = slot - start - number * length
    if offset < submission:
        phase, boundary, following = "submission", submission, "audit window"
        doing = f"proofs of round {number - 1} and the distribution list of round {number - 2} are submitted"
    elif offset < submission + audit:
        phase, boundary, following = "audit", submission + audit, "rest of the round (payouts)"
        doing = f"proofs of round {number - 1} and the distribution list of round {number - 2} are audited"
    else:
        phase, boundary, following = "delay", length, f"round {number + 1}'s submission window"
        doing = f"round {number - 2} can be paid out; work on round {number} continues"
    left = boundary - offset
    return {
        "round": number,
        "phase": phase,
        "doing": doing,
        "next": following,
        "slots_left": left,
        "ms_left": left * slot_ms,
    }


def round_start(task: dict[str, Any], number: int) -> int:
    """The first slot of round ``number``."""
    return int(task["starting_slot"]) + number * int(task["round_time"])
