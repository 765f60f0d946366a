"""The seed's lesson, end to end on the state machine: 5 staked nodes run Hello-World for 3 rounds,
one submits a wrong value, the others catch it, and payout follows the seed's rule exactly."""

from __future__ import annotations

from pykoii.errors import InsufficientStakeError
from pykoii.ledger import (
    audit_ring,
    default_distribution_for,
    distribution_window,
    selected_submitter,
    state_root,
    submission_window,
)
from pykoii.ledger.rounds import audit_window, reveal_window, settle_slot

from .helpers import HELLO_TASK, KOII, address, apply, commitment, devnet, secret, send_list

STAKE = 5 * KOII
ROUNDS = 3


def run_seed_scenario():
    state = devnet()
    manager = address("manager")
    nodes = [address(f"node-{i}") for i in range(5)]
    faulty = nodes[3]
    apply(state, "airdrop", manager, 0, to=manager, amount=200 * KOII)
    for node in nodes:
        apply(state, "airdrop", node, 0, to=node, amount=10 * KOII)
    created = apply(state, "create_task", manager, 1, **HELLO_TASK)
    task_id = created.events[0].task_id
    task = state.tasks[task_id]
    for node in nodes:
        apply(state, "stake", node, 2, task_id=task_id, amount=STAKE, ip_address=f"http://{node[:6]}.local")

    refused: list[int] = []
    slash_history: list[dict[str, int]] = []
    value = {node: "Hello, World!" for node in nodes}
    value[faulty] = "Goodbye, World!"
    for r in range(ROUNDS):
        sub_slot = submission_window(task, r).start
        for node in nodes:
            try:
                apply(
                    state,
                    "submit",
                    node,
                    sub_slot,
                    task_id=task_id,
                    round=r,
                    submission_value=value[node],
                    commitment=commitment(task_id, r, node),
                )
            except InsufficientStakeError:
                assert node == faulty  # slashed below minimum_stake_amount: it may not submit any more
                refused.append(r)
        for node in task.submissions[r]:
            secret_of = secret(task_id, r, node)
            apply(
                state,
                "reveal",
                node,
                reveal_window(task, r).start,
                task_id=task_id,
                round=r,
                secret=secret_of,
            )
        audit_slot = audit_window(task, r).start
        ring = audit_ring(None, task, r)
        for auditor in nodes:
            for candidate in ring.candidates_of(auditor):
                if value[candidate] != "Hello, World!" and auditor != faulty:
                    apply(
                        state,
                        "audit_submission",
                        auditor,
                        audit_slot,
                        task_id=task_id,
                        round=r,
                        candidate=candidate,
                        is_valid=False,
                    )
        if r >= 1:
            slash_history.append(settle(state, task_id, r - 1, nodes))
    slash_history.append(settle(state, task_id, ROUNDS - 1, nodes))
    return state, task_id, nodes, faulty, refused, slash_history


def settle(state, task_id, r, nodes):
    task = state.tasks[task_id]
    dist_slot = distribution_window(task, r).start
    chosen = selected_submitter(None, task, r, 0)
    expected = default_distribution_for(task, r)
    send_list(state, chosen, dist_slot, task_id, r, expected.rewards, expected.slashes)
    payout_slot = settle_slot(task, r)
    before = dict(task.stake_list)
    apply(state, "payout", nodes[0], payout_slot, task_id=task_id, round=r)
    return {
        key: before[key] - task.stake_list.get(key, 0)
        for key in before
        if task.stake_list.get(key, 0) != before[key]
    }


def test_honest_nodes_paid_and_faulty_node_slashed_by_the_seed_rule():
    state, task_id, nodes, faulty, refused, slashes = run_seed_scenario()
    task = state.tasks[task_id]
    honest = [node for node in nodes if node != faulty]
    per_round = HELLO_TASK["bounty_amount_per_round"] // 4
    for node in honest:
        assert task.available_balances[node] == ROUNDS * per_round
        assert task.stake_list[node] == STAKE
    # Round 0's payout takes exactly 70 % of the faulty node's stake.
    assert slashes[0] == {faulty: STAKE * 70 // 100}
    # Round 1's proof was sent before round 0 was paid (rounds stack), so it is slashed again, 70 % of
    # what was left; by round 2 the stake is below the minimum and the ledger refuses its proof.
    assert slashes[1] == {faulty: (STAKE - STAKE * 70 // 100) * 70 // 100}
    assert refused == [2] and slashes[2] == {}
    assert task.stake_list[faulty] == STAKE - sum(s[faulty] for s in slashes[:2])
    assert faulty not in task.available_balances
    assert task.distributions_audit_record == {
        0: "PayoutSuccessful",
        1: "PayoutSuccessful",
        2: "PayoutSuccessful",
    }
    # Slashed stake went back to the bounty pot.
    paid = sum(task.available_balances.values())
    assert task.total_bounty_amount == HELLO_TASK["total_bounty_amount"] - paid + sum(
        s[faulty] for s in slashes[:2]
    )


def test_same_scenario_same_state_root():
    first = run_seed_scenario()[0]
    second = run_seed_scenario()[0]
    assert state_root(first) == state_root(second)
