"""Stake, withdraw (unstake) and claim rewards.

Koii's staking keys are separate from a node's main wallet: a node funds its staking key, stakes
from it, and is paid into the task's ``available_balances`` for that key. ``withdraw`` moves the
whole stake there too, and ``claim_reward`` moves the available balance to any beneficiary wallet.
"""

from __future__ import annotations

from ..errors import (
    InsufficientStakeError,
    MalformedTransactionError,
    NothingToClaimError,
    NotStakedError,
    StakeLockedError,
    TaskNotRunnableError,
)
from .accounts import credit, debit, get_task, koii, require_amount
from .bounds import FIELDS
from .events import Event, RewardClaimed, Staked, Withdrawn
from .rounds import settle_slot
from .state import LedgerState, TaskState, add, assign, put, remove
from .transactions import ClaimReward, Stake, Withdraw
from .types import Roe, RoundNumber

MAX_IP_ADDRESS_CHARS = FIELDS["ip_address"].high


def require_runnable(task: TaskState) -> None:
    """Refuse work on a task that is inactive or migrated."""
    if task.is_migrated:
        raise TaskNotRunnableError(
            f"task {task.task_id} was migrated to {task.migrated_to}; use the new task id",
            task_id=task.task_id,
        )
    if not task.is_active:
        raise TaskNotRunnableError(
            f"task {task.task_id} is inactive; its manager must activate it first", task_id=task.task_id
        )


def stake(state: LedgerState, tx: Stake, slot: int) -> list[Event]:
    """Stake from the signer's wallet; the resulting stake must reach ``minimum_stake_amount``."""
    task = get_task(state, tx.task_id)
    require_runnable(task)
    require_amount(tx.amount, "stake amount")
    if len(tx.ip_address) > MAX_IP_ADDRESS_CHARS or (
        tx.ip_address and not tx.ip_address.startswith(("http://", "https://"))
    ):
        raise MalformedTransactionError(
            f"ip_address {tx.ip_address!r} must be an http:// or https:// URL of at most "
            f"{MAX_IP_ADDRESS_CHARS} characters, or empty",
            received=tx.ip_address,
        )
    new_stake = task.stake_list.get(tx.signer, 0) + tx.amount
    if new_stake < task.minimum_stake_amount:
        raise InsufficientStakeError(
            f"a stake of {koii(new_stake)} is below the task's minimum_stake_amount of "
            f"{koii(task.minimum_stake_amount)}",
            stake=new_stake,
            minimum=task.minimum_stake_amount,
        )
    debit(state, tx.signer, tx.amount)
    put(state, task.stake_list, tx.signer, new_stake)
    assign(state, task, "total_stake_amount", Roe(task.total_stake_amount + tx.amount))
    if tx.ip_address:
        put(state, task.ip_address_list, tx.signer, tx.ip_address)
    return [Staked(task_id=task.task_id, staker=tx.signer, amount=tx.amount, stake=Roe(new_stake))]


def unsettled_round_of(task: TaskState, staker: str) -> RoundNumber | None:
    """The oldest round of ``task`` that ``staker`` submitted in and that is not settled yet (paid or
    failed), or ``None``. While there is one, a payout may still slash the stake (or penalise a vote:
    auditors are the round's submitters), so ``withdraw`` is refused."""
    rounds = [
        r
        for r, submissions in task.submissions.items()
        if staker in submissions and r not in task.distributions_audit_record
    ]
    return min(rounds) if rounds else None


def withdraw(state: LedgerState, tx: Withdraw, slot: int) -> list[Event]:
    """Unstake everything into ``available_balances``; refused while a round the staker submitted in
    is not settled.

    A round can settle (and slash) until its payout is sent, which anyone may do once its last
    distribution attempt's audit window closed; so the lock lasts exactly as long as the stake can
    still be slashed, however many distribution attempts the round takes.
    """
    task = get_task(state, tx.task_id)
    amount = task.stake_list.get(tx.signer, 0)
    if amount <= 0:
        raise NotStakedError(f"{tx.signer} has no stake on task {task.task_id}", staker=tx.signer)
    pending = unsettled_round_of(task, tx.signer)
    if pending is not None:
        ready = settle_slot(task, pending, task.allowed_failed_distributions)
        raise StakeLockedError(
            f"{tx.signer} submitted for round {pending}, which is not settled yet, so its stake stays "
            f"locked while that round can still slash it; payout of round {pending} settles it (anyone "
            f"may send it; at the latest it is accepted from slot {ready}), now slot {slot}",
            round=pending,
            unlock_slot=ready,
            slot=slot,
        )
    remove(state, task.stake_list, tx.signer)
    assign(state, task, "total_stake_amount", Roe(task.total_stake_amount - amount))
    add(state, task.available_balances, tx.signer, amount)
    return [Withdrawn(task_id=task.task_id, staker=tx.signer, amount=Roe(amount))]


def claim_reward(state: LedgerState, tx: ClaimReward, slot: int) -> list[Event]:
    """Move the signer's available balance on the task to the beneficiary's wallet."""
    task = get_task(state, tx.task_id)
    amount = task.available_balances.get(tx.signer, 0)
    if amount <= 0:
        raise NothingToClaimError(
            f"the provided claimer account {tx.signer} doesn't have any balance on task {task.task_id}",
            claimer=tx.signer,
        )
    remove(state, task.available_balances, tx.signer)
    credit(state, tx.beneficiary, amount)
    return [
        RewardClaimed(task_id=task.task_id, staker=tx.signer, beneficiary=tx.beneficiary, amount=Roe(amount))
    ]
