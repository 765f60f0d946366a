"""Names for the plain values the ledger works with.

Amounts are integers in ROE, the smallest unit: 1 KOII = 10^9 ROE. No amount is ever fractional.
"""

from __future__ import annotations

from typing import NewType

Address = NewType("Address", str)
"""A base58-encoded ed25519 public key: a wallet, a staking key, or a task id."""

TaskId = NewType("TaskId", str)
"""A task's id: base58, derived from the hash of the transaction that created it."""

Roe = NewType("Roe", int)
"""An amount in ROE; 1 KOII = ``ROE_PER_KOII`` ROE."""

Slot = NewType("Slot", int)
"""The ledger clock: the sequencer stamps every transaction with the slot it was accepted in."""

RoundNumber = NewType("RoundNumber", int)
"""A task's round, counted from 0 at the task's ``starting_slot``."""

TxId = NewType("TxId", str)
"""A transaction's id: the lowercase hex SHA-256 of its canonical bytes."""

ROE_PER_KOII = 1_000_000_000
"""ROE in one KOII."""

REPLAY_HORIZON_SLOTS = 150
"""A transaction is accepted only if its ``recent_slot`` is at most this many slots old."""

MAX_SUBMISSION_BYTES = 512

DISTRIBUTION_CHUNK_KEYS = 1000
"""The most staking keys one chunk of a distribution list holds (about 70 KB of JSON at most)."""
"""The longest proof (``submission_value``) accepted, in bytes of UTF-8."""

SLASH_PERCENT = 70
"""The seed's default distribution slashes this share of an invalid submitter's stake."""
