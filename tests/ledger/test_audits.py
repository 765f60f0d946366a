"""The round beacon, audit assignment, votes and their tally."""

from __future__ import annotations

import pytest

from pykoii.errors import (
    DuplicateVoteError,
    NoAuditTriggerError,
    NotAssignedAuditorError,
    UnknownSubmissionError,
    WrongPhaseError,
)
from pykoii.ledger import audit_assignments, audit_ring, beacon_of, round_beacon, submission_is_valid
from pykoii.ledger.audits import ring_for
from pykoii.ledger.bounds import DEFAULT_ESCALATION_SIZE
from pykoii.ledger.rounds import audit_window, judgement_window

from .helpers import World, assert_rejected


def test_beacon_is_a_hash_of_task_round_and_submissions():
    first = beacon_of("task", 3, {"a": "x", "b": "y"})
    assert first == beacon_of("task", 3, {"b": "y", "a": "x"})
    assert first != beacon_of("task", 4, {"a": "x", "b": "y"})
    assert first != beacon_of("task", 3, {"a": "x", "b": "z"})
    assert len(first) == 64


def test_round_beacon_is_stored_only_with_a_state():
    world = World(node_count=3)
    world.submit_all(0)
    computed = round_beacon(None, world.task, 0)
    assert world.task.round_beacons == {}
    assert round_beacon(world.state, world.task, 0) == computed
    assert world.task.round_beacons == {0: computed}


@pytest.mark.parametrize(("nodes", "sample_size"), [(1, 5), (2, 5), (5, 5), (9, 3), (20, 5)])
def test_assignment_never_self_and_balanced(nodes, sample_size):
    world = World(node_count=nodes, sample_size=sample_size)
    world.submit_all(0)
    assignments = audit_assignments(world.task, 0)
    ring = audit_ring(None, world.task, 0)
    expected = min(sample_size, nodes - 1)
    assert set(assignments) == set(world.nodes)
    for candidate, auditors in assignments.items():
        assert candidate not in auditors and len(set(auditors)) == expected
        for auditor in world.nodes:
            assert ring.is_assigned(auditor, candidate) == (auditor in auditors)
    for auditor in world.nodes:
        assert len(ring.candidates_of(auditor)) == expected
        assert all(auditor in assignments[c] for c in ring.candidates_of(auditor))
    assert ring.candidates_of(world.outsider) == [] and not ring.is_assigned(world.outsider, world.nodes[0])


def test_ring_order_is_the_hash_order_and_does_not_depend_on_input_order():
    keys = [f"k{i}" for i in range(6)]
    assert sorted(ring_for("beacon-x", keys, 2).order) == sorted(keys)
    assert ring_for("beacon-x", keys, 2).order == ring_for("beacon-x", list(reversed(keys)), 2).order


def test_false_vote_raises_a_trigger_and_true_votes_defend():
    world = World(node_count=5)
    world.submit_all(0)
    candidate = world.nodes[0]
    auditors = audit_ring(None, world.task, 0).auditors_of(candidate)
    receipt = world.apply("audit_submission", auditors[0], 15, round=0, candidate=candidate, is_valid=False)
    assert [e.kind for e in receipt.events] == ["AuditTriggered", "VoteCast"]
    trigger = world.task.submissions_audit_trigger[0][candidate]
    assert trigger.trigger_by == auditors[0] and trigger.slot == 15 and list(trigger.votes) == [auditors[0]]
    assert not submission_is_valid(world.task, 0, candidate)  # 1 false, 0 true
    receipt = world.apply("audit_submission", auditors[1], 15, round=0, candidate=candidate, is_valid=True)
    assert [e.kind for e in receipt.events] == ["VoteCast"]
    assert submission_is_valid(world.task, 0, candidate)  # a tie stands
    world.apply("audit_submission", auditors[2], 16, round=0, candidate=candidate, is_valid=False)
    assert not submission_is_valid(world.task, 0, candidate)  # 2 false, 1 true
    assert submission_is_valid(world.task, 0, world.nodes[1])  # never accused


def test_audit_window_edges():
    world = World(node_count=3)
    world.submit_all(0)
    candidate = world.nodes[0]
    auditor = audit_ring(None, world.task, 0).auditors_of(candidate)[0]
    for slot in (14, 21):
        assert_rejected(
            world.state,
            WrongPhaseError,
            "audit_submission",
            auditor,
            slot,
            (
                f"audit for round 0 arrived at slot {slot}",
                "round 0 accepts audits in slots 15–16 and votes on accused proofs until slot 20",
            ),
            task_id=world.task_id,
            round=0,
            candidate=candidate,
            is_valid=False,
        )
    world.apply("audit_submission", auditor, 16, round=0, candidate=candidate, is_valid=False)


