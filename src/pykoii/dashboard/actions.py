"""The dashboard's side of the operator's actions: each calls the node's own action
(``pykoii.node.operations``: add, start, stop, follow, stake more, withdraw, claim) and turns what
happened into an ``Outcome`` for the page. Every function never raises for a refusal, and never
puts a private key anywhere near the page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..errors import NothingToClaimError, NotStakedError, PykoiiError, StakeLockedError
from ..ledger.rounds import settle_slot
from ..ledger.staking import unsettled_round_of
from ..node.schedule import as_task_state
from .format import duration, koii, short


@dataclass
class Outcome:
    """What an action did, for the page: ``ok``, a title, a sentence, and the transaction id."""

    ok: bool
    title: str
    message: str
    detail: str = ""
    tx_id: str = ""


async def ledger_now(node: Any) -> tuple[int, int]:
    """``(slot, slot_ms)`` from the node's ledger."""
    now = await asyncio.to_thread(node.ledger.client.slot)
    return int(now["slot"]), int(now["slot_ms"])


async def stake_more(node: Any, task_id: str, amount: int) -> Outcome:
    """``Node.stake_more``: stake ``amount`` ROE more (topping the staking key up from the main wallet)."""
    try:
        receipt = await node.stake_more(task_id, amount)
    except PykoiiError as exc:
        return Outcome(False, "Stake refused", exc.message, exc.name)
    stake = next((e.get("stake") for e in receipt["events"] if e.get("kind") == "Staked"), None)
    total = f"; your stake on this task is now {koii(stake)}" if stake is not None else ""
    return Outcome(True, "Staked", f"Staked {koii(amount)} more{total}.", tx_id=receipt["tx_id"])


async def withdraw(node: Any, task_id: str) -> Outcome:
    """``Node.withdraw``, or the lock explained in plain words."""
    try:
        receipt = await node.withdraw(task_id)
    except StakeLockedError as exc:
        return Outcome(False, "Your stake is still locked", await explain_lock(node, task_id), exc.message)
    except NotStakedError as exc:
        return Outcome(
            False,
            "Nothing to withdraw",
            "This node has no stake on the task (already withdrawn?).",
            exc.message,
        )
    except PykoiiError as exc:
        return Outcome(False, "Withdraw refused", exc.message, exc.name)
    amount = sum(int(e.get("amount", 0)) for e in receipt["events"] if e.get("kind") == "Withdrawn")
    return Outcome(
        True,
        "Stake withdrawn",
        f"{koii(amount)} left the stake and is now claimable on this task; press Claim to move it "
        "to your wallet.",
        tx_id=receipt["tx_id"],
    )


async def explain_lock(node: Any, task_id: str) -> str:
    """Why a withdraw was refused and when it will be accepted, from the task's ledger state and the
    ledger's own lock rule (``ledger.staking.unsettled_round_of``)."""
    state = as_task_state(await node.ledger.task(task_id))
    slot, slot_ms = await ledger_now(node)
    pending = unsettled_round_of(state, node.staking.public_key)
    if pending is None:
        return "The ledger refused the withdraw because of a round not settled yet; try again shortly."
    unlock_slot = settle_slot(state, pending, state.allowed_failed_distributions)
    wait = max(0, unlock_slot - slot) * slot_ms
    text = (
        f"This node submitted work for round {pending}, and that round is not settled yet: until its "
        "payout, the work can still be found invalid and slashed. The ledger keeps the stake until "
        f"round {pending} is paid (payout is accepted from slot {unlock_slot} at the latest, about "
        f"{duration(wait)} from now; this node sends it)."
    )
    runtime = node.tasks.get(task_id)
    if runtime is not None and runtime.loop is not None and not runtime.loop.done():
        text += " The task is still running, and each new submission moves that date: stop it first."
    return text


async def claim(node: Any, task_id: str) -> Outcome:
    """``Node.claim``: the staking key's claimable balance on the task goes to the main wallet."""
    wallet = node.wallet.public_key
    nothing = "This node has no claimable balance on the task yet."
    try:
        before = await node.ledger.balance(wallet)
        receipt = await node.claim(task_id)
        after = await node.ledger.balance(wallet)
    except NothingToClaimError as exc:
        return Outcome(False, "Nothing to claim", nothing, exc.message)
    except PykoiiError as exc:
        return Outcome(False, "Claim refused", exc.message, exc.name)
    amount = sum(int(e.get("amount", 0)) for e in receipt["events"] if e.get("kind") == "RewardClaimed")
    return Outcome(
        True,
        "Rewards claimed",
        f"Claimed {koii(amount)} into your wallet {short(wallet)}: its balance went from {koii(before)} "
        f"to {koii(after)}.",
        tx_id=receipt["tx_id"],
    )


async def add_task(node: Any, task_id: str, amount: int, variables: dict[str, str]) -> Outcome:
    """Download and verify the task's code, stake ``amount`` ROE and start it (``Node.add_task``)."""
    try:
        info = await node.add_task(task_id, amount, variables)
    except PykoiiError as exc:
        return Outcome(False, "Could not add the task", exc.message, exc.name)
    return Outcome(
        True, "Task added", f"Staked {koii(amount)}; the task is {info.get('status', 'starting')}."
    )


async def follow(node: Any, task_id: str) -> Outcome:
    """``Node.follow_migration``: stake on the task's new version, start it, stop the old one."""
    try:
        info = await node.follow_migration(task_id)
    except PykoiiError as exc:
        return Outcome(False, "Could not follow the migration", exc.message, exc.name)
    return Outcome(True, "Now running the new version", info["message"])


async def start_or_stop(node: Any, task_id: str, verb: str) -> Outcome:
    """``Node.start_task`` or ``Node.stop_task``."""
    try:
        info = await (node.start_task(task_id) if verb == "start" else node.stop_task(task_id))
    except PykoiiError as exc:
        return Outcome(False, f"Could not {verb} the task", exc.message, exc.name)
    if verb == "stop":
        reveals = str(info.get("message") or "")  # the proofs already sent, revealed in their windows
        return Outcome(
            True,
            "Task stopped",
            "The task no longer runs on this node. "
            + (f"{reveals[:1].upper()}{reveals[1:]}. " if reveals else "")
            + "Its stake stays staked; withdraw it once the rounds it submitted in are paid (the "
            "ledger keeps it until then), then claim.",
        )
    return Outcome(True, "Task started", f"The task is {info.get('status', 'starting')}.")
