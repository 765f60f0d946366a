"""Write the ledger's JSON conformance vectors (``tests/ledger/vectors/*.json``).

Run from the repository root::

    .venv/bin/python -m tests.ledger.make_vectors

Every pre-state is built by running the state machine (see ``helpers.World``), so vectors hold only
states the ledger can reach. The expected outcome is what the ledger does today, computed from the
pre-state as loaded back from its plain JSON form. Vectors are the specification: the test runner
never regenerates them, so a change of behaviour shows up as a failing vector, and regenerating
them is a deliberate act reviewed in the diff.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pykoii.errors import InvalidTransactionError
from pykoii.ledger import (
    LedgerParams,
    LedgerState,
    apply_transaction,
    audit_ring,
    decode_transaction,
    default_distribution_for,
    event_to_plain,
    from_plain,
    selected_submitter,
    state_root,
    to_plain,
)
from pykoii.ledger.distribution import distribution_transactions

from .helpers import HELLO_TASK, KOII, STAKE, World, address, apply, devnet, secret

VECTORS = Path(__file__).parent / "vectors"

COMMIT = {"root": "ab" * 32, "chunks": 1}
"""A well-formed commitment, for refusals that come before the root matters."""

Case = tuple[str, str, LedgerState, dict[str, Any], int]
"""(name, description, pre-state, transaction JSON, slot)."""

UPDATE_FIELDS = {k: v for k, v in HELLO_TASK.items() if k != "total_bounty_amount"}


def tx(kind: str, signer: str, slot: int, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "signer": signer, "recent_slot": fields.pop("recent_slot", slot), **fields}


def submitted(
    nodes: int = 3, values: dict[int, str] | None = None, reveal: bool = True, **task: Any
) -> World:
    """Every node submitted round 0 (slot 11) and revealed (slot 14); votes in slots 15–16."""
    world = World(node_count=nodes, **task)
    world.submit_all(0, {world.nodes[i]: v for i, v in (values or {}).items()}, reveal=reveal)
    return world


def listed(nodes: int = 3, **task: Any) -> tuple[World, str]:
    """Round 0 submitted and its first list submitted (slot 21); list audits in slots 24–26."""
    world = submitted(nodes, **task)
    return world, world.submit_list(0)


def list_bodies(world: World, rewards: Any, slashes: Any) -> list[dict[str, Any]]:
    """The commitment and chunk bodies of a list for round 0 of ``world``'s task."""
    return distribution_transactions(world.task_id, 0, rewards, slashes)


