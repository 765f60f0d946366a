"""What a simulation produces: per-round reports, incentive property checks, the result.

The engine is ``pykoii.testing.engine``; the public entry point is ``pykoii.testing.simulate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import TaskConfig
from ..ledger import LedgerState
from ..ledger.codec import canonical_bytes, sha256_hex
from .nodes import FAULTY, HONEST, SimulatedNode

PHASES = ("task", "submission", "audit", "distribution", "distribution audit")

PROPERTY_HONEST = "honest nodes never slashed"
PROPERTY_BOUNTY = "payouts within bounty"
PROPERTY_CAUGHT = "faulty submitters caught"


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


__all__ = [
    "PHASES",
    "PROPERTY_BOUNTY",
    "PROPERTY_CAUGHT",
    "PROPERTY_HONEST",
    "PropertyCheck",
    "RoundReport",
    "SimulationResult",
]
