"""What a simulation produces: simulated nodes, per-round reports, property checks, the result.

The engine is ``pykoii.simulator``; the public entry point is ``pykoii.testing.simulate``.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from .config import TaskConfig
from .keys import Keypair
from .ledger import LedgerState
from .ledger.codec import canonical_bytes, sha256_hex, to_plain
from .ledger.state import TaskState
from .ledger.types import MAX_SUBMISSION_BYTES
from .node.schedule import (
    NodeRecord,
)
from .sdk import Task

HONEST, FAULTY, LAZY, OFFLINE = "honest", "faulty", "lazy", "offline"
PHASES = ("task", "submission", "audit", "distribution", "distribution audit")

PROPERTY_HONEST = "honest nodes never slashed"
PROPERTY_BOUNTY = "payouts within bounty"
PROPERTY_CAUGHT = "faulty submitters caught"


class MemoryStore:
    """An in-memory ``KeyValueStore`` (values are copied in and out, as a JSON store would)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        value = self._data.get(key, default)
        return value if isinstance(value, str | int | float | bool | type(None)) else copy.deepcopy(value)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value if isinstance(value, str | int | float | bool) else copy.deepcopy(value)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._data)


class StateReader:
    """``LedgerReader`` over a task in a ``LedgerState`` (Koii's field names, plain JSON values)."""

    def __init__(self, state: LedgerState, task_id: str) -> None:
        self._state = state
        self._task_id = task_id

    @property
    def _task(self) -> TaskState:
        return self._state.tasks[self._task_id]  # type: ignore[index]

    def task_state(self) -> dict[str, Any]:
        plain: dict[str, Any] = to_plain(self._task)
        return plain

    def submissions(self, round_number: int) -> dict[str, dict[str, Any]]:
        plain: dict[str, dict[str, Any]] = to_plain(self._task.submissions.get(round_number, {}))  # type: ignore[call-overload]
        return plain

    def audit_triggers(self, round_number: int) -> dict[str, dict[str, Any]]:
        plain: dict[str, dict[str, Any]] = to_plain(
            self._task.submissions_audit_trigger.get(round_number, {})  # type: ignore[call-overload]
        )
        return plain

    def stakes(self) -> dict[str, int]:
        return {str(key): int(amount) for key, amount in self._task.stake_list.items()}

    def node_urls(self) -> dict[str, str]:
        return {str(key): url for key, url in self._task.ip_address_list.items()}


@dataclass
class SimulatedNode:
    """One virtual node."""

    index: int
    public_key: str
    role: str
    keypair: Keypair = field(repr=False)
    task: Task = field(repr=False)
    store: MemoryStore = field(repr=False)
    record: NodeRecord = field(default_factory=NodeRecord, repr=False)


@dataclass
class RoundReport:
    """What happened to one round, for the timeline."""

    round: int
    work: range
    submission_window: range
    audit_window: range
    submissions: int = 0
    false_votes: int = 0
    true_votes: int = 0
    triggered: list[str] = field(default_factory=list)
    lists: list[tuple[int, int, str]] = field(default_factory=list)
    """``(attempt, slot, submitter)`` of each distribution list sent."""
    list_votes: int = 0
    payout_slot: int | None = None
    outcome: str = "unsettled"
    reward_total: int = 0
    slash_total: int = 0
    rewarded: int = 0
    slashed: dict[str, int] = field(default_factory=dict)


@dataclass
class PropertyCheck:
    """One incentive property and whether the run kept it."""

    name: str
    ok: bool
    detail: str


@dataclass
class SimulationResult:
    """Everything a simulation did. Amounts are ROE."""

    task_id: str
    config: TaskConfig
    nodes: list[SimulatedNode]
    rounds: int
    seed: int
    stake: int
    log: list[dict[str, Any]]
    """Every transaction sent, in order: ``{"slot", "tx": envelope, "events"}`` or ``{..., "error"}``."""
    reports: list[RoundReport]
    rewards: dict[str, int]
    slashes: dict[str, int]
    final_stakes: dict[str, int]
    timings: dict[str, list[float]]
    """Milliseconds per call of each phase (``PHASES``)."""
    task_errors: list[str]
    properties: list[PropertyCheck]
    slots: int
    final_state: LedgerState = field(repr=False)

    @property
    def ok(self) -> bool:
        """Whether every incentive property held."""
        return all(check.ok for check in self.properties)

    @property
    def failed(self) -> list[str]:
        """The names of the properties that failed."""
        return [check.name for check in self.properties if not check.ok]

    def keys(self, role: str) -> list[str]:
        """Public keys of the nodes with ``role`` (``honest``, ``faulty``, ``lazy``, ``offline``)."""
        return [node.public_key for node in self.nodes if node.role == role]

    @property
    def faulty_keys(self) -> list[str]:
        return self.keys(FAULTY)

    @property
    def honest_keys(self) -> list[str]:
        return self.keys(HONEST)

    def reward(self, key: str) -> int:
        return self.rewards.get(key, 0)

    def slashed(self, key: str) -> int:
        return self.slashes.get(key, 0)

    def refused(self) -> list[dict[str, Any]]:
        """Log entries of transactions the ledger refused."""
        return [entry for entry in self.log if "error" in entry]

    def log_bytes(self) -> bytes:
        """The transaction log as canonical JSON bytes (what determinism is checked on)."""
        return canonical_bytes(self.log)

    def log_digest(self) -> str:
        return sha256_hex(self.log_bytes())


def corrupt(value: str, public_key: str) -> str:
    """A faulty node's proof: never equal to ``value``, at most 512 bytes."""
    return ("corrupted:" + hashlib.sha256(f"{public_key}:{value}".encode()).hexdigest())[
        :MAX_SUBMISSION_BYTES
    ]


__all__ = [
    "FAULTY",
    "HONEST",
    "LAZY",
    "OFFLINE",
    "PHASES",
    "PROPERTY_BOUNTY",
    "PROPERTY_CAUGHT",
    "PROPERTY_HONEST",
    "MemoryStore",
    "PropertyCheck",
    "RoundReport",
    "SimulatedNode",
    "SimulationResult",
    "StateReader",
    "corrupt",
]