def cases() -> Iterator[Case]:
    alice, bob = address("alice"), address("bob")

    def funded() -> LedgerState:
        state = devnet()
        apply(state, "airdrop", alice, 0, to=alice, amount=10 * KOII)
        return state

    # --- rules every transaction meets ------------------------------------------------------------
    yield (
        "malformed_unknown_type",
        "an unknown instruction",
        funded(),
        tx("mint", alice, 1, to=bob, amount=1),
        1,
    )
    yield (
        "malformed_unknown_field",
        "a field the instruction does not have",
        funded(),
        tx("transfer", alice, 1, to=bob, amount=1, memo="hi"),
        1,
    )
    yield (
        "malformed_missing_field",
        "transfer without amount",
        funded(),
        tx("transfer", alice, 1, to=bob),
        1,
    )
    yield (
        "malformed_string_amount",
        "amounts are JSON integers, never strings (bug fix)",
        funded(),
        tx("transfer", alice, 1, to=bob, amount="5"),
        1,
    )
    yield (
        "malformed_bad_address",
        "'to' is not a base58 public key",
        funded(),
        tx("transfer", alice, 1, to="0xdeadbeef", amount=1),
        1,
    )
    world = submitted()
    yield (
        "malformed_vote_without_is_valid",
        "a vote must say which way it goes (bug fix)",
        world.state,
        tx("audit_submission", world.nodes[0], 14, task_id=world.task_id, round=0, candidate=world.nodes[1]),
        14,
    )
    yield (
        "malformed_negative_recent_slot",
        "recent_slot -1 was inside the horizon below slot 150 (bug fix: integer fields are 0 to 2^63-1)",
        funded(),
        tx("transfer", alice, 5, to=bob, amount=1, recent_slot=-1),
        5,
    )
    yield (
        "malformed_integer_over_64_bits",
        "an amount of 2^64 reached the rules (and the service turned it into a float) (bug fix)",
        funded(),
        tx("transfer", alice, 1, to=bob, amount=2**64),
        1,
    )
    yield (
        "malformed_round_over_63_bits",
        "round 2^63 reached the rules and the round routes (bug fix)",
        funded(),
        tx("payout", alice, 1, task_id=bob, round=2**63),
        1,
    )
    yield (
        "stale_recent_slot_too_old",
        "recent_slot 151 slots old",
        funded(),
        tx("transfer", alice, 200, to=bob, amount=1, recent_slot=49),
        200,
    )
    yield (
        "stale_recent_slot_edge_accepted",
        "recent_slot exactly 150 slots old is accepted",
        funded(),
        tx("transfer", alice, 200, to=bob, amount=1, recent_slot=50),
        200,
    )
    yield (
        "stale_recent_slot_in_future",
        "recent_slot after the slot",
        funded(),
        tx("transfer", alice, 5, to=bob, amount=1, recent_slot=6),
        5,
    )
    state = funded()
    body = tx("transfer", alice, 5, to=bob, amount=1)
    apply_transaction(state, decode_transaction(body), 5)
    yield "duplicate_transaction", "the same transaction again (replay)", state, body, 7
    state = funded()
    apply(state, "transfer", alice, 60, to=bob, amount=1)
    apply(state, "transfer", alice, 100, to=bob, amount=1)
    yield (
        "replay_buckets_pruned_whatever_their_order",
        "every tx-id bucket older than slot-150 is dropped, though the sorted pre-state lists 100 before 60 "
        "(bug fix)",
        state,
        tx("transfer", alice, 220, to=bob, amount=1),
        220,
    )

    # --- airdrop, transfer ------------------------------------------------------------------------
    yield "airdrop_ok", "devnet airdrop mints", devnet(), tx("airdrop", bob, 0, to=alice, amount=5 * KOII), 0
    yield (
        "airdrop_not_devnet",
        "airdrops only on a devnet",
        LedgerState(),
        tx("airdrop", bob, 0, to=alice, amount=5),
        0,
    )
    yield (
        "airdrop_over_limit",
        "more than airdrop_limit",
        devnet(),
        tx("airdrop", bob, 0, to=alice, amount=1001 * KOII),
        0,
    )
    state = LedgerState(params=LedgerParams(devnet=True, airdrop_cooldown_slots=10))
    apply(state, "airdrop", alice, 5, to=alice, amount=1)
    yield (
        "airdrop_cooldown",
        "second airdrop 9 slots later",
        state,
        tx("airdrop", alice, 14, to=alice, amount=1),
        14,
    )
    yield (
        "airdrop_zero_amount",
        "amounts are positive",
        devnet(),
        tx("airdrop", bob, 0, to=alice, amount=0),
        0,
    )
    yield "transfer_ok", "a transfer", funded(), tx("transfer", alice, 1, to=bob, amount=3 * KOII), 1
    yield (
        "transfer_insufficient_funds",
        "more than the balance",
        funded(),
        tx("transfer", alice, 1, to=bob, amount=11 * KOII),
        1,
    )

    # --- tasks --------------------------------------------------------------------------------------
    manager = address("manager")
    state = devnet()
    apply(state, "airdrop", manager, 0, to=manager, amount=150 * KOII)
    yield "create_task_ok", "the Hello-World task", state, tx("create_task", manager, 1, **HELLO_TASK), 1
    yield (
        "create_task_round_time_too_short",
        "round_time < submission_window + audit_window",
        state,
        tx("create_task", manager, 1, **{**HELLO_TASK, "round_time": 5}),
        1,
    )
    yield (
        "create_task_per_round_over_total",
        "bounty_amount_per_round > total_bounty_amount",
        state,
        tx("create_task", manager, 1, **{**HELLO_TASK, "bounty_amount_per_round": 101 * KOII}),
        1,
    )
    yield (
        "create_task_bad_network",
        "task_executable_network not IPFS/ARWEAVE/DEVELOPMENT",
        state,
        tx("create_task", manager, 1, **{**HELLO_TASK, "task_executable_network": "FTP"}),
        1,
    )
    yield (
        "create_task_insufficient_funds",
        "bounty larger than the wallet",
        state,
        tx("create_task", manager, 1, **{**HELLO_TASK, "total_bounty_amount": 200 * KOII}),
        1,
    )
    world = World(node_count=2)
    yield (
        "update_task_ok",
        "migration: new task, bounty moved, old one retired",
        world.state,
        tx("update_task", world.manager, 5, task_id=world.task_id, **UPDATE_FIELDS),
        5,
    )
    yield (
        "malformed_unknown_field_in_a_tag",
        "requirements_tags entries took unknown fields into the signed log (bug fix)",
        world.state,
        tx(
            "update_task",
            world.manager,
            5,
            task_id=world.task_id,
            **UPDATE_FIELDS,
            requirements_tags=[{"type": "CPU", "value": "2", "junk": "x" * 64}],
        ),
        5,
    )
    yield (
        "malformed_migration_description_too_long",
        "a 1 MB migration_description was accepted and logged (bug fix: at most 256 characters)",
        world.state,
        tx(
            "update_task",
            world.manager,
            5,
            task_id=world.task_id,
            **UPDATE_FIELDS,
            migration_description="d" * 257,
        ),
        5,
    )
    yield (
        "malformed_lone_surrogate",
        "a lone surrogate in a string raised UnicodeEncodeError instead of a refusal (bug fix)",
        world.state,
        tx(
            "update_task",
            world.manager,
            5,
            task_id=world.task_id,
            **UPDATE_FIELDS,
            migration_description="\ud800",
        ),
        5,
    )
    yield (
        "update_task_unauthorized",
        "only the manager updates",
        world.state,
        tx("update_task", world.outsider, 5, task_id=world.task_id, **UPDATE_FIELDS),
        5,
    )
    yield (
        "set_active_deactivate_ok",
        "the manager deactivates",
        world.state,
        tx("set_active", world.manager, 5, task_id=world.task_id, is_active=False),
        5,
    )
    yield (
        "set_active_unauthorized",
        "only the manager (de)activates",
        world.state,
        tx("set_active", world.outsider, 5, task_id=world.task_id, is_active=False),
        5,
    )
    yield (
        "fund_task_ok",
        "anyone funds",
        world.state,
        tx("fund_task", world.outsider, 5, task_id=world.task_id, amount=2 * KOII),
        5,
    )
    yield (
        "fund_task_unknown_task",
        "no such task",
        world.state,
        tx("fund_task", world.outsider, 5, task_id=world.outsider, amount=2 * KOII),
        5,
    )
    migrated = World(node_count=2)
    migrated.apply("update_task", migrated.manager, 4, **UPDATE_FIELDS)
    yield (
        "update_task_already_migrated",
        "update the newest version instead",
        migrated.state,
        tx("update_task", migrated.manager, 5, task_id=migrated.task_id, **UPDATE_FIELDS),
        5,
    )
    yield (
        "set_active_reactivate_migrated",
        "a migrated task stays inactive",
        migrated.state,
        tx("set_active", migrated.manager, 5, task_id=migrated.task_id, is_active=True),
        5,
    )
    yield (
        "fund_task_migrated",
        "fund the new version",
        migrated.state,
        tx("fund_task", migrated.outsider, 5, task_id=migrated.task_id, amount=KOII),
        5,
    )
    yield (
        "stake_migrated_task",
        "work goes to the new version",
        migrated.state,
        tx("stake", migrated.outsider, 5, task_id=migrated.task_id, amount=2 * KOII),
        5,
    )
    drained = World(node_count=1, total_bounty_amount=10 * KOII)
    drained.submit_all(0)
    drained.submit_list(0)
    drained.apply("payout", drained.outsider, 31, round=0)
    yield (
        "update_task_empty_pot",
        "nothing left to move",
        drained.state,
        tx("update_task", drained.manager, 30, task_id=drained.task_id, **UPDATE_FIELDS),
        30,
    )

    # --- staking ----------------------------------------------------------------------------------
    world = World(node_count=2)
    yield (
        "stake_ok",
        "a new staker with its node URL",
        world.state,
        tx(
            "stake", world.outsider, 5, task_id=world.task_id, amount=2 * KOII, ip_address="https://o.example"
        ),
        5,
    )
    yield (
        "stake_below_minimum",
        "1 KOII < minimum_stake_amount 2 KOII",
        world.state,
        tx("stake", world.outsider, 5, task_id=world.task_id, amount=KOII),
        5,
    )
    yield (
        "stake_bad_ip_address",
        "the node URL must be http(s)",
        world.state,
        tx("stake", world.outsider, 5, task_id=world.task_id, amount=2 * KOII, ip_address="ftp://x"),
        5,
    )
    yield (
        "withdraw_ok",
        "stake moves to available_balances",
        world.state,
        tx("withdraw", world.nodes[0], 5, task_id=world.task_id),
        5,
    )
    yield (
        "withdraw_not_staked",
        "nothing staked",
        world.state,
        tx("withdraw", world.outsider, 5, task_id=world.task_id),
        5,
    )
    yield (
        "claim_nothing",
        "claim with an empty available balance",
        world.state,
        tx("claim_reward", world.nodes[0], 5, task_id=world.task_id, beneficiary=world.nodes[0]),
        5,
    )
    inactive = World(node_count=2)
    inactive.apply("set_active", inactive.manager, 4, is_active=False)
    yield (
        "stake_inactive_task",
        "stake on an inactive task",
        inactive.state,
        tx("stake", inactive.outsider, 5, task_id=inactive.task_id, amount=2 * KOII),
        5,
    )
    yield (
        "submit_inactive_task",
        "proof for an inactive task",
        inactive.state,
        tx("submit", inactive.nodes[0], 11, task_id=inactive.task_id, round=0, submission_value="x"),
        11,
    )
    world = submitted(2)
    yield (
        "withdraw_locked",
        "submitted for round 0: locked until round 4 (slot 41)",
        world.state,
        tx("withdraw", world.nodes[0], 40, task_id=world.task_id),
        40,
    )
    yield (
        "withdraw_locked_while_its_round_is_unsettled",
        "round 4, but round 0 is not paid yet and can still slash it (bug fix: the lock was 3 rounds)",
        world.state,
        tx("withdraw", world.nodes[0], 41, task_id=world.task_id),
        41,
    )
    world.submit_list(0)
    world.apply("payout", world.outsider, 31, round=0)
    yield (
        "withdraw_once_its_rounds_are_settled",
        "round 0 is paid: the stake is free",
        world.state,
        tx("withdraw", world.nodes[0], 28, task_id=world.task_id),
        28,
    )

    # --- submit -------------------------------------------------------------------------------------
    world = World(node_count=2)
    yield (
        "submit_ok",
        "a proof in round 0's window",
        world.state,
        tx("submit", world.nodes[0], 11, task_id=world.task_id, round=0, submission_value="Hello, World!"),
        11,
    )
    yield (
        "submit_window_last_slot",
        "slot 13 is the window's last",
        world.state,
        tx("submit", world.nodes[0], 13, task_id=world.task_id, round=0, submission_value="x"),
        13,
    )
    yield (
        "submit_too_early",
        "slot 10 is still round 0",
        world.state,
        tx("submit", world.nodes[0], 10, task_id=world.task_id, round=0, submission_value="x"),
        10,
    )
    yield (
        "submit_too_late",
        "slot 14 is the audit window",
        world.state,
        tx("submit", world.nodes[0], 14, task_id=world.task_id, round=0, submission_value="x"),
        14,
    )
    yield (
        "submit_negative_round",
        "round -1 precedes the task (bug fix)",
        world.state,
        tx("submit", world.nodes[0], 2, task_id=world.task_id, round=-1, submission_value="x"),
        2,
    )
    yield (
        "submit_too_large",
        "513 bytes",
        world.state,
        tx("submit", world.nodes[0], 11, task_id=world.task_id, round=0, submission_value="x" * 513),
        11,
    )
    yield (
        "submit_not_staked",
        "no stake",
        world.state,
        tx("submit", world.outsider, 11, task_id=world.task_id, round=0, submission_value="x"),
        11,
    )
    world = submitted(2)
    yield (
        "submit_duplicate",
        "a second proof for round 0",
        world.state,
        tx("submit", world.nodes[0], 12, task_id=world.task_id, round=0, submission_value="y"),
        12,
    )
    world = submitted(3, {0: "wrong"})
    world.accuse(0, world.nodes[0])
    world.submit_list(0)
    world.apply("payout", world.outsider, 31, round=0)
    yield (
        "submit_below_minimum_after_slash",
        "1.5 KOII left after a 70 % slash",
        world.state,
        tx("submit", world.nodes[0], 31, task_id=world.task_id, round=2, submission_value="x"),
        31,
    )
    yield (
        "claim_reward_ok",
        "a paid node claims to its wallet",
        world.state,
        tx("claim_reward", world.nodes[1], 31, task_id=world.task_id, beneficiary=address("wallet")),
        31,
    )

    # --- audit_submission ---------------------------------------------------------------------------
    # HELLO_TASK: round 0's reveals in slot 14, accusations and votes in 15-16, judgement 17-20.
    world = submitted(5, {0: "wrong"}, sample_size=2, escalation_size=3)
    ring = audit_ring(None, world.task, 0)
    candidate = world.nodes[0]
    auditors = ring.auditors_of(candidate)
    panel = ring.panel_of(candidate)
    stranger = next(n for n in world.nodes if n != candidate and n not in panel)
    vote = {"task_id": world.task_id, "round": 0, "candidate": candidate}
    yield (
        "audit_false_raises_trigger",
        "an assigned auditor accuses",
        world.state,
        tx("audit_submission", auditors[0], 15, **vote, is_valid=False),
        15,
    )
    yield (
        "audit_during_the_reveal_window",
        "slot 14 takes reveals: the beacon is not fixed yet, so no vote",
        world.state,
        tx("audit_submission", auditors[0], 14, **vote, is_valid=False),
        14,
    )
    yield (
        "audit_wrong_phase",
        "slot 17 is the judgement window: it takes no new accusation",
        world.state,
        tx("audit_submission", auditors[0], 17, **vote, is_valid=False),
        17,
    )
    yield (
        "audit_unknown_candidate",
        "the candidate did not submit",
        world.state,
        tx("audit_submission", auditors[0], 15, **{**vote, "candidate": world.outsider}, is_valid=False),
        15,
    )
    yield (
        "audit_not_assigned",
        "the beacon did not assign this voter",
        world.state,
        tx("audit_submission", stranger, 15, **vote, is_valid=False),
        15,
    )
    yield (
        "audit_panel_member_may_not_accuse",
        "the panel beyond the sample judges an accused proof but does not accuse",
        world.state,
        tx("audit_submission", panel[-1], 15, **vote, is_valid=False),
        15,
    )
    yield (
        "audit_self",
        "nobody audits itself",
        world.state,
        tx("audit_submission", candidate, 15, **vote, is_valid=False),
        15,
    )
    yield (
        "audit_true_without_trigger",
        "true votes only defend the accused",
        world.state,
        tx("audit_submission", auditors[0], 15, **vote, is_valid=True),
        15,
    )
    world.apply("audit_submission", auditors[0], 16, round=0, candidate=candidate, is_valid=False)
    yield (
        "audit_true_defends",
        "a second auditor defends",
        world.state,
        tx("audit_submission", auditors[1], 16, **vote, is_valid=True),
        16,
    )
    yield (
        "audit_defence_after_a_last_slot_accusation",
        "accused in the audit window's last slot (16), defended in the judgement window (bug fix: one "
        "late false vote left no slot to defend, and the honest node lost 70 %)",
        world.state,
        tx("audit_submission", auditors[1], 20, **vote, is_valid=True),
        20,
    )
    yield (
        "audit_escalation_panel_votes",
        "a panel member outside the sample votes on the accused proof (escalation)",
        world.state,
        tx("audit_submission", panel[-1], 18, **vote, is_valid=False),
        18,
    )
    yield (
        "audit_not_on_the_panel",
        "only the accused proof's panel votes on it",
        world.state,
        tx("audit_submission", stranger, 18, **vote, is_valid=True),
        18,
    )
    yield (
        "audit_after_the_judgement_window",
        "slot 21 is round 2: the judgement of round 0's proofs is over",
        world.state,
        tx("audit_submission", auditors[1], 21, **vote, is_valid=True),
        21,
    )
    yield (
        "audit_duplicate_vote",
        "the raiser votes again",
        world.state,
        tx("audit_submission", auditors[0], 16, **vote, is_valid=True),
        16,
    )

    # --- reveal (commit-reveal beacon) --------------------------------------------------------------
    world = submitted(3, reveal=False)
    node = world.nodes[0]
    own = {"task_id": world.task_id, "round": 0, "secret": secret(world.task_id, 0, node)}
    yield (
        "reveal_ok",
        "the secret committed with the proof, in slot 14",
        world.state,
        tx("reveal", node, 14, **own),
        14,
    )
    yield (
        "reveal_wrong_secret",
        "a secret that does not hash to the commitment",
        world.state,
        tx("reveal", node, 14, **{**own, "secret": "0" * 64}),
        14,
    )
    yield (
        "reveal_wrong_phase",
        "slot 15 is past the reveal window: the beacon is fixed",
        world.state,
        tx("reveal", node, 15, **own),
        15,
    )
    yield (
        "reveal_not_a_submitter",
        "only submitters reveal",
        world.state,
        tx("reveal", world.outsider, 14, **own),
        14,
    )
    withheld = World(node_count=3)
    withheld.submit_all(0, reveal=False)
    withheld.reveal_all(0, withheld.nodes[1:])
    yield (
        "audit_of_a_withheld_reveal",
        "a proof whose secret was withheld is invalid without a vote",
        withheld.state,
        tx(
            "audit_submission",
            withheld.nodes[1],
            15,
            task_id=withheld.task_id,
            round=0,
            candidate=withheld.nodes[0],
            is_valid=False,
        ),
        15,
    )
    world.reveal_all(0, [node])
    yield (
        "reveal_twice",
        "a second reveal",
        world.state,
        tx("reveal", node, 14, **{**own, "recent_slot": 13}),
        14,
    )

    # --- submit_distribution (the commitment) and upload_distribution_chunk -------------------------
    world = submitted(3, {0: "wrong"})
    world.accuse(0, world.nodes[0], voters=2)
    chosen = selected_submitter(None, world.task, 0, 0)
    other = world.other_submitter(0, chosen)
    default = default_distribution_for(world.task, 0)
    commit, chunk = list_bodies(world, default.rewards, default.slashes)
    yield (
        "submit_distribution_ok",
        "the selected node commits the default list's root (one chunk)",
        world.state,
        tx(commit.pop("type"), chosen, 21, **commit),
        21,
    )
    yield (
        "submit_distribution_wrong_phase",
        "slot 24 is the list's audit window",
        world.state,
        tx("submit_distribution", chosen, 24, **commit),
        24,
    )
    yield (
        "submit_distribution_not_selected",
        "another submitter",
        world.state,
        tx("submit_distribution", other, 21, **commit),
        21,
    )
    yield (
        "submit_distribution_too_many_chunks",
        "3 submitters fit in one chunk of 1000 keys",
        world.state,
        tx("submit_distribution", chosen, 21, **{**commit, "chunks": 2}),
        21,
    )
    yield (
        "submit_distribution_bad_root",
        "the root is 64 lowercase hex characters",
        world.state,
        tx("submit_distribution", chosen, 21, **{**commit, "root": "XYZ"}),
        21,
    )
    yield (
        "submit_distribution_no_submissions",
        "round 1 has no proofs",
        world.state,
        tx("submit_distribution", chosen, 31, **{**commit, "round": 1}),
        31,
    )
    yield (
        "upload_distribution_chunk_before_commit",
        "a chunk needs its list's commitment first",
        world.state,
        tx(chunk.pop("type"), chosen, 21, **chunk),
        21,
    )
    world.apply("submit_distribution", chosen, 21, **{k: v for k, v in commit.items() if k != "task_id"})
    yield (
        "upload_distribution_chunk_ok",
        "the only chunk, proven against the committed root: the list is complete",
        world.state,
        tx("upload_distribution_chunk", chosen, 22, **chunk),
        22,
    )
    yield (
        "upload_distribution_chunk_not_in_root",
        "a chunk that differs from the committed one (its rewards raised by 1 ROE)",
        world.state,
        tx(
            "upload_distribution_chunk",
            chosen,
            22,
            **{**chunk, "rewards": {key: amount + 1 for key, amount in chunk["rewards"].items()}},
        ),
        22,
    )
    yield (
        "upload_distribution_chunk_index_out_of_range",
        "the committed list has one chunk",
        world.state,
        tx("upload_distribution_chunk", chosen, 22, **{**chunk, "index": 1}),
        22,
    )
    yield (
        "upload_distribution_chunk_wrong_phase",
        "slot 24: chunks arrive in the list's own window",
        world.state,
        tx("upload_distribution_chunk", chosen, 24, **chunk),
        24,
    )
    for name, description, rewards, slashes in (
        ("pays_a_non_submitter", "only round 0's submitters", {world.outsider: 1}, {}),
        ("over_bounty", "rewards above bounty_amount_per_round", {other: 10 * KOII + 1}, {}),
        ("slash_over_stake", "a slash above the stake", {}, {world.nodes[0]: STAKE + 1}),
    ):
        bad = submitted(3, {0: "wrong"})
        bad.accuse(0, bad.nodes[0], voters=2)
        bad_commit, bad_chunk = list_bodies(bad, rewards, slashes)
        bad.apply(
            bad_commit.pop("type"), chosen, 21, **{k: v for k, v in bad_commit.items() if k != "task_id"}
        )
        yield (
            f"upload_distribution_chunk_{name}",
            f"{description}: the chunk matches its root, the ledger refuses what it pays",
            bad.state,
            tx(bad_chunk.pop("type"), chosen, 21, **bad_chunk),
            21,
        )
    world.apply("upload_distribution_chunk", chosen, 22, **{k: v for k, v in chunk.items() if k != "task_id"})
    yield (
        "upload_distribution_chunk_twice",
        "the same chunk again (signed anew)",
        world.state,
        tx("upload_distribution_chunk", chosen, 23, **chunk),
        23,
    )
    world, chosen = listed(3)
    dist = {"task_id": world.task_id, "round": 0}
    yield (
        "submit_distribution_twice",
        "the selected node again",
        world.state,
        tx("submit_distribution", chosen, 22, **dist, **COMMIT),
        22,
    )
    yield (
        "submit_distribution_after_a_list_stood",
        "no retry once attempt 0 stood",
        world.state,
        tx("submit_distribution", selected_submitter(None, world.task, 0, 1), 31, **dist, **COMMIT),
        31,
    )
    voter = world.other_submitter(0, chosen)
    vote = {"task_id": world.task_id, "round": 0, "candidate": chosen}

    # --- audit_distribution -------------------------------------------------------------------------
    yield (
        "audit_distribution_false_ok",
        "another submitter accuses the list",
        world.state,
        tx("audit_distribution", voter, 24, **vote, is_valid=False),
        24,
    )
    yield (
        "audit_distribution_self",
        "the list's author may not audit it",
        world.state,
        tx("audit_distribution", chosen, 24, **vote, is_valid=False),
        24,
    )
    yield (
        "audit_distribution_outsider",
        "only the round's submitters audit",
        world.state,
        tx("audit_distribution", world.outsider, 24, **vote, is_valid=False),
        24,
    )
    yield (
        "audit_distribution_wrong_phase",
        "slot 27 is after the window",
        world.state,
        tx("audit_distribution", voter, 27, **vote, is_valid=False),
        27,
    )
    yield (
        "audit_distribution_unknown_list",
        "that node submitted no list",
        world.state,
        tx("audit_distribution", chosen, 24, **{**vote, "candidate": voter}, is_valid=False),
        24,
    )
    yield (
        "audit_distribution_true_without_trigger",
        "true votes only defend",
        world.state,
        tx("audit_distribution", voter, 24, **vote, is_valid=True),
        24,
    )
    yield ("payout_ok", "pay the list that stood", world.state, tx("payout", world.outsider, 31, **dist), 31)
    yield (
        "payout_not_ready",
        "slot 29 is still the list's judgement window",
        world.state,
        tx("payout", world.outsider, 29, **dist),
        29,
    )
    yield (
        "payout_no_submissions",
        "round 1 has no proofs",
        world.state,
        tx("payout", world.outsider, 40, task_id=world.task_id, round=1),
        40,
    )
    world.apply("audit_distribution", voter, 24, round=0, candidate=chosen, is_valid=False)
    yield (
        "audit_distribution_duplicate_vote",
        "the accuser votes again",
        world.state,
        tx("audit_distribution", voter, 25, **vote, is_valid=True),
        25,
    )
    world.apply(
        "audit_distribution",
        world.other_submitter(0, chosen, voter),
        25,
        round=0,
        candidate=chosen,
        is_valid=False,
    )
    yield (
        "payout_waits_for_the_retry",
        "attempt 0 failed: attempt 1 is audited in slots 34–36",
        world.state,
        tx("payout", world.outsider, 30, **dist),
        30,
    )
    second = selected_submitter(None, world.task, 0, 1)
    retry = default_distribution_for(world.task, 0)
    retry_commit = list_bodies(world, retry.rewards, retry.slashes)[0]
    retry_commit.pop("type")
    yield (
        "submit_distribution_retry_ok",
        "attempt 1 by the next candidate",
        world.state,
        tx("submit_distribution", second, 31, **retry_commit),
        31,
    )
    world.submit_list(0, attempt=1)
    yield (
        "payout_retry_ok",
        "attempt 1's list is paid",
        world.state,
        tx("payout", world.outsider, 41, **dist),
        41,
    )

    # --- payout: slashes, failure, idempotence ------------------------------------------------------
    world = submitted(4, {2: "wrong"})
    world.accuse(0, world.nodes[2], voters=2)
    world.submit_list(0)
    yield (
        "payout_slashes_and_rewards",
        "70 % slash, floor(bounty/3) each",
        world.state,
        tx("payout", world.outsider, 31, task_id=world.task_id, round=0),
        31,
    )
    world.apply("payout", world.outsider, 31, round=0)
    yield (
        "payout_already_paid",
        "payout is idempotent: once only",
        world.state,
        tx("payout", world.outsider, 32, task_id=world.task_id, round=0),
        32,
    )
    yield (
        "submit_distribution_settled_round",
        "round 0 is paid",
        world.state,
        tx("submit_distribution", world.nodes[0], 31, task_id=world.task_id, round=0, **COMMIT),
        31,
    )
    world, chosen = listed(3, allowed_failed_distributions=0)
    world.apply(
        "audit_distribution", world.other_submitter(0, chosen), 24, round=0, candidate=chosen, is_valid=False
    )
    yield (
        "payout_round_failed",
        "no list stood in 1 attempt: PayoutFailed",
        world.state,
        tx("payout", world.outsider, 31, task_id=world.task_id, round=0),
        31,
    )
    world = submitted(3)
    chosen = selected_submitter(None, world.task, 0, 0)
    default = default_distribution_for(world.task, 0)
    commit = list_bodies(world, default.rewards, default.slashes)[0]
    commit.pop("type")
    world.apply("submit_distribution", chosen, 21, **{k: v for k, v in commit.items() if k != "task_id"})
    yield (
        "payout_skips_an_incomplete_list",
        "attempt 0 was committed but its chunk never came: payout waits for attempt 1",
        world.state,
        tx("payout", world.outsider, 31, task_id=world.task_id, round=0),
        31,
    )
    world = World(node_count=2, total_bounty_amount=15 * KOII)
    world.submit_all(0)
    world.submit_all(1)
    world.submit_list(0)
    world.submit_list(1)
    world.apply("payout", world.outsider, 34, round=0)
    yield (
        "payout_pot_ran_dry",
        "the pot fell below the list since it was submitted: PayoutFailed",
        world.state,
        tx("payout", world.outsider, 41, task_id=world.task_id, round=1),
        41,
    )


