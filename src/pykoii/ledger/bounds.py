"""The bounds of every transaction field, in one table: the decoder and the OpenAPI schema read it.

Every field of every instruction, nested ones included, has an entry in ``FIELDS``: its JSON type,
its accepted range or length, and a one-line meaning. ``transactions.decode_transaction`` refuses
a value outside its type or the representable range (``MalformedTransactionError``), and the
instruction handlers refuse a value outside its *accepted* range with the error the rule names
(``InvalidTaskConfigError`` for a task field, ``SubmissionTooLargeError`` for a proof), reading
the same numbers from here. ``transaction_schema`` turns the table into JSON Schema, so a fuzzer
and a client see exactly what the ledger accepts.

Integers are JSON integers from 0 to ``MAX_INTEGER`` (2^63 - 1): no negative value has a meaning
in a transaction, and every integer fits a signed 64-bit column and is exact in orjson. A JSON
number with a fraction, an exponent or more than 64 bits is not a JSON integer to the service's
parser and is refused as such. Strings are valid Unicode (a lone surrogate is refused), measured
in characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .types import MAX_SUBMISSION_BYTES

MAX_INTEGER = 2**63 - 1
"""The largest integer a transaction, a state field or an answer of the service holds."""

MAX_ROUND_TIME = 2**32
"""The longest round, in slots (at 400 ms a slot, about 54 years)."""

ADDRESS_PATTERN = "^[1-9A-HJ-NP-Za-km-z]{32,44}$"


@dataclass(frozen=True, slots=True)
class Bound:
    """What one field accepts."""

    kind: str
    """``integer``, ``boolean``, ``string``, ``address``, ``tags`` (list of RequirementTag objects),
    ``amounts`` (object: address -> integer) or ``hashes`` (list of hex strings)."""
    description: str
    low: int = 0
    """Integers: the smallest accepted value. Strings: the fewest characters."""
    high: int = MAX_INTEGER
    """Integers: the largest accepted value. Strings: the most characters. Lists: the most items."""
    checked_by: str = ""
    """The error a handler raises for a value out of range, when the rule has its own error; empty
    when the decoder refuses it (``MalformedTransactionError``)."""


def _int(description: str, low: int = 0, high: int = MAX_INTEGER, checked_by: str = "") -> Bound:
    return Bound("integer", description, low, high, checked_by)


def _str(description: str, high: int, low: int = 0, checked_by: str = "") -> Bound:
    return Bound("string", description, low, high, checked_by)


_CONFIG = "InvalidTaskConfigError"


def _address(description: str) -> Bound:
    return Bound("address", description, 32, 44)


MAX_ALLOWED_FAILED_DISTRIBUTIONS = 16
MAX_SAMPLE_SIZE = 64
MAX_ESCALATION_SIZE = 256
DEFAULT_ESCALATION_SIZE = 33
"""P(Bin(33, 0.8) >= 17) ~ 0.99995: with 20 % colluders on the panel, an honest majority of votes
cast wins with probability above 1 - 1e-3 per accused proof (when honest panel members vote)."""
DEFAULT_VOTE_PENALTY_PERCENT = 10

FIELDS: dict[str, Bound] = {
    "signer": _address("the account whose key signed the transaction"),
    "recent_slot": _int("a slot the sender saw recently (at most 150 slots old)"),
    "to": _address("the receiving wallet"),
    "amount": _int("ROE moved (positive)", 1, checked_by="MalformedTransactionError"),
    "task_id": _address("the task"),
    "task_name": _str("the task's name", 24, 1, checked_by=_CONFIG),
    "task_description": _str("what the task does", 64, checked_by=_CONFIG),
    "task_audit_program": _str("CID or file name of the task code", 64, 1, checked_by=_CONFIG),
    "task_executable_network": _str("IPFS, ARWEAVE or DEVELOPMENT", 16, 1, checked_by=_CONFIG),
    "bounty_amount_per_round": _int("ROE one round may pay", 1, checked_by=_CONFIG),
    "total_bounty_amount": _int("ROE moved into the bounty pot", 1, checked_by=_CONFIG),
    "round_time": _int(
        "slots per round (>= submission_window + audit_window + 2: judgement window, then payout slot)",
        5,
        MAX_ROUND_TIME,
        checked_by=_CONFIG,
    ),
    "submission_window": _int(
        "slots for proofs at the start of a round", 1, MAX_ROUND_TIME, checked_by=_CONFIG
    ),
    "audit_window": _int(
        "slots after the submission window: reveals (the first half), then votes",
        2,
        MAX_ROUND_TIME,
        checked_by=_CONFIG,
    ),
    "minimum_stake_amount": _int("the least stake that may submit", checked_by=_CONFIG),
    "allowed_failed_distributions": _int(
        "distribution re-submissions after the first attempt",
        0,
        MAX_ALLOWED_FAILED_DISTRIBUTIONS,
        checked_by=_CONFIG,
    ),
    "task_metadata": _str("CID of the task's metadata", 64, checked_by=_CONFIG),
    "task_vars": _str("task variables", 64, checked_by=_CONFIG),
    "koii_vars": _str("Koii variables", 64, checked_by=_CONFIG),
    "requirements_tags": Bound("tags", "config-task.yml's requirementsTags", 0, 32, _CONFIG),
    "type": _str(
        "a requirement tag's type (GLOBAL_VARIABLE, TASK_VARIABLE, CPU, ...)", 32, 1, checked_by=_CONFIG
    ),
    "value": _str("a requirement tag's value", 64, checked_by=_CONFIG),
    "description": _str("a requirement tag's description", 256, checked_by=_CONFIG),
    "sample_size": _int(
        "auditors assigned to each proof by the beacon", 1, MAX_SAMPLE_SIZE, checked_by=_CONFIG
    ),
    "escalation_size": _int(
        "panel that judges an accused proof (the sample first)", 1, MAX_ESCALATION_SIZE, checked_by=_CONFIG
    ),
    "vote_penalty_percent": _int(
        "share of its stake a voter on the losing side of an accused proof's judgement loses",
        0,
        100,
        checked_by=_CONFIG,
    ),
    "commitment": Bound(
        "hex",
        "sha256 of (task, round, submitter, secret); without one the proof can never be revealed",
        0,
        64,
    ),
    "secret": Bound("hex", "the beacon secret committed with the proof", 64, 64),
    "migration_description": _str("why the task was updated", 256),
    "is_active": Bound("boolean", "whether the task runs"),
    "ip_address": _str("the node's http(s):// URL, or empty", 256, checked_by="MalformedTransactionError"),
    "round": _int("the round"),
    "submission_value": _str(
        f"the proof (at most {MAX_SUBMISSION_BYTES} bytes of UTF-8)",
        MAX_SUBMISSION_BYTES,
        checked_by="SubmissionTooLargeError",
    ),
    "candidate": _address("the node whose proof or list is voted on"),
    "is_valid": Bound("boolean", "false accuses, true defends"),
    "root": _str(
        "lowercase hex SHA-256 Merkle root of the list's chunks",
        64,
        64,
        checked_by="InvalidDistributionListError",
    ),
    "chunks": _int("how many chunks the list has", 1, checked_by="InvalidDistributionListError"),
    "index": _int("which chunk of the list this is", checked_by="InvalidDistributionListError"),
    "proof": Bound("hashes", "the chunk's Merkle inclusion proof: sibling hashes, leaf to root", 0, 64),
    "rewards": Bound("amounts", "ROE paid per staking key"),
    "slashes": Bound("amounts", "ROE taken per staking key"),
    "beneficiary": _address("the wallet that receives the claimed balance"),
}
"""Every transaction field name → its bound. Field names mean the same in every instruction."""

TAG_FIELDS = ("type", "value", "description")
"""The fields of one requirement tag (``type`` required)."""


def _schema(name: str) -> dict[str, Any]:
    bound = FIELDS[name]
    schema: dict[str, Any] = {"description": bound.description}
    if bound.kind == "integer":
        schema |= {"type": "integer", "minimum": bound.low, "maximum": bound.high}
    elif bound.kind == "boolean":
        schema |= {"type": "boolean"}
    elif bound.kind == "string":
        schema |= {"type": "string", "minLength": bound.low, "maxLength": bound.high}
    elif bound.kind == "hex":
        hexes = f"[0-9a-f]{{{bound.high}}}"
        schema |= {"type": "string", "pattern": f"^({hexes})?$" if bound.low == 0 else f"^{hexes}$"}
    elif bound.kind == "address":
        schema |= {"type": "string", "pattern": ADDRESS_PATTERN}
    elif bound.kind == "amounts":
        schema |= {
            "type": "object",
            "propertyNames": {"pattern": ADDRESS_PATTERN},
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER},
        }
    elif bound.kind == "hashes":
        schema |= {"type": "array", "maxItems": bound.high, "items": {"type": "string", "maxLength": 64}}
    else:
        schema |= {
            "type": "array",
            "maxItems": bound.high,
            "items": {
                "type": "object",
                "required": ["type"],
                "additionalProperties": False,
                "properties": {tag: _schema(tag) for tag in TAG_FIELDS},
            },
        }
    return schema


def transaction_schema(kind: str, fields: list[str], required: list[str]) -> dict[str, Any]:
    """JSON Schema of one instruction's transaction object."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", *required],
        "properties": {"type": {"const": kind}} | {name: _schema(name) for name in fields},
    }
