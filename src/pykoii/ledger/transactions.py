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
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import MalformedTransactionError
from .bounds import (
    DEFAULT_ESCALATION_SIZE,
    DEFAULT_VOTE_PENALTY_PERCENT,
    FIELDS,
    MAX_INTEGER,
    TAG_FIELDS,
    Bound,
    transaction_schema,
)
from .checks import HEX_HASH, Checker, compile_checker, valid_unicode
from .codec import canonical_bytes, is_address, sha256_hex
from .state import RequirementTag
from .types import Address, Roe, RoundNumber, Slot, TaskId, TxId


@dataclass(frozen=True, slots=True)
class Transaction:
    """Fields every transaction has."""

    TYPE: ClassVar[str] = ""
    signer: Address
    recent_slot: Slot
    tx_id: TxId = field(default=TxId(""), compare=False, metadata={"encode": False})

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by field values in order (the signature workers send every verified transaction
        # back this way): the default of a slots dataclass looks up ``fields()`` per object on
        # both ends, about 10 us a transaction on the service's event loop.
        cls = type(self)
        return cls, _field_values(cls)(self)


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
    escalation_size: int = DEFAULT_ESCALATION_SIZE
    vote_penalty_percent: int = DEFAULT_VOTE_PENALTY_PERCENT


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
    commitment: str = ""


@dataclass(frozen=True, slots=True)
class Reveal(Transaction):
    """Reveal the beacon secret committed with the signer's proof for ``round`` (reveal window)."""

    TYPE: ClassVar[str] = "reveal"
    task_id: TaskId = TaskId("")
    round: RoundNumber = RoundNumber(0)
    secret: str = ""


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
        Reveal,
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
    "secret",
    "root",
    "chunks",
    "index",
    "proof",
}
"""Fields a transaction must send even where the dataclass has a default: a vote or an activation
must say which way it goes."""


_FIELD_VALUES: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _field_values(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """The function giving a transaction's field values in ``__init__`` order, as one tuple (one
    ``operator.attrgetter`` per class: every class has at least three fields)."""
    values = _FIELD_VALUES.get(cls)
    if values is None:
        values = _FIELD_VALUES[cls] = operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))
    return values


def decode_transaction(data: Any, *, canonical: bytes | None = None) -> Transaction:
    """Build the typed transaction for a JSON object, or raise ``MalformedTransactionError``.

    Every field is checked against ``bounds.FIELDS``: its JSON type, no unknown keys (nested
    requirement tags included), integers from 0 to 2^63 - 1, strings of valid Unicode within their
    length (where no handler rule owns the length). ``canonical`` may pass the object's canonical
    bytes when the caller already has them (the signature check does); the transaction id is their
    SHA-256.
    """
    if not isinstance(data, dict):
        raise MalformedTransactionError(
            f"a transaction must be a JSON object, got {type(data).__name__}", received=data
        )
    kind = data.get("type")
    cls = INSTRUCTIONS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedTransactionError(
            f"unknown instruction type {_short(kind)}; accepted: {', '.join(sorted(INSTRUCTIONS))}",
            received=kind if isinstance(kind, str) and len(kind) <= 80 else _short(kind),
        )
    checked = _checker(cls)(data) if type(data) is dict else None
    tx = checked if checked is not None else _decode_checked(cls, kind, data)
    if canonical is None:
        try:
            canonical = canonical_bytes(data)
        except (TypeError, ValueError) as exc:
            raise MalformedTransactionError(f"{kind} cannot be encoded: {exc}", received=None) from None
    object.__setattr__(tx, "tx_id", TxId(sha256_hex(canonical)))
    return tx


def _decode_checked(cls: type[Transaction], kind: Any, data: dict[Any, Any]) -> Transaction:
    """The definition of decoding, field by field: the transaction, or the error that names the
    first problem (unknown field, missing field, then each field in sorted order)."""
    layout = _layout(cls)
    names = layout.names
    if not data.keys() - {"type"} <= names:
        unknown = sorted(str(key) for key in data.keys() - names - {"type"})
        raise MalformedTransactionError(
            f"{kind} has no field {_short(unknown[0])}; its fields are: {', '.join(sorted(names))}",
            received=_short(unknown[0]),
        )
    for name in layout.required:
        if name not in data:
            raise MalformedTransactionError(f"{kind} needs field {name!r}", received=None)
    values = {
        name: _decode_field(cls.TYPE, cls.__name__, name, data[name])
        for name in layout.fields
        if name in data
    }
    return cls(**values)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about hostile input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode_field(kind: str, class_name: str, name: str, value: Any) -> Any:
    bound = FIELDS[name]
    where = f"{kind}.{name}"
    typed = f"{kind}: {class_name}.{name}"
    if bound.kind == "integer":
        return _integer(where, typed, value, bound)
    if bound.kind == "boolean":
        if type(value) is not bool:
            raise MalformedTransactionError(
                f"{typed}: expected true or false, got {_short(value)}", received=value
            )
        return value
    if bound.kind == "hex":
        if type(value) is not str or not (HEX_HASH.fullmatch(value) or (value == "" and bound.low == 0)):
            raise MalformedTransactionError(
                f"{where} must be {bound.high} lowercase hex characters ({bound.description}), "
                f"got {_short(value)}",
                received=_short(value),
            )
        return value
    if bound.kind in ("string", "address"):
        return _string(where, typed, value, bound)
    if bound.kind == "amounts":
        if not isinstance(value, dict):
            raise MalformedTransactionError(
                f"{typed}: expected an object of public key -> ROE, got {_short(value)}",
                received=_short(value),
            )
        amounts = {}
        for key, amount in value.items():
            if not is_address(key):
                raise MalformedTransactionError(
                    f"{where} keys must be base58 public keys, got {_short(key)}", received=_short(key)
                )
            amounts[Address(key)] = Roe(_integer(f"{where}[{key}]", f"{typed}[{key}]", amount, _AMOUNT))
        return amounts
    if bound.kind == "hashes":
        if not isinstance(value, list) or len(value) > bound.high:
            raise MalformedTransactionError(
                f"{typed}: expected a list of at most {bound.high} hex hashes, got {_short(value)}",
                received=_short(value),
            )
        return [_string(f"{where}[{i}]", f"{typed}[{i}]", item, _HASH) for i, item in enumerate(value)]
    return _tags(where, value)