def settlement_cases() -> Iterator[Case]:
    """Issue 16: settlement is exact."""
    for name, description, bounty in (
        (
            "payout_migrated_task_only_slashes",
            "a round in flight when the task was migrated slashes and pays nothing; the slash goes to the "
            "new version's pot (bug fix: the list was paid from the slash, or failed and the slash was lost)",
            10 * KOII,
        ),
        (
            "payout_migrated_task_does_not_pay_from_the_slash",
            "same with rewards smaller than the slash: they were paid out of the slashed stake (bug fix)",
            KOII,
        ),
    ):
        world = submitted(3, {0: "wrong"}, bounty_amount_per_round=bounty)
        world.accuse(0, world.nodes[0], voters=2)
        world.submit_list(0)
        world.apply("update_task", world.manager, 25, **{**UPDATE_FIELDS, "bounty_amount_per_round": bounty})
        yield (
            name,
            description,
            world.state,
            tx("payout", world.outsider, 31, task_id=world.task_id, round=0),
            31,
        )
    world = World(node_count=3, total_bounty_amount=15 * KOII)
    world.submit_all(0)
    world.submit_all(1, {world.nodes[0]: "wrong"})
    world.accuse(1, world.nodes[0], voters=2)
    world.submit_list(0)
    world.submit_list(1)
    world.apply("payout", world.outsider, 34, round=0)
    yield (
        "payout_pot_ran_dry_still_slashes",
        "the pot cannot cover the list: PayoutFailed, and the garbage node is slashed all the same (bug fix)",
        world.state,
        tx("payout", world.outsider, 41, task_id=world.task_id, round=1),
        41,
    )


