"""One frozen dataclass per instruction, and the decoder from a transaction's JSON object.

A transaction is a JSON object ``{"type": ..., "signer": ..., "recent_slot": ..., ...fields}``;
it is signed over its canonical bytes (``codec.canonical_bytes``) and travels in an envelope
``{"tx": {...}, "signature": "<base58>"}``. Signatures are checked once, by
``pykoii.keys.verify_envelope``, before a transaction reaches ``apply_transaction``.

Every transaction carries:

- ``signer``: the account whose key signed it, and the account the instruction acts for;
- ``recent_slot``: a slot the sender saw recently; the ledger refuses it when it is more than
  ``REPLAY_HORIZON_SLOTS`` old, which bounds what replay protection must remember;
- ``tx_id`` (not sent): the hex SHA-256 of the canonical bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from ..errors import MalformedTransactionError
from .codec import _hints, canonical_bytes, from_plain, is_address, sha256_hex
from .state import RequirementTag
from .types import Address, Roe, RoundNumber, Slot, TaskId, TxId


@dataclass(frozen=True, slots=True)
class Transaction:
    """Fields every transaction has."""

    TYPE: ClassVar[str] = ""
    signer: Address
    recent_slot: Slot
    tx_id: TxId = field(default=TxId(""), compare=False, metadata={"encode": False})


@dataclass(frozen=True, slots=True)
class Airdrop(Transaction):
    """Mint ``amount`` ROE to ``to``. Devnet ledgers only, limited per airdrop and per recipient."""

    TYPE: ClassVar[str] = "airdrop"
    to: Address = Address("")
    amount: Roe = Roe(0)


@dataclass(frozen=True, slots=True)
class Transfer(Transaction):
    """Move ``amount`` ROE from the signer's wallet to ``to``."""

    TYPE: ClassVar[str] = "transfer"
    to: Address = Address("")
    amount: Roe = Roe(0)


@dataclass(frozen=True, slots=True)
class TaskFields(Transaction):
    """The ``config-task.yml`` fields that ``create_task`` and ``update_task`` both carry."""

    task_name: str = ""
    task_description: str = ""
    task_audit_program: str = ""
    task_executable_network: str = "IPFS"
    bounty_amount_per_round: Roe = Roe(0)
    round_time: int = 0
    audit_window: int = 0
    submission_window: int = 0
    minimum_stake_amount: Roe = Roe(0)
    allowed_failed_distributions: int = 3
    task_metadata: str = ""
    task_vars: str = ""
    koii_vars: str = ""
    requirements_tags: list[RequirementTag] = field(default_factory=list)
    sample_size: int = 5


@dataclass(frozen=True, slots=True)
class CreateTask(TaskFields):
    """Create a task managed by the signer; ``total_bounty_amount`` moves into its bounty pot."""

    TYPE: ClassVar[str] = "create_task"
    total_bounty_amount: Roe = Roe(0)


@dataclass(frozen=True, slots=True)
class UpdateTask(TaskFields):
    """Replace task ``task_id`` by a new version: the remaining bounty moves, the old one is migrated.

    The total bounty is not a field: it is what the old task has left.
    """

    TYPE: ClassVar[str] = "update_task"
    task_id: TaskId = TaskId("")
    migration_description: str = ""


@dataclass(frozen=True, slots=True)
class SetActive(Transaction):
    """Activate or deactivate a task (manager only)."""

    TYPE: ClassVar[str] = "set_active"
    task_id: TaskId = TaskId("")
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class FundTask(Transaction):
    """Add ``amount`` ROE from the signer's wallet to a task's bounty pot."""

    TYPE: ClassVar[str] = "fund_task"
    task_id: TaskId = TaskId("")
    amount: Roe = Roe(0)


@dataclass(frozen=True, slots=True)
class Stake(Transaction):
    """Stake ``amount`` ROE of the signer (a staking key) on a task, and register its node URL."""

    TYPE: ClassVar[str] = "stake"
    task_id: TaskId = TaskId("")
    amount: Roe = Roe(0)
    ip_address: str = ""


@dataclass(frozen=True, slots=True)
class Withdraw(Transaction):
    """Unstake the signer's whole stake into the task's ``available_balances``."""

    TYPE: ClassVar[str] = "withdraw"
    task_id: TaskId = TaskId("")