def test_vote_on_a_candidate_without_a_submission():
    world = World(node_count=3)
    world.submit_all(0)
    assert_rejected(
        world.state,
        UnknownSubmissionError,
        "audit_submission",
        world.nodes[0],
        15,
        (f"{world.outsider} has no submission in round 0",),
        task_id=world.task_id,
        round=0,
        candidate=world.outsider,
        is_valid=False,
    )


def test_only_assigned_auditors_vote():
    world = World(node_count=6, sample_size=2)
    world.submit_all(0)
    candidate = world.nodes[0]
    ring = audit_ring(None, world.task, 0)
    stranger = next(n for n in world.nodes if n != candidate and not ring.is_assigned(n, candidate))
    for voter in (stranger, candidate, world.outsider):
        assert_rejected(
            world.state,
            NotAssignedAuditorError,
            "audit_submission",
            voter,
            15,
            (
                f"{voter} is not assigned to audit {candidate} in round 0",
                "its auditors are " + ", ".join(ring.auditors_of(candidate)),
            ),
            task_id=world.task_id,
            round=0,
            candidate=candidate,
            is_valid=False,
        )


def test_one_vote_per_voter_per_candidate():
    world = World(node_count=3)
    world.submit_all(0)
    candidate = world.nodes[0]
    voter = world.accuse(0, candidate)[0]
    assert_rejected(
        world.state,
        DuplicateVoteError,
        "audit_submission",
        voter,
        15,
        (f"{voter} already voted on {candidate}'s submission for round 0",),
        task_id=world.task_id,
        round=0,
        candidate=candidate,
        is_valid=True,
    )


def test_true_vote_needs_a_trigger():
    world = World(node_count=3)
    world.submit_all(0)
    candidate = world.nodes[0]
    auditor = audit_ring(None, world.task, 0).auditors_of(candidate)[0]
    assert_rejected(
        world.state,
        NoAuditTriggerError,
        "audit_submission",
        auditor,
        15,
        (
            f"nobody has accused {candidate}'s submission for round 0",
            "a true vote is accepted only on a triggered candidate",
        ),
        task_id=world.task_id,
        round=0,
        candidate=candidate,
        is_valid=True,
    )


# --- issue 16: an assignment no participant can choose, time to defend, escalation -----------------


def test_the_last_submitter_cannot_grind_its_auditors_with_its_proof():
    """Regression: the beacon hashed every proof, so the last submitter tried proof values off-line
    until its sample held its colluders. Now the beacon hashes only revealed secrets, each committed
    before any was revealed: the proof value no longer moves the assignment."""
    rings = []
    for value in ("garbage-1", "garbage-2", "garbage-3", "Hello, World!"):
        world = World(node_count=9)
        world.submit_all(0, {world.nodes[8]: value})
        rings.append(audit_ring(None, world.task, 0).order)
    assert len(set(rings)) == 1


def test_withholding_a_reveal_costs_the_submitter_its_proof():
    world = World(node_count=4)
    world.submit_all(0, reveal=False)
    withholder = world.nodes[0]
    world.reveal_all(0, world.nodes[1:])
    assert not submission_is_valid(world.task, 0, withholder)
    assert withholder not in audit_ring(None, world.task, 0).order  # and it audits nobody
    assert all(submission_is_valid(world.task, 0, node) for node in world.nodes[1:])


def test_an_accusation_in_the_last_audit_slot_leaves_the_whole_judgement_window_to_defend():
    """Regression: a false vote in the last slot of the audit window left no slot for a defender's
    true vote, so 1 false vs 0 true stood and the honest node lost 70 % of its stake."""
    world = World(node_count=6, sample_size=2)
    victim = world.nodes[0]
    world.submit_all(0)
    ring = audit_ring(None, world.task, 0)
    accuser, *defenders = ring.panel_of(victim)
    last = audit_window(world.task, 0).stop - 1
    world.apply("audit_submission", accuser, last, round=0, candidate=victim, is_valid=False)
    assert not submission_is_valid(world.task, 0, victim)
    judging = judgement_window(world.task, 0)
    for defender in defenders:
        world.apply("audit_submission", defender, judging.stop - 1, round=0, candidate=victim, is_valid=True)
    assert submission_is_valid(world.task, 0, victim)


def test_the_default_escalation_panel_beats_20_percent_colluders():
    """``escalation_size`` 33: 20 % colluders win a majority of the panel's votes with probability
    P(Bin(33, 0.2) >= 17) < 1e-3 per accused proof (when honest members vote)."""
    from math import comb

    n = DEFAULT_ESCALATION_SIZE
    colluders_win = sum(comb(n, k) * 0.2**k * 0.8 ** (n - k) for k in range(n // 2 + 1, n + 1))
    assert colluders_win < 1e-3
    sample_only = sum(comb(5, k) * 0.2**k * 0.8 ** (5 - k) for k in range(3, 6))
    assert sample_only > 0.05  # what the 5-auditor sample alone gave (the 5.8 %)
