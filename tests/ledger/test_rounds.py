"""Round math, checked against the seed's "Stacking Rounds" diagram and at every window edge."""

from __future__ import annotations

import pytest

from pykoii.ledger import (
    Phase,
    audit_window,
    distribution_audit_window,
    distribution_round,
    distribution_window,
    phase_of,
    round_of,
    submission_round,
    submission_window,
)
from pykoii.ledger.rounds import (
    describe,
    distribution_attempt,
    distribution_judgement_window,
    judgement_window,
    reveal_window,
    round_start,
    settle_slot,
)

from .helpers import HELLO_TASK, World


def diagram_task(
    starting_slot: int = 0, round_time: int = 10, submission_window: int = 3, audit_window: int = 3
):
    world = World(node_count=1)
    task = world.task
    task.starting_slot = starting_slot
    task.round_time = round_time
    task.submission_window = submission_window
    task.audit_window = audit_window
    return task


def test_diagram_worked_example_slot_45_is_distribution_round_2():
    task = diagram_task(starting_slot=0, round_time=10)
    assert round_of(task, 45) == 4
    assert distribution_round(task, 45) == 2  # parseInt(4.5) - 2
    assert submission_round(task, 45) == 3  # parseInt(4.5) - 1


@pytest.mark.parametrize(
    ("slot", "round_number"),
    [(0, 0), (9, 0), (10, 1), (19, 1), (20, 2), (45, 4), (-1, -1), (-10, -1), (-11, -2)],
)
def test_round_of_is_floor_of_slots_since_start(slot, round_number):
    assert round_of(diagram_task(), slot) == round_number


def test_round_of_counts_from_the_starting_slot():
    task = diagram_task(starting_slot=7)
    assert round_of(task, 7) == 0
    assert round_of(task, 16) == 0
    assert round_of(task, 17) == 1
    assert round_start(task, 3) == 37


def test_diagram_rows_stack_one_round_apart():
    """Round R's proofs are handled in round R+1 and its distribution in round R+2 (the diagram)."""
    task = diagram_task()
    for r in range(4):
        assert submission_window(task, r).start == round_start(task, r + 1)
        assert distribution_window(task, r).start == round_start(task, r + 2)
        assert submission_round(task, submission_window(task, r).start) == r
        assert distribution_round(task, distribution_window(task, r).start) == r


def test_windows_are_half_open_and_hold_exactly_their_length():
    task = diagram_task(round_time=10, submission_window=3, audit_window=4)
    assert submission_window(task, 2) == range(30, 33)
    assert reveal_window(task, 2) == range(33, 35)  # the first half of the audit window
    assert audit_window(task, 2) == range(35, 37)  # then accusations and votes
    assert judgement_window(task, 2) == range(37, 40)  # the rest of the round: votes on the accused
    assert distribution_window(task, 2) == range(40, 43)
    assert distribution_audit_window(task, 2) == range(43, 47)
    assert distribution_judgement_window(task, 2) == range(47, 49)
    assert settle_slot(task, 2) == 49  # the last slot of the list's round is left to payout
    assert (
        len(submission_window(task, 2)) == 3 and len(reveal_window(task, 2)) + len(audit_window(task, 2)) == 4
    )


@pytest.mark.parametrize(
    ("slot", "phase"),
    [
        (30, Phase.SUBMISSION),
        (32, Phase.SUBMISSION),
        (33, Phase.AUDIT),
        (36, Phase.AUDIT),
        (37, Phase.DELAY),
        (39, Phase.DELAY),
        (40, Phase.SUBMISSION),
    ],
)
def test_phase_edges(slot, phase):
    assert phase_of(diagram_task(round_time=10, submission_window=3, audit_window=4), slot) is phase


def test_window_with_no_delay_fills_the_round():
    task = diagram_task(round_time=6, submission_window=3, audit_window=3)
    assert audit_window(task, 0).stop == round_start(task, 2)
    assert phase_of(task, 11) is Phase.AUDIT and phase_of(task, 12) is Phase.SUBMISSION


def test_distribution_attempts_move_one_round_each():
    task = diagram_task()
    assert distribution_window(task, 1, attempt=0) == range(30, 33)
    assert distribution_window(task, 1, attempt=2) == range(50, 53)
    assert distribution_audit_window(task, 1, attempt=1) == range(43, 46)
    assert distribution_attempt(task, 1, 30) == 0
    assert distribution_attempt(task, 1, 52) == 2
    assert distribution_attempt(task, 1, 25) == -1


def test_describe_names_both_ends_inclusive():
    assert describe(range(2801, 2851)) == "slots 2801–2850"


def test_world_task_matches_its_documented_windows():
    task = World(node_count=1).task
    assert task.starting_slot == 1 and task.round_time == HELLO_TASK["round_time"]
    assert submission_window(task, 0) == range(11, 14)
    assert reveal_window(task, 0) == range(14, 15)
    assert audit_window(task, 0) == range(15, 17)
    assert judgement_window(task, 0) == range(17, 21)
    assert distribution_window(task, 0) == range(21, 24)
    assert distribution_audit_window(task, 0) == range(24, 27)