@dataclass(frozen=True, slots=True)
class Submit(Transaction):
    """Submit the proof for ``round`` (at most 512 bytes), in that round's submission window."""

    TYPE: ClassVar[str] = "submit"
    task_id: TaskId = TaskId("")
    round: RoundNumber = RoundNumber(0)
    submission_value: str = ""


@dataclass(frozen=True, slots=True)
class AuditSubmission(Transaction):
    """Vote on ``candidate``'s proof for ``round``: false accuses, true defends an accused one."""

    TYPE: ClassVar[str] = "audit_submission"
    task_id: TaskId = TaskId("")
    round: RoundNumber = RoundNumber(0)
    candidate: Address = Address("")
    is_valid: bool = True


@dataclass(frozen=True, slots=True)
class SubmitDistribution(Transaction):
    """Commit the distribution list for ``round`` (only the node the beacon selected): the Merkle
    ``root`` of its ``chunks`` chunks, which then arrive as ``upload_distribution_chunk``."""

    TYPE: ClassVar[str] = "submit_distribution"
    task_id: TaskId = TaskId("")
    round: RoundNumber = RoundNumber(0)
    root: str = ""
    chunks: int = 0


@dataclass(frozen=True, slots=True)
class UploadDistributionChunk(Transaction):
    """Chunk ``index`` of the list the signer committed for ``round``, with its Merkle inclusion
    ``proof`` (sibling hashes, leaf first); checked against the committed root on arrival."""

    TYPE: ClassVar[str] = "upload_distribution_chunk"
    task_id: TaskId = TaskId("")
    round: RoundNumber = RoundNumber(0)
    index: int = 0
    rewards: dict[Address, Roe] = field(default_factory=dict)
    slashes: dict[Address, Roe] = field(default_factory=dict)
    proof: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AuditDistribution(Transaction):
    """Vote on the distribution list ``candidate`` submitted for ``round``."""

    TYPE: ClassVar[str] = "audit_distribution"
    task_id: TaskId = TaskId("")
    round: RoundNumber = RoundNumber(0)
    candidate: Address = Address("")
    is_valid: bool = True


@dataclass(frozen=True, slots=True)
class Payout(Transaction):
    """Settle ``round``: pay its audited distribution list, or mark it failed. Anyone may send it."""

    TYPE: ClassVar[str] = "payout"
    task_id: TaskId = TaskId("")
    round: RoundNumber = RoundNumber(0)


@dataclass(frozen=True, slots=True)
class ClaimReward(Transaction):
    """Move the signer's (a staking key's) available balance on a task to ``beneficiary``."""

    TYPE: ClassVar[str] = "claim_reward"
    task_id: TaskId = TaskId("")
    beneficiary: Address = Address("")


INSTRUCTIONS: dict[str, type[Transaction]] = {
    cls.TYPE: cls
    for cls in (
        Airdrop,
        Transfer,
        CreateTask,
        UpdateTask,
        SetActive,
        FundTask,
        Stake,
        Withdraw,
        Submit,
        AuditSubmission,
        SubmitDistribution,
        UploadDistributionChunk,
        AuditDistribution,
        Payout,
        ClaimReward,
    )
}
"""Instruction type name → transaction class."""

_REQUIRED = {
    "signer",
    "recent_slot",
    "task_id",
    "to",
    "amount",
    "round",
    "candidate",
    "beneficiary",
    "is_valid",
    "is_active",
    "root",
    "chunks",
    "index",
    "proof",
}
"""Fields a transaction must send even where the dataclass has a default: a vote or an activation
must say which way it goes."""