_HASH = Bound("string", "a hex SHA-256", 0, 64)


_AMOUNT = Bound("integer", "ROE", checked_by="InvalidDistributionListError")
"""A distribution list's amounts: ``validate_list`` refuses negative ones, naming the key."""


def _integer(where: str, typed: str, value: Any, bound: Bound) -> int:
    if type(value) is not int:
        hint = " (a JSON number with a fraction, an exponent or more than 64 bits is not an integer)"
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        raise MalformedTransactionError(
            f"{typed}: expected an integer, got {_short(value)}" + (hint if number else ""),
            received=_short(value),
        )
    # A handler owns the accepted range of a ``checked_by`` field (and names its own error); the
    # decoder still refuses what no signed 64-bit integer holds.
    low, high = (-MAX_INTEGER - 1, MAX_INTEGER) if bound.checked_by else (bound.low, bound.high)
    if not low <= value <= high:
        raise MalformedTransactionError(
            f"{where} is {_short(value)}; accepted: an integer from {low} to {high} ({bound.description})",
            received=_short(value),
        )
    return value


def _string(where: str, typed: str, value: Any, bound: Bound) -> str:
    if type(value) is not str:
        raise MalformedTransactionError(
            f"{typed}: expected a string, got {_short(value)}", received=_short(value)
        )
    if bound.kind == "address":
        if not is_address(value):
            raise MalformedTransactionError(
                f"{where} must be a base58 public key (32-44 characters), got {_short(value)}",
                received=_short(value),
            )
        return value
    if not bound.checked_by and not bound.low <= len(value) <= bound.high:
        raise MalformedTransactionError(
            f"{where} is {len(value)} characters; accepted: {bound.low} to {bound.high} "
            f"({bound.description})",
            received=_short(value),
        )
    if not (value.isascii() or valid_unicode(value)):
        raise MalformedTransactionError(
            f"{where} is not valid Unicode (it holds a lone surrogate): {_short(value)}",
            received=_short(value),
        )
    return value


def _tags(where: str, value: Any) -> list[RequirementTag]:
    if not isinstance(value, list):
        raise MalformedTransactionError(
            f"{where}: expected a list of tags, got {_short(value)}", received=_short(value)
        )
    tags = []
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(item, dict):
            raise MalformedTransactionError(
                f"{at}: expected an object {{type, value, description}}, got {_short(item)}",
                received=_short(item),
            )
        unknown = sorted(str(key) for key in item.keys() - set(TAG_FIELDS))
        if unknown:
            raise MalformedTransactionError(
                f"{at} has no field {_short(unknown[0])}; a tag's fields are: {', '.join(TAG_FIELDS)}",
                received=_short(unknown[0]),
            )
        if "type" not in item:
            raise MalformedTransactionError(f"{at} needs field 'type'", received=None)
        fields = {name: _string(f"{at}.{name}", f"{at}.{name}", item[name], FIELDS[name]) for name in item}
        tags.append(RequirementTag(**fields))
    return tags


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
    fields: tuple[str, ...]
    required: tuple[str, ...]
    """Fields that must be sent, in sorted order (the first missing one is reported)."""


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is None:
        names = {f.name for f in dataclasses.fields(cls) if f.metadata.get("encode", True)}
        layout = _LAYOUTS[cls] = _Layout(
            names=frozenset(names), fields=tuple(sorted(names)), required=tuple(sorted(names & _REQUIRED))
        )
    return layout


_CHECKERS: dict[type, Checker] = {}


def _checker(cls: type[Transaction]) -> Checker:
    """``cls``'s compiled check (``checks.compile_checker``), built once per class."""
    checker = _CHECKERS.get(cls)
    if checker is None:
        layout = _layout(cls)
        checker = _CHECKERS[cls] = compile_checker(cls, layout.names, layout.required)
    return checker


def transaction_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every instruction's transaction object, from ``bounds.FIELDS`` (for OpenAPI)."""
    return {
        kind: transaction_schema(kind, list(_layout(cls).fields), list(_layout(cls).required))
        for kind, cls in INSTRUCTIONS.items()
    }
