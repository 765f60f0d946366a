"""The default distribution, who submits a list, its audit, and payout with retries and failure."""

from __future__ import annotations

from pykoii.errors import (
    AlreadyPaidError,
    DuplicateSubmissionError,
    DuplicateVoteError,
    InvalidDistributionListError,
    NoAuditTriggerError,
    NotAssignedAuditorError,
    NotSelectedSubmitterError,
    PayoutNotReadyError,
    UnknownSubmissionError,
    WrongPhaseError,
)
from pykoii.ledger import (
    audit_ring,
    default_distribution,
    default_distribution_for,
    distribution_candidates,
    judged_submitters,
    selected_submitter,
    state_root,
)
from pykoii.ledger.distribution import ROUNDS_KEPT, distribution_transactions, list_root
from pykoii.ledger.state import copy_state

from .helpers import KOII, STAKE, World, apply, assert_rejected

COMMIT = {"root": "ab" * 32, "chunks": 1}
"""A well-formed commitment, for refusals that come before the root matters."""


def test_default_distribution_is_the_seed_rule():
    dist = default_distribution({"a": True, "b": False, "c": True, "d": True}, {"b": 1001, "a": 5}, 10)
    assert dist.rewards == {"a": 3, "c": 3, "d": 3}  # floor(10 / 3)
    assert dist.slashes == {"b": 700}  # floor(70 % of 1001)
    nobody_valid = default_distribution({"a": False}, {"a": 10}, 10)
    assert nobody_valid.rewards == {} and nobody_valid.slashes == {"a": 7}


