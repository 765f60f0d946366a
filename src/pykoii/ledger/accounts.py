"""Wallet balances: airdrops, transfers, and the helpers every instruction uses to move ROE."""

from __future__ import annotations

from ..errors import AirdropError, InsufficientFundsError, MalformedTransactionError, UnknownTaskError
from .events import Airdropped, Event, Transferred
from .state import LedgerState, TaskState, add, assign, put
from .transactions import Airdrop, Transfer
from .types import ROE_PER_KOII, Address, Roe, TaskId


def koii(amount: int) -> str:
    """An amount in ROE written in KOII for messages, e.g. ``1.5 KOII (1500000000 ROE)``."""
    whole, fraction = divmod(amount, ROE_PER_KOII)
    text = f"{whole}.{fraction:09d}".rstrip("0").rstrip(".")
    return f"{text} KOII ({amount} ROE)"


def require_amount(amount: int, what: str) -> None:
    """Refuse an amount that is not a positive integer."""
    if amount <= 0:
        raise MalformedTransactionError(
            f"{what} must be a positive integer number of ROE, got {amount}", received=amount
        )


def get_task(state: LedgerState, task_id: str) -> TaskState:
    """The task with ``task_id``, or ``UnknownTaskError``."""
    task = state.tasks.get(TaskId(task_id))
    if task is None:
        raise UnknownTaskError(f"no task has id {task_id!r}", task_id=task_id)
    return task


def debit(state: LedgerState, account: Address, amount: int) -> None:
    """Take ``amount`` from a wallet, or raise ``InsufficientFundsError``."""
    balance = state.balances.get(account, 0)
    if balance < amount:
        raise InsufficientFundsError(
            f"account {account} holds {koii(balance)}; {koii(amount)} is needed",
            account=account,
            balance=balance,
            amount=amount,
        )
    add(state, state.balances, account, -amount)


def credit(state: LedgerState, account: Address, amount: int) -> None:
    """Add ``amount`` to a wallet."""
    add(state, state.balances, account, amount)


def airdrop(state: LedgerState, tx: Airdrop, slot: int) -> list[Event]:
    """Mint ROE on a devnet, at most ``airdrop_limit`` a time and once per cooldown per recipient."""
    params = state.params
    if not params.devnet:
        raise AirdropError("airdrops are accepted only by a devnet ledger (started with --devnet)")
    require_amount(tx.amount, "airdrop amount")
    if tx.amount > params.airdrop_limit:
        raise AirdropError(
            f"airdrop of {koii(tx.amount)} is over the limit; at most {koii(params.airdrop_limit)} a time",
            amount=tx.amount,
        )
    last = state.last_airdrop_slot.get(tx.to)
    if last is not None and slot - last < params.airdrop_cooldown_slots:
        raise AirdropError(
            f"{tx.to} had an airdrop at slot {last}; the next is accepted from slot "
            f"{last + params.airdrop_cooldown_slots} (now {slot})",
            slot=slot,
        )
    put(state, state.last_airdrop_slot, tx.to, slot)
    credit(state, tx.to, tx.amount)
    state_supply = state.total_supply + tx.amount
    assign(state, state, "total_supply", Roe(state_supply))
    return [Airdropped(to=tx.to, amount=tx.amount)]


def transfer(state: LedgerState, tx: Transfer, slot: int) -> list[Event]:
    """Move ROE between wallets."""
    require_amount(tx.amount, "transfer amount")
    debit(state, tx.signer, tx.amount)
    credit(state, tx.to, tx.amount)
    return [Transferred(source=tx.signer, to=tx.to, amount=tx.amount)]
