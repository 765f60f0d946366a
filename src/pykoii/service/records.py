"""The plain records of the ledger service: its genesis, receipts and log entries as JSON.

``Genesis`` is what a ledger is born with (the ``LedgerParams``, the slot length and the wall time
slot 0 began); its hash is the ``prev_hash`` of log entry 1. ``entry_to_plain`` and
``entry_from_plain`` are the form ``GET /log`` serves and replicas read; ``chain_problem`` says why
an entry does not continue a hash chain.

A *checkpoint mark* is a log entry the sequencer writes itself (empty signature, no state change):
``{"type": "checkpoint", "at": S, "state_root": R}`` says the state after entry ``S`` has root ``R``.
It ties a checkpoint's root to the hash chain: a checkpoint is loaded only if its root is marked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import LogCorruptionError
from ..ledger import LedgerParams, canonical_bytes, from_plain, receipt_to_plain, to_plain
from ..ledger.codec import sha256_hex
from ..ledger.events import Receipt
from .log import LogEntry, entry_hash_of


@dataclass(frozen=True, slots=True)
class Genesis:
    """What a ledger is born with, recorded once, durably, so that every replay reproduces it."""

    params: LedgerParams = field(default_factory=LedgerParams)
    slot_ms: int = 400
    anchor_ms: int = 0
    """Wall time (ms since the epoch) at which slot 0 began; 0 means "now" when first recorded."""
    version: int = 1

    def to_bytes(self) -> bytes:
        """The canonical JSON the genesis hash is taken over."""
        return canonical_bytes(
            {
                "params": to_plain(self.params),
                "slot_ms": self.slot_ms,
                "anchor_ms": self.anchor_ms,
                "version": self.version,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Genesis:
        return cls.from_plain(orjson.loads(data))

    @classmethod
    def from_plain(cls, plain: Any) -> Genesis:
        """The genesis of its plain form (as ``GET /genesis`` serves it)."""
        return cls(
            params=from_plain(LedgerParams, plain["params"]),
            slot_ms=plain["slot_ms"],
            anchor_ms=plain["anchor_ms"],
            version=plain["version"],
        )

    @property
    def hash(self) -> str:
        """The ``prev_hash`` of log entry 1."""
        return sha256_hex(self.to_bytes())


def receipt_plain(receipt: Receipt, seq: int) -> dict[str, Any]:
    """A receipt as served over HTTP: the ledger's receipt plus the log sequence number."""
    plain = receipt_to_plain(receipt)
    plain["seq"] = seq
    return plain


def entry_to_plain(entry: LogEntry) -> dict[str, Any]:
    """A log entry as ``GET /log`` serves it (``tx`` is the canonical JSON text)."""
    return {
        "seq": entry.seq,
        "slot": entry.slot,
        "tx_id": entry.tx_id,
        "tx": entry.tx.decode(),
        "signature": entry.signature,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def entry_from_plain(plain: Any) -> LogEntry:
    """The inverse of ``entry_to_plain``; raises ``LogCorruptionError`` on a malformed entry."""
    try:
        return LogEntry(
            seq=int(plain["seq"]),
            slot=int(plain["slot"]),
            tx_id=str(plain["tx_id"]),
            tx=str(plain["tx"]).encode(),
            signature=str(plain["signature"]),
            prev_hash=str(plain["prev_hash"]),
            entry_hash=str(plain["entry_hash"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LogCorruptionError(f"log entry is malformed: {exc!r}", received=plain) from None


MARK_SIGNATURE = ""
"""The signature field of a checkpoint mark (no transaction has an empty signature)."""


def mark_bytes(at: int, root: str) -> bytes:
    """The canonical bytes of the checkpoint mark for the state after entry ``at``."""
    return canonical_bytes({"type": "checkpoint", "at": at, "state_root": root})


def mark_of(entry: LogEntry) -> tuple[int, str] | None:
    """``(at, state_root)`` if ``entry`` is a well-formed checkpoint mark, else ``None``."""
    if entry.signature != MARK_SIGNATURE:
        return None
    try:
        plain = orjson.loads(entry.tx)
        at, root = plain["at"], plain["state_root"]
        if not (isinstance(at, int) and isinstance(root, str) and mark_bytes(at, root) == entry.tx):
            return None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return at, root


def mark_entry(seq: int, slot: int, prev_hash: str, at: int, root: str) -> LogEntry:
    """The log entry ``seq`` that marks the checkpoint root ``root`` of the state after ``at``."""
    tx = mark_bytes(at, root)
    tx_id = hashlib.sha256(tx).hexdigest()
    receipt = orjson.dumps({"tx_id": tx_id, "slot": slot, "events": [], "seq": seq})
    entry_hash = entry_hash_of(seq, slot, prev_hash, MARK_SIGNATURE, tx)
    return LogEntry(seq, slot, tx_id, tx, MARK_SIGNATURE, prev_hash, entry_hash, receipt)


def chain_problem(entry: LogEntry, seq: int, prev_hash: str, slot: int) -> str | None:
    """Why ``entry`` does not continue the chain at ``seq`` after ``prev_hash``, or ``None``."""
    if entry.seq != seq:
        return f"sequence number {entry.seq} where {seq} was expected"
    if entry.prev_hash != prev_hash:
        return f"prev_hash {entry.prev_hash} does not match the previous entry's hash {prev_hash}"
    if entry_hash_of(entry.seq, entry.slot, entry.prev_hash, entry.signature, entry.tx) != entry.entry_hash:
        return "entry_hash does not match the entry's contents"
    if hashlib.sha256(entry.tx).hexdigest() != entry.tx_id:
        return "tx_id is not the SHA-256 of the transaction bytes"
    if entry.slot < slot:
        return f"slot {entry.slot} is earlier than the previous entry's slot {slot}"
    return None