def test_default_distribution_for_reads_judgements_and_stakes():
    world = World()
    faulty = world.nodes[2]
    world.submit_all(0, {faulty: "wrong"})
    world.accuse(0, faulty, voters=2)
    assert judged_submitters(world.task, 0) == {n: n != faulty for n in world.nodes}
    dist = default_distribution_for(world.task, 0)
    assert dist.slashes == {faulty: STAKE * 70 // 100}
    assert set(dist.rewards) == set(world.nodes) - {faulty} and set(dist.rewards.values()) == {10 * KOII // 4}


def test_candidates_are_valid_submitters_in_beacon_order():
    world = World()
    faulty = world.nodes[2]
    world.submit_all(0, {faulty: "wrong"})
    world.accuse(0, faulty)
    ring = audit_ring(None, world.task, 0)
    candidates = distribution_candidates(None, world.task, 0)
    assert candidates == [n for n in ring.order if n != faulty]
    assert [selected_submitter(None, world.task, 0, k) for k in range(4)] == candidates[:4]
    assert selected_submitter(None, world.task, 0, 4) is None  # past allowed_failed_distributions = 3
    assert selected_submitter(None, world.task, 0, -1) is None
    # The first ``count`` only: the same order, the walk stopped early (and all of it past the end).
    assert [distribution_candidates(None, world.task, 0, k) for k in (1, 2, 99)] == [
        candidates[:1],
        candidates[:2],
        candidates,
    ]


def test_when_nobody_stood_every_submitter_is_a_candidate():
    world = World(node_count=2)
    world.submit_all(0, {n: "wrong" for n in world.nodes})
    for node in world.nodes:
        world.accuse(0, node)
    order = list(audit_ring(None, world.task, 0).order)
    assert distribution_candidates(None, world.task, 0) == order
    assert distribution_candidates(None, world.task, 0, 1) == order[:1]
    assert [selected_submitter(None, world.task, 0, k) for k in range(3)] == [*order, None]


def test_selected_node_submits_and_payout_pays_once():
    world = World()
    faulty = world.nodes[1]
    world.submit_all(0, {faulty: "wrong"})
    world.accuse(0, faulty, voters=3)
    chosen = world.submit_list(0)
    dist = default_distribution_for(world.task, 0)
    assert world.task.distribution_rewards_submission[0][chosen].submission_value == list_root(
        dist.rewards, dist.slashes
    )
    receipt = world.apply("payout", world.outsider, 31, round=0)
    (paid,) = receipt.events
    assert paid.kind == "RoundPaid" and paid.root == list_root(dist.rewards, dist.slashes)
    assert (paid.rewarded, paid.slashed, paid.capped) == (4, 1, {})
    assert (paid.reward_total, paid.slash_total) == (10 * KOII // 4 * 4, STAKE * 70 // 100)
    task = world.task
    assert task.stake_list[faulty] == STAKE - STAKE * 70 // 100
    assert task.total_stake_amount == sum(task.stake_list.values())
    assert task.total_bounty_amount == 100 * KOII - 10 * KOII + STAKE * 70 // 100
    assert task.distributions_audit_record == {0: "PayoutSuccessful"}
    assert_rejected(
        world.state,
        AlreadyPaidError,
        "payout",
        world.outsider,
        28,
        (f"round 0 of task {world.task_id} was already settled: PayoutSuccessful",),
        task_id=world.task_id,
        round=0,
    )


def test_distribution_window_edges_and_settled_rounds():
    world = World(node_count=3)
    world.submit_all(0)
    chosen = selected_submitter(None, world.task, 0, 0)
    for slot in (20, 24):
        assert_rejected(
            world.state,
            WrongPhaseError,
            "submit_distribution",
            chosen,
            slot,
            (
                f"distribution list for round 0 arrived at slot {slot}",
                "round 0 accepts distribution lists in slots 21–23",
            ),
            task_id=world.task_id,
            round=0,
            **COMMIT,
        )
    # Attempts past allowed_failed_distributions (3) have no window: round 0 + 2 + 4 = round 6.
    assert_rejected(
        world.state,
        WrongPhaseError,
        "submit_distribution",
        chosen,
        61,
        ("arrived at slot 61", "in slots 51–53"),
        task_id=world.task_id,
        round=0,
        **COMMIT,
    )
    world.submit_list(0)
    world.apply("payout", world.outsider, 31, round=0)
    assert_rejected(
        world.state,
        AlreadyPaidError,
        "submit_distribution",
        chosen,
        31,
        ("was already settled: PayoutSuccessful",),
        task_id=world.task_id,
        round=0,
        **COMMIT,
    )


def test_list_for_a_round_without_submissions():
    world = World(node_count=2)
    assert_rejected(
        world.state,
        UnknownSubmissionError,
        "submit_distribution",
        world.nodes[0],
        21,
        (f"round 0 of task {world.task_id} has no submissions, so it has no distribution",),
        task_id=world.task_id,
        round=0,
        **COMMIT,
    )


def test_only_the_selected_node_submits_and_only_once():
    world = World(node_count=3)
    world.submit_all(0)
    chosen = selected_submitter(None, world.task, 0, 0)
    other = world.other_submitter(0, chosen)
    assert_rejected(
        world.state,
        NotSelectedSubmitterError,
        "submit_distribution",
        other,
        21,
        (f"attempt 0 of round 0's distribution belongs to {chosen}, not {other}",),
        task_id=world.task_id,
        round=0,
        **COMMIT,
    )
    world.submit_list(0)
    assert_rejected(
        world.state,
        DuplicateSubmissionError,
        "submit_distribution",
        chosen,
        22,
        (f"{chosen} already submitted a distribution list for round 0",),
        task_id=world.task_id,
        round=0,
        **COMMIT,
    )


def test_no_retry_after_a_list_stood_its_audit():
    world = World(node_count=3)
    world.submit_all(0)
    world.submit_list(0)
    second = selected_submitter(None, world.task, 0, 1)
    assert_rejected(
        world.state,
        DuplicateSubmissionError,
        "submit_distribution",
        second,
        31,
        ("the list of attempt 0 for round 0 stood its audit; send payout instead",),
        task_id=world.task_id,
        round=0,
        **COMMIT,
    )


def test_invalid_lists():
    world = World(node_count=3)
    world.submit_all(0)
    chosen = selected_submitter(None, world.task, 0, 0)
    node = world.nodes[0]
    cases = [
        (
            {"rewards": {world.outsider: 1}},
            f"rewards names {world.outsider}, which did not submit in round 0",
        ),
        ({"slashes": {node: -1}}, f"slashes[{node}] is -1; amounts are non-negative integers of ROE"),
        (
            {"rewards": {node: 10 * KOII + 1}},
            "rewards sum to 10.000000001 KOII",
            "round 0 may pay at most 10 KOII",
            "bounty_amount_per_round 10 KOII",
        ),
        ({"slashes": {node: STAKE + 1}}, f"slashes[{node}] is 5.000000001 KOII", "its stake is 5 KOII"),
    ]
    for fields, *fragments in cases:
        commit, chunk = distribution_transactions(
            world.task_id, 0, fields.get("rewards", {}), fields.get("slashes", {})
        )
        committed = World.__new__(World)
        committed.state, committed.task_id = copy_state(world.state), world.task_id
        committed.apply(commit.pop("type"), chosen, 21, **commit)
        assert_rejected(
            committed.state,
            InvalidDistributionListError,
            chunk.pop("type"),
            chosen,
            21,
            tuple(fragments),
            **chunk,
        )


def test_distribution_audit_rules():
    world = World(node_count=3)
    world.submit_all(0)
    chosen = world.submit_list(0)
    voter = world.other_submitter(0, chosen)
    tid = world.task_id
    assert_rejected(
        world.state,
        UnknownSubmissionError,
        "audit_distribution",
        voter,
        24,
        (f"{voter} submitted no distribution list for round 0",),
        task_id=tid,
        round=0,
        candidate=voter,
        is_valid=False,
    )
    for slot in (23, 27):
        assert_rejected(
            world.state,
            WrongPhaseError,
            "audit_distribution",
            voter,
            slot,
            (f"distribution audit for round 0 arrived at slot {slot}", "in slots 24–26"),
            task_id=tid,
            round=0,
            candidate=chosen,
            is_valid=False,
        )
    for stranger in (chosen, world.outsider):
        assert_rejected(
            world.state,
            NotAssignedAuditorError,
            "audit_distribution",
            stranger,
            24,
            (
                f"{stranger} may not audit round 0's distribution list",
                "only the round's other submitters that revealed audit it",
            ),
            task_id=tid,
            round=0,
            candidate=chosen,
            is_valid=False,
        )
    assert_rejected(
        world.state,
        NoAuditTriggerError,
        "audit_distribution",
        voter,
        24,
        (f"nobody has accused {chosen}'s distribution for round 0",),
        task_id=tid,
        round=0,
        candidate=chosen,
        is_valid=True,
    )
    receipt = world.apply("audit_distribution", voter, 24, round=0, candidate=chosen, is_valid=False)
    assert [e.kind for e in receipt.events] == ["AuditTriggered", "VoteCast"]
    assert_rejected(
        world.state,
        DuplicateVoteError,
        "audit_distribution",
        voter,
        25,
        (f"{voter} already voted on {chosen}'s distribution for round 0",),
        task_id=tid,
        round=0,
        candidate=chosen,
        is_valid=False,
    )


def test_payout_not_ready():
    world = World(node_count=3)
    assert_rejected(
        world.state,
        PayoutNotReadyError,
        "payout",
        world.outsider,
        30,
        ("round 0 of task", "has no submissions, so there is nothing to pay"),
        task_id=world.task_id,
        round=0,
    )
    world.submit_all(0)
    world.submit_list(0)
    assert_rejected(
        world.state,
        PayoutNotReadyError,
        "payout",
        world.outsider,
        29,
        (
            "round 0's distribution list (attempt 0) is audited in slots 24–26 and judged until slot 29",
            "payout is accepted from slot 30, now slot 29",
        ),
        task_id=world.task_id,
        round=0,
    )


def test_failed_list_is_retried_by_the_next_candidate():
    world = World(node_count=4)
    world.submit_all(0)
    first = world.submit_list(0)
    for voter in [n for n in world.nodes if n != first][:2]:
        world.apply("audit_distribution", voter, 25, round=0, candidate=first, is_valid=False)
    assert_rejected(
        world.state,
        PayoutNotReadyError,
        "payout",
        world.outsider,
        31,
        ("(attempt 1) is audited in slots 34–36 and judged until slot 39", "accepted from slot 40"),
        task_id=world.task_id,
        round=0,
    )
    second = world.submit_list(0, attempt=1)
    assert second == selected_submitter(None, world.task, 0, 1) != first
    receipt = world.apply("payout", world.outsider, 41, round=0)
    paid = receipt.events[-1]
    assert paid.kind == "RoundPaid" and paid.attempt == 1 and paid.distribution_submitter == second


def test_round_fails_after_the_allowed_attempts():
    world = World(node_count=3, allowed_failed_distributions=0)
    world.submit_all(0)
    first = world.submit_list(0)
    world.apply(
        "audit_distribution", world.other_submitter(0, first), 24, round=0, candidate=first, is_valid=False
    )
    receipt = world.apply("payout", world.outsider, 31, round=0)
    assert [e.kind for e in receipt.events] == ["RoundFailed"]
    assert "no distribution list stood its audit in 1 attempts" in receipt.events[0].reason
    assert world.task.distributions_audit_record == {0: "PayoutFailed"}
    assert world.task.total_bounty_amount == 100 * KOII


def test_round_with_no_list_at_all_fails_after_the_last_window():
    world = World(node_count=1, allowed_failed_distributions=1)
    world.submit_all(0)
    assert_rejected(
        world.state,
        PayoutNotReadyError,
        "payout",
        world.outsider,
        31,
        ("(attempt 1)", "accepted from slot 40"),
        task_id=world.task_id,
        round=0,
    )
    receipt = world.apply("payout", world.outsider, 41, round=0)
    assert receipt.events[0].kind == "RoundFailed"


def test_payout_fails_when_the_pot_ran_dry_since_the_list():
    world = World(node_count=2, total_bounty_amount=15 * KOII)
    world.submit_all(0)
    world.submit_all(1)
    world.submit_list(0)  # slot 21
    world.submit_list(1)  # slot 31: the pot still holds 15 KOII
    world.apply("payout", world.outsider, 34, round=0)
    assert world.task.total_bounty_amount == 5 * KOII
    receipt = world.apply("payout", world.outsider, 41, round=1)
    assert receipt.events[0].kind == "RoundFailed" and "the pot holds 5 KOII" in receipt.events[0].reason


def test_settled_rounds_are_pruned_behind_the_window():
    world = World(node_count=2, allowed_failed_distributions=0)
    rounds = ROUNDS_KEPT + 3
    for r in range(rounds):
        world.submit_all(r)
        if r >= 1:
            world.submit_list(r - 1)
            world.apply("payout", world.outsider, 31 + 10 * (r - 1), round=r - 1)
    kept = sorted(world.task.submissions)
    assert kept[0] == rounds - 2 - ROUNDS_KEPT and kept[-1] == rounds - 1
    assert set(world.task.round_beacons) <= set(kept)
    assert len(world.task.distributions_audit_record) == rounds - 1  # records stay: a round is paid once
    before = state_root(world.state)
    assert_rejected(
        world.state, AlreadyPaidError, "payout", world.outsider, 100, (), task_id=world.task_id, round=0
    )
    assert state_root(world.state) == before


def test_a_payout_receipt_does_not_depend_on_the_order_the_list_was_sent_in():
    """Issue 16: receipts are a function of the log. A list sent in reverse key order, paid on the
    live state and on the state reloaded from its canonical (sorted) form, gives one receipt, with
    its capped slashes in key order (the chunked list's canonical chunks keep this true)."""
    from pykoii.ledger import LedgerState, event_to_plain, from_plain, to_plain

    world = World(node_count=5)
    garbage = sorted([world.nodes[1], world.nodes[3]])
    for round_number in (0, 1):
        world.submit_all(round_number, {key: "wrong" for key in garbage})
        for key in garbage:
            world.accuse(round_number, key, voters=2)
    world.submit_list(0)
    chosen = selected_submitter(None, world.task, 1, 0)
    default = default_distribution_for(world.task, 1)
    backwards = {key: default.slashes[key] for key in sorted(default.slashes, reverse=True)}
    world.send_list(chosen, 31, 1, default.rewards, backwards)
    world.apply("payout", world.outsider, 34, round=0)  # slashes 70 %: round 1's slashes get capped
    reloaded = from_plain(LedgerState, to_plain(world.state))
    live = world.apply("payout", world.outsider, 41, round=1)
    again = apply(reloaded, "payout", world.outsider, 41, task_id=world.task_id, round=1)
    assert list(live.events[-1].capped) == garbage
    assert [event_to_plain(e) for e in live.events] == [event_to_plain(e) for e in again.events]
    assert list(event_to_plain(live.events[-1])["capped"]) == list(event_to_plain(again.events[-1])["capped"])
