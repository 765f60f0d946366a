"""stake, withdraw (with its lock) and claim_reward."""

from __future__ import annotations

from pykoii.errors import (
    InsufficientFundsError,
    InsufficientStakeError,
    MalformedTransactionError,
    NothingToClaimError,
    NotStakedError,
    StakeLockedError,
    TaskNotRunnableError,
    UnknownTaskError,
)
from pykoii.ledger.staking import unsettled_round_of

from .helpers import HELLO_TASK, KOII, STAKE, World, address, apply, assert_rejected

NEWCOMER = address("newcomer")


def world_with_newcomer():
    world = World(node_count=2)
    apply(world.state, "airdrop", NEWCOMER, 3, to=NEWCOMER, amount=10 * KOII)
    return world


def test_stake_registers_amount_total_and_url():
    world = world_with_newcomer()
    receipt = world.apply("stake", NEWCOMER, 4, amount=2 * KOII, ip_address="https://n.example")
    task = world.task
    assert task.stake_list[NEWCOMER] == 2 * KOII and task.ip_address_list[NEWCOMER] == "https://n.example"
    assert task.total_stake_amount == 2 * STAKE + 2 * KOII
    assert world.state.balances[NEWCOMER] == 8 * KOII
    world.apply("stake", NEWCOMER, 5, amount=1)  # topping up may be below the minimum on its own
    assert receipt.events[0].stake == 2 * KOII and task.stake_list[NEWCOMER] == 2 * KOII + 1


def test_stake_rules():
    world = world_with_newcomer()
    tid = world.task_id
    assert_rejected(
        world.state,
        InsufficientStakeError,
        "stake",
        NEWCOMER,
        4,
        ("a stake of 1 KOII (1000000000 ROE) is below the task's minimum_stake_amount of 2 KOII",),
        task_id=tid,
        amount=KOII,
    )
    assert_rejected(
        world.state,
        MalformedTransactionError,
        "stake",
        NEWCOMER,
        4,
        ("stake amount must be a positive integer number of ROE, got 0",),
        task_id=tid,
        amount=0,
    )
    assert_rejected(
        world.state,
        MalformedTransactionError,
        "stake",
        NEWCOMER,
        4,
        ("ip_address 'ftp://x' must be an http:// or https:// URL of at most 256 characters",),
        task_id=tid,
        amount=2 * KOII,
        ip_address="ftp://x",
    )
    assert_rejected(
        world.state,
        MalformedTransactionError,
        "stake",
        NEWCOMER,
        4,
        ("at most 256 characters",),
        task_id=tid,
        amount=2 * KOII,
        ip_address="http://" + "x" * 250,
    )
    assert_rejected(
        world.state,
        InsufficientFundsError,
        "stake",
        NEWCOMER,
        4,
        ("holds 10 KOII", "11 KOII (11000000000 ROE) is needed"),
        task_id=tid,
        amount=11 * KOII,
    )
    assert_rejected(
        world.state,
        UnknownTaskError,
        "stake",
        NEWCOMER,
        4,
        ("no task has id",),
        task_id=NEWCOMER,
        amount=2 * KOII,
    )
    world.apply("set_active", world.manager, 5, is_active=False)
    assert_rejected(
        world.state,
        TaskNotRunnableError,
        "stake",
        NEWCOMER,
        6,
        (f"task {tid} is inactive", "its manager must activate it first"),
        task_id=tid,
        amount=2 * KOII,
    )
    fields = {k: v for k, v in HELLO_TASK.items() if k != "total_bounty_amount"}
    world.apply("update_task", world.manager, 7, **fields)
    assert_rejected(
        world.state,
        TaskNotRunnableError,
        "stake",
        NEWCOMER,
        8,
        (f"task {tid} was migrated to", "use the new task id"),
        task_id=tid,
        amount=2 * KOII,
    )


def test_withdraw_moves_stake_to_available_balance_and_claim_pays_it_out():
    world = World(node_count=2)
    node = world.nodes[0]
    receipt = world.apply("withdraw", node, 5)
    assert receipt.events[0].amount == STAKE
    task = world.task
    assert node not in task.stake_list and task.available_balances[node] == STAKE
    assert task.total_stake_amount == STAKE
    wallet = address("wallet")
    world.apply("claim_reward", node, 6, beneficiary=wallet)
    assert world.state.balances[wallet] == STAKE and node not in task.available_balances


def test_withdraw_needs_a_stake():
    world = World(node_count=1)
    assert_rejected(
        world.state,
        NotStakedError,
        "withdraw",
        world.outsider,
        5,
        (f"{world.outsider} has no stake on task {world.task_id}",),
        task_id=world.task_id,
    )


def test_withdraw_is_locked_until_every_round_the_staker_submitted_in_is_settled():
    """Regression (issue 16): the lock was 3 rounds after the submission, but a round can be paid up to
    ``allowed_failed_distributions`` rounds later, so a faulty node withdrew before the late payout
    that would have slashed it."""
    world = World(node_count=3)
    garbage = world.nodes[0]
    world.submit_all(0, {garbage: "wrong"})
    world.accuse(0, garbage, voters=2)
    assert unsettled_round_of(world.task, garbage) == 0
    assert unsettled_round_of(world.task, world.outsider) is None
    # attempt 0 never comes; attempt 1's list (round 3) is paid in round 4 or later
    world.submit_list(0, attempt=1)
    assert_rejected(
        world.state,
        StakeLockedError,
        "withdraw",
        garbage,
        41,
        ("submitted for round 0, which is not settled yet", "payout of round 0 settles it", "now slot 41"),
        task_id=world.task_id,
    )
    world.apply("payout", world.outsider, 41, round=0)
    assert world.task.stake_list[garbage] == STAKE - STAKE * 70 // 100
    assert unsettled_round_of(world.task, garbage) is None
    world.apply("withdraw", garbage, 42)
    assert world.task.available_balances[garbage] == STAKE - STAKE * 70 // 100


def test_withdraw_works_on_migrated_and_inactive_tasks():
    world = World(node_count=1)
    world.apply("set_active", world.manager, 3, is_active=False)
    world.apply("withdraw", world.nodes[0], 4)


def test_claim_needs_a_balance():
    world = World(node_count=1)
    assert_rejected(
        world.state,
        NothingToClaimError,
        "claim_reward",
        world.nodes[0],
        5,
        (f"the provided claimer account {world.nodes[0]} doesn't have any balance on task",),
        task_id=world.task_id,
        beneficiary=world.nodes[0],
    )