def decode_transaction(data: Any, *, canonical: bytes | None = None) -> Transaction:
    """Build the typed transaction for a JSON object, or raise ``MalformedTransactionError``.

    ``canonical`` may pass the object's canonical bytes when the caller already has them (the
    signature check does); the transaction id is their SHA-256.
    """
    if not isinstance(data, dict):
        raise MalformedTransactionError(
            f"a transaction must be a JSON object, got {type(data).__name__}", received=data
        )
    kind = data.get("type")
    cls = INSTRUCTIONS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedTransactionError(
            f"unknown instruction type {kind!r}; accepted: {', '.join(sorted(INSTRUCTIONS))}",
            received=kind,
        )
    layout = _layout(cls)
    names = layout.names
    if not data.keys() - {"type"} <= names:
        unknown = sorted(data.keys() - names - {"type"})
        raise MalformedTransactionError(
            f"{kind} has no field {unknown[0]!r}; its fields are: {', '.join(sorted(names))}",
            received=unknown[0],
        )
    for name in layout.required:
        if name not in data:
            raise MalformedTransactionError(f"{kind} needs field {name!r}", received=None)
    if layout.simple is not None:
        tx = _decode_simple(cls, cast(str, kind), layout.simple, data)
    else:
        fields = {key: value for key, value in data.items() if key != "type"}
        try:
            tx = from_plain(cls, fields)
        except ValueError as exc:
            raise MalformedTransactionError(f"{kind}: {exc}", received=data) from None
    for name in layout.addresses:
        if not is_address(getattr(tx, name)):
            raise MalformedTransactionError(
                f"{kind}.{name} must be a base58 public key (32-44 characters), got {getattr(tx, name)!r}",
                received=getattr(tx, name),
            )
    for name in layout.address_maps:
        for key in getattr(tx, name):
            if not is_address(key):
                raise MalformedTransactionError(
                    f"{kind}.{name} keys must be base58 public keys, got {key!r}", received=key
                )
    tx_id = sha256_hex(canonical if canonical is not None else canonical_bytes(data))
    object.__setattr__(tx, "tx_id", TxId(tx_id))
    return tx


def encode_transaction(tx: Transaction) -> dict[str, Any]:
    """The JSON object of a transaction, with its ``type`` (the inverse of ``decode_transaction``)."""
    from .codec import to_plain

    plain: dict[str, Any] = to_plain(tx)
    plain["type"] = tx.TYPE
    return plain


@dataclass(frozen=True, slots=True)
class _Layout:
    """What decoding a transaction class needs, worked out once per class."""

    names: frozenset[str]
    required: tuple[str, ...]
    """Fields that must be sent, in sorted order (the first missing one is reported)."""
    addresses: tuple[str, ...]
    """Fields that hold a public key."""
    address_maps: tuple[str, ...]
    """Fields that map public keys to amounts (a distribution list's rewards and slashes)."""
    simple: tuple[tuple[str, type], ...] | None
    """``(field, int | bool | str)`` when every field is one of those; ``None`` otherwise."""


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        hints = _hints(cls)
        names = _field_names(cls)
        plain: list[tuple[str, type]] = []
        for name in sorted(names):
            base = hints[name]
            while hasattr(base, "__supertype__"):
                base = base.__supertype__
            plain.append((name, base))
        simple = tuple(plain) if all(base in (int, bool, str) for _, base in plain) else None
        layout = _LAYOUTS[cls] = _Layout(
            names=frozenset(names),
            required=tuple(sorted(names & _REQUIRED)),
            addresses=tuple(sorted(name for name in names if hints[name] is Address)),
            address_maps=tuple(name for name in ("rewards", "slashes") if name in names),
            simple=simple,
        )
    return layout


def _decode_simple(
    cls: type[Transaction], kind: str, fields: tuple[tuple[str, type], ...], data: Any
) -> Transaction:
    """``from_plain`` for a class whose fields are all integers, booleans or strings, without the
    generic walk: the same checks and the same messages, at a fraction of the cost."""
    values = {}
    for name, base in fields:
        if name not in data:
            continue
        value = data[name]
        if base is int:
            if type(value) is not int:
                raise MalformedTransactionError(
                    f"{kind}: {cls.__name__}.{name}: expected an integer, got {value!r}", received=data
                )
        elif base is bool:
            if type(value) is not bool:
                raise MalformedTransactionError(
                    f"{kind}: {cls.__name__}.{name}: expected true or false, got {value!r}", received=data
                )
        elif type(value) is not str:
            raise MalformedTransactionError(
                f"{kind}: {cls.__name__}.{name}: expected a string, got {value!r}", received=data
            )
        values[name] = value
    return cls(**values)


_FIELD_NAMES: dict[type, set[str]] = {}


def _field_names(cls: type) -> set[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = {
            f.name for f in dataclasses.fields(cls) if f.metadata.get("encode", True)
        }
    return names
