"""create_task, update_task (migration), set_active and fund_task, with every config rule."""

from __future__ import annotations

import pytest

from pykoii.errors import (
    InsufficientFundsError,
    InvalidTaskConfigError,
    MalformedTransactionError,
    UnauthorizedSignerError,
    UnknownTaskError,
)
from pykoii.ledger import task_id_for

from .helpers import HELLO_TASK, KOII, World, address, apply, assert_rejected, devnet, make_tx

MANAGER = address("manager")


def funded_manager():
    state = devnet()
    apply(state, "airdrop", MANAGER, 0, to=MANAGER, amount=500 * KOII)
    return state


def test_create_task_moves_the_bounty_into_the_pot_and_keeps_koii_fields():
    state = funded_manager()
    tx = make_tx("create_task", MANAGER, 4, **HELLO_TASK)
    from pykoii.ledger import apply_transaction

    receipt = apply_transaction(state, tx, 4)
    task_id = task_id_for(tx.tx_id)
    task = state.tasks[task_id]
    assert receipt.events[0].task_id == task_id
    assert state.balances[MANAGER] == 400 * KOII and task.total_bounty_amount == 100 * KOII
    assert task.starting_slot == 4 and task.task_manager == MANAGER and task.is_active
    assert task.round_time == 10 and task.submission_window == 3 and task.audit_window == 3
    assert task.stake_pot_account != task_id and not task.is_allowlisted


CONFIG_CASES = [
    ({"task_name": ""}, "task_name is ''; accepted: 1 to 24 characters"),
    ({"task_name": "x" * 25}, "accepted: 1 to 24 characters"),
    ({"task_description": "d" * 65}, "task_description is", "at most 64 characters"),
    (
        {"task_audit_program": ""},
        "task_audit_program is ''; accepted: 1 to 64 characters (CID or file name of the task code)",
    ),
    (
        {"task_executable_network": "FTP"},
        "task_executable_network is 'FTP'; accepted: IPFS, ARWEAVE, DEVELOPMENT",
    ),
    ({"task_metadata": "m" * 65}, "task_metadata is", "at most 64 characters"),
    ({"task_vars": "v" * 65}, "task_vars is"),
    ({"koii_vars": "v" * 65}, "koii_vars is"),
    ({"submission_window": 0}, "submission_window is 0; accepted: 1 to 4294967296"),
    ({"audit_window": 1}, "audit_window is 1; accepted: 2 to 4294967296"),
    ({"round_time": 7}, "round_time is 7; accepted: at least submission_window + audit_window + 2 = 8 slots"),
    ({"bounty_amount_per_round": 0}, "bounty_amount_per_round is 0; accepted: 1 to 9223372036854775807"),
    (
        {"bounty_amount_per_round": 101 * KOII},
        "bounty_amount_per_round is 101000000000",
        "at most total_bounty_amount = 100 KOII",
    ),
    ({"minimum_stake_amount": -1}, "minimum_stake_amount is -1; accepted: 0 to 9223372036854775807"),
    ({"allowed_failed_distributions": 17}, "allowed_failed_distributions is 17; accepted: 0 to 16"),
    ({"allowed_failed_distributions": -1}, "accepted: 0 to 16"),
    ({"sample_size": 0}, "sample_size is 0; accepted: 1 to 64"),
    ({"requirements_tags": [{"type": "CPU"}] * 33}, "requirements_tags is 33; accepted: at most 32 tags"),
    ({"requirements_tags": [{"type": "GPU"}]}, "requirements_tags.type is 'GPU'; accepted: GLOBAL_VARIABLE"),
    ({"requirements_tags": [{"type": "CPU", "value": "9" * 65}]}, "requirements_tags.value is"),
]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=lambda case: next(iter(case[0])))
def test_create_task_config_rules(case):
    fields, *fragments = case
    error = assert_rejected(
        funded_manager(),
        InvalidTaskConfigError,
        "create_task",
        MANAGER,
        1,
        tuple(fragments),
        **{**HELLO_TASK, **fields},
    )
    assert error.field == next(iter(fields)) or error.field.startswith("requirements_tags")


def test_create_task_needs_the_bounty_in_the_wallet():
    state = devnet()
    apply(state, "airdrop", MANAGER, 0, to=MANAGER, amount=99 * KOII)
    assert_rejected(
        state,
        InsufficientFundsError,
        "create_task",
        MANAGER,
        1,
        ("holds 99 KOII", "100 KOII (100000000000 ROE) is needed"),
        **HELLO_TASK,
    )


