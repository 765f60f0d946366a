"""Small builders for ledger tests: deterministic addresses and transactions without signatures."""

from __future__ import annotations

from typing import Any

from pykoii.ledger import LedgerParams, LedgerState, apply_transaction, decode_transaction
from pykoii.ledger.codec import derive_address
from pykoii.ledger.events import Receipt
from pykoii.ledger.transactions import Transaction

KOII = 1_000_000_000


def address(name: str) -> str:
    """A deterministic, valid base58 address for a test actor."""
    return derive_address("test", name)


def make_tx(kind: str, signer: str, slot: int, **fields: Any) -> Transaction:
    body = {"type": kind, "signer": signer, "recent_slot": fields.pop("recent_slot", slot), **fields}
    return decode_transaction(body)


def apply(state: LedgerState, kind: str, signer: str, slot: int, **fields: Any) -> Receipt:
    return apply_transaction(state, make_tx(kind, signer, slot, **fields), slot)


def devnet() -> LedgerState:
    return LedgerState(params=LedgerParams(devnet=True, airdrop_cooldown_slots=0))


HELLO_TASK = dict(
    task_name="Hello World",
    task_description="Stores and submits Hello, World!",
    task_audit_program="bafkreihelloworld",
    total_bounty_amount=100 * KOII,
    bounty_amount_per_round=10 * KOII,
    round_time=10,
    submission_window=3,
    audit_window=3,
    minimum_stake_amount=2 * KOII,
    allowed_failed_distributions=3,
)
