"""The operator's actions, each a real signed transaction sent through the node's ledger client.

``Node`` (``pykoii.node.runtime``) already adds, starts and stops tasks; staking more, withdrawing
and claiming are here, signed with the node's keys as the node itself signs: the **staking key**
stakes, withdraws and claims; the **main wallet** tops the staking key up and receives claims.
Every function returns an ``Outcome`` for the page, never raises for a refusal, and never puts a
private key anywhere near the page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..errors import NothingToClaimError, NotStakedError, PykoiiError, StakeLockedError
from ..ledger.rounds import distribution_audit_window
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


async def send(node: Any, keypair: Any, tx: dict[str, Any]) -> dict[str, Any]:
    slot, _ = await ledger_now(node)
    receipt: dict[str, Any] = await node.ledger.send(keypair.sign_transaction({**tx, "recent_slot": slot}))
    return receipt


async def stake_more(node: Any, task_id: str, amount: int) -> Outcome:
    """Stake ``amount`` ROE more, moving it from the main wallet to the staking key first if needed."""
    me = node.staking.public_key
    try:
        balance = await node.ledger.balance(me)
        if balance < amount:
            await send(node, node.wallet, {"type": "transfer", "to": me, "amount": amount - balance})
        receipt = await send(node, node.staking, {"type": "stake", "task_id": task_id, "amount": amount})
    except PykoiiError as exc:
        return Outcome(False, "Stake refused", exc.message, exc.name)
    stake = next((e.get("stake") for e in receipt["events"] if e.get("kind") == "Staked"), None)
    total = f"; your stake on this task is now {koii(stake)}" if stake is not None else ""
    return Outcome(True, "Staked", f"Staked {koii(amount)} more{total}.", tx_id=receipt["tx_id"])


async def withdraw(node: Any, task_id: str) -> Outcome:
    """Unstake the whole stake into the task's claimable balance, or explain the lock in plain words."""
    try:
        receipt = await send(node, node.staking, {"type": "withdraw", "task_id": task_id})
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
    unlock_slot = distribution_audit_window(state, pending, state.allowed_failed_distributions).stop
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
    """Move the staking key's claimable balance on the task to the main wallet."""
    wallet = node.wallet.public_key
    nothing = "This node has no claimable balance on the task yet."
    try:
        state = await node.ledger.task(task_id)
        if not int(state.get("available_balances", {}).get(node.staking.public_key, 0)):
            return Outcome(False, "Nothing to claim", nothing)
        before = await node.ledger.balance(wallet)
        receipt = await send(
            node, node.staking, {"type": "claim_reward", "task_id": task_id, "beneficiary": wallet}
        )
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


async def start_or_stop(node: Any, task_id: str, verb: str) -> Outcome:
    """``Node.start_task`` or ``Node.stop_task``."""
    try:
        info = await (node.start_task(task_id) if verb == "start" else node.stop_task(task_id))
    except PykoiiError as exc:
        return Outcome(False, f"Could not {verb} the task", exc.message, exc.name)
    if verb == "stop":
        return Outcome(
            True,
            "Task stopped",
            "The task no longer runs on this node. Its stake stays staked; withdraw it once the "
            "rounds it submitted in are paid (the ledger keeps it until then), then claim.",
        )
    return Outcome(True, "Task started", f"The task is {info.get('status', 'starting')}.")