def judgement_cases() -> Iterator[Case]:
    """Issue 16: escalation and the penalty of losing votes."""
    world = submitted(5, {0: "wrong"}, sample_size=2)
    garbage = world.nodes[0]
    ring = audit_ring(None, world.task, 0)
    panel = ring.panel_of(garbage)  # sample of 2, then the other 2 (escalation_size 33 > 4 others)
    world.apply("audit_submission", panel[0], 15, round=0, candidate=garbage, is_valid=False)
    world.apply("audit_submission", panel[1], 15, round=0, candidate=garbage, is_valid=True)  # colluder
    world.apply("audit_submission", panel[2], 17, round=0, candidate=garbage, is_valid=False)
    world.apply("audit_submission", panel[3], 18, round=0, candidate=garbage, is_valid=False)
    world.submit_list(0)
    yield (
        "payout_penalizes_the_losing_votes",
        "garbage judged invalid 3 false to 1 true by its escalation panel: the defender loses "
        "vote_penalty_percent (10 %) of its stake into the pot, the garbage node 70 %",
        world.state,
        tx("payout", world.outsider, 31, task_id=world.task_id, round=0),
        31,
    )
    world = submitted(5, sample_size=2)
    honest = world.nodes[0]
    ring = audit_ring(None, world.task, 0)
    panel = ring.panel_of(honest)
    world.apply("audit_submission", panel[0], 16, round=0, candidate=honest, is_valid=False)  # last slot
    for defender in panel[1:]:
        world.apply("audit_submission", defender, 17, round=0, candidate=honest, is_valid=True)
    world.submit_list(0)
    yield (
        "payout_penalizes_a_false_accuser",
        "an honest node accused in the last audit slot is defended by its panel in the judgement window; "
        "it is paid and the false accuser loses 10 % of its stake (bug fix: it lost 70 % for free)",
        world.state,
        tx("payout", world.outsider, 31, task_id=world.task_id, round=0),
        31,
    )