def test_update_task_migrates_bounty_to_a_new_version():
    world = World(node_count=2)
    old_id = world.task_id
    fields = {k: v for k, v in HELLO_TASK.items() if k != "total_bounty_amount"}
    receipt = world.apply(
        "update_task", world.manager, 30, **{**fields, "task_name": "Hello v2"}, migration_description="v2"
    )
    new_id = receipt.events[1].task_id
    old, new = world.state.tasks[old_id], world.state.tasks[new_id]
    assert [e.kind for e in receipt.events] == ["TaskMigrated", "TaskCreated"]
    assert (
        old.is_migrated and old.migrated_to == new_id and not old.is_active and old.total_bounty_amount == 0
    )
    assert new.total_bounty_amount == 100 * KOII and new.migrated_from == old_id and new.starting_slot == 30
    assert new.task_name == "Hello v2" and new.stake_list == {}  # stakes stay on the old version
    assert old.stake_list  # ... where they can still be withdrawn


def test_update_task_rules():
    world = World(node_count=1)
    fields = {k: v for k, v in HELLO_TASK.items() if k != "total_bounty_amount"}
    assert_rejected(
        world.state,
        UnknownTaskError,
        "update_task",
        world.manager,
        5,
        (f"no task has id {world.outsider!r}",),
        **fields,
        task_id=world.outsider,
    )
    assert_rejected(
        world.state,
        UnauthorizedSignerError,
        "update_task",
        world.outsider,
        5,
        (f"only the task manager {world.manager} may change task", f"signed by {world.outsider}"),
        **fields,
        task_id=world.task_id,
    )
    assert_rejected(
        world.state,
        InvalidTaskConfigError,
        "update_task",
        world.manager,
        5,
        ("bounty_amount_per_round is 101000000000", "at most total_bounty_amount = 100 KOII"),
        **{**fields, "bounty_amount_per_round": 101 * KOII},
        task_id=world.task_id,
    )
    world.apply("update_task", world.manager, 5, **fields)
    assert_rejected(
        world.state,
        InvalidTaskConfigError,
        "update_task",
        world.manager,
        6,
        ("was already migrated to", "update that one"),
        **fields,
        task_id=world.task_id,
    )


def test_update_task_with_an_empty_pot():
    # One round paid with the whole pot leaves nothing to move.
    world = World(node_count=1, total_bounty_amount=10 * KOII)
    world.submit_all(0)
    world.submit_list(0)
    world.apply("payout", world.outsider, 31, round=0)
    assert world.task.total_bounty_amount == 0
    fields = {k: v for k, v in HELLO_TASK.items() if k != "total_bounty_amount"}
    assert_rejected(
        world.state,
        InsufficientFundsError,
        "update_task",
        world.manager,
        30,
        (f"task {world.task_id} has no bounty left to move",),
        **fields,
        task_id=world.task_id,
    )


def test_set_active_rules():
    world = World(node_count=1)
    receipt = world.apply("set_active", world.manager, 5, is_active=False)
    assert not world.task.is_active and receipt.events[0].kind == "TaskActivationChanged"
    assert_rejected(
        world.state,
        UnauthorizedSignerError,
        "set_active",
        world.outsider,
        5,
        ("only the task manager",),
        task_id=world.task_id,
        is_active=True,
    )
    world.apply("set_active", world.manager, 6, is_active=True)
    fields = {k: v for k, v in HELLO_TASK.items() if k != "total_bounty_amount"}
    world.apply("update_task", world.manager, 7, **fields)
    assert_rejected(
        world.state,
        InvalidTaskConfigError,
        "set_active",
        world.manager,
        8,
        ("was migrated to", "activate that one"),
        task_id=world.task_id,
        is_active=True,
    )
    world.apply("set_active", world.manager, 8, is_active=False)  # deactivating stays allowed


def test_fund_task_rules():
    world = World(node_count=1)
    world.apply("fund_task", world.outsider, 5, amount=3 * KOII)
    assert world.task.total_bounty_amount == 103 * KOII
    assert_rejected(
        world.state,
        MalformedTransactionError,
        "fund_task",
        world.outsider,
        5,
        ("fund amount must be a positive integer number of ROE, got 0",),
        task_id=world.task_id,
        amount=0,
    )
    assert_rejected(
        world.state,
        InsufficientFundsError,
        "fund_task",
        world.outsider,
        5,
        ("is needed",),
        task_id=world.task_id,
        amount=1000 * KOII,
    )
    assert_rejected(
        world.state,
        UnknownTaskError,
        "fund_task",
        world.outsider,
        5,
        ("no task has id",),
        task_id=world.outsider,
        amount=1,
    )
    fields = {k: v for k, v in HELLO_TASK.items() if k != "total_bounty_amount"}
    world.apply("update_task", world.manager, 7, **fields)
    assert_rejected(
        world.state,
        InvalidTaskConfigError,
        "fund_task",
        world.outsider,
        8,
        ("was migrated to", "fund that one"),
        task_id=world.task_id,
        amount=1,
    )
