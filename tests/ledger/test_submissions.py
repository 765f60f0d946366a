"""submit: window, size, stake, once per node per round."""

from __future__ import annotations

from pykoii.errors import (
    DuplicateSubmissionError,
    InsufficientStakeError,
    MalformedTransactionError,
    NotStakedError,
    SubmissionTooLargeError,
    TaskNotRunnableError,
    WrongPhaseError,
)
from pykoii.ledger.types import MAX_SUBMISSION_BYTES

from .helpers import World, assert_rejected


def test_submit_records_value_slot_round_and_lock():
    world = World(node_count=2)
    node = world.nodes[0]
    receipt = world.apply("submit", node, 12, round=0, submission_value="Hello, World!")
    sub = world.task.submissions[0][node]
    assert (sub.submission_value, sub.slot, sub.round) == ("Hello, World!", 12, 0)
    assert world.task.last_submission_round[node] == 0
    assert receipt.events[0].kind == "Submitted"


def test_submit_accepts_exactly_512_bytes_of_utf8():
    world = World(node_count=2)
    world.apply("submit", world.nodes[0], 11, round=0, submission_value="é" * (MAX_SUBMISSION_BYTES // 2))
    assert_rejected(
        world.state,
        SubmissionTooLargeError,
        "submit",
        world.nodes[1],
        11,
        ("submission_value is 514 bytes; at most 512 bytes of UTF-8 are accepted",),
        task_id=world.task_id,
        round=0,
        submission_value="é" * 257,
    )


def test_submit_window_edges():
    world = World(node_count=2)
    node = world.nodes[0]
    for slot in (10, 14, 21):
        assert_rejected(
            world.state,
            WrongPhaseError,
            "submit",
            node,
            slot,
            (f"submission for round 0 arrived at slot {slot}", "round 0 accepts submissions in slots 11–13"),
            task_id=world.task_id,
            round=0,
            submission_value="x",
        )
    world.apply("submit", node, 13, round=0, submission_value="x")


def test_submit_for_a_round_before_the_task_is_refused():
    """Regression: round -1's window is round 0's, so proofs of work from before the task existed
    were accepted (and could be paid)."""
    world = World(node_count=1)
    assert_rejected(
        world.state,
        MalformedTransactionError,
        "submit",
        world.nodes[0],
        2,
        ("submit.round is -1", "accepted: an integer from 0 to 9223372036854775807"),
        task_id=world.task_id,
        round=-1,
        submission_value="x",
    )


def test_submit_once_per_node_per_round():
    world = World(node_count=2)
    world.apply("submit", world.nodes[0], 11, round=0, submission_value="a")
    assert_rejected(
        world.state,
        DuplicateSubmissionError,
        "submit",
        world.nodes[0],
        12,
        (f"{world.nodes[0]} already submitted for round 0 at slot 11", "one submission per node per round"),
        task_id=world.task_id,
        round=0,
        submission_value="b",
    )


def test_submit_needs_a_stake():
    world = World(node_count=1)
    assert_rejected(
        world.state,
        NotStakedError,
        "submit",
        world.outsider,
        11,
        (f"{world.outsider} has no stake on task", "stake first"),
        task_id=world.task_id,
        round=0,
        submission_value="x",
    )


def test_submit_needs_the_minimum_stake():
    world = World(node_count=3)
    faulty = world.nodes[0]
    world.submit_all(0, {faulty: "wrong"})
    world.accuse(0, faulty)
    world.submit_list(0)
    world.apply("payout", world.outsider, 31, round=0)  # 70 % of 5 KOII slashed: 1.5 KOII left
    assert_rejected(
        world.state,
        InsufficientStakeError,
        "submit",
        faulty,
        31,
        ("has 1.5 KOII (1500000000 ROE) staked, below the minimum_stake_amount of 2 KOII", "stake more"),
        task_id=world.task_id,
        round=2,
        submission_value="x",
    )


def test_submit_needs_an_active_task():
    world = World(node_count=1)
    world.apply("set_active", world.manager, 5, is_active=False)
    assert_rejected(
        world.state,
        TaskNotRunnableError,
        "submit",
        world.nodes[0],
        11,
        ("is inactive",),
        task_id=world.task_id,
        round=0,
        submission_value="x",
    )