def run(pre_plain: dict[str, Any], body: dict[str, Any], slot: int) -> dict[str, Any]:
    """Apply ``body`` at ``slot`` to the state loaded from ``pre_plain``; the vector's expected part."""
    state = from_plain(LedgerState, pre_plain)
    try:
        receipt = apply_transaction(state, decode_transaction(body), slot)
    except InvalidTransactionError as exc:
        return {"error": exc.name}
    return {"post_state_root": state_root(state), "events": [event_to_plain(e) for e in receipt.events]}


def build(name: str, description: str, state: LedgerState, body: dict[str, Any], slot: int) -> dict[str, Any]:
    pre_plain = json.loads(json.dumps(to_plain(state), sort_keys=True))
    return {
        "name": name,
        "description": description,
        "pre_state": pre_plain,
        "pre_state_root": state_root(state),
        "tx": body,
        "slot": slot,
        "expected": run(pre_plain, body, slot),
    }


def main(write: Callable[[Path, str], object] = Path.write_text) -> int:
    VECTORS.mkdir(exist_ok=True)
    names = set()
    for name, description, state, body, slot in itertools.chain(
        cases(), settlement_cases(), judgement_cases()
    ):
        assert name not in names, f"two vectors are named {name}"
        names.add(name)
        vector = build(name, description, state, body, slot)
        write(VECTORS / f"{name}.json", json.dumps(vector, indent=1, sort_keys=True) + "\n")
    for stale in VECTORS.glob("*.json"):
        if stale.stem not in names:
            stale.unlink()
    print(f"wrote {len(names)} vectors to {VECTORS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
