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
PROPERTY_WINDOWS = "phases end within their windows"
PROPERTY_ERRORS = "task code and routes ran without errors"
PROPERTY_SUPPLY = "no ROE created or stranded"


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
    penalized: dict[str, int] = field(default_factory=dict)
    """Voters on the losing side of this round's judgements, and what it cost them."""
    caught: set[str] = field(default_factory=set)
    """Keys the paid list slashed, or did not reward (a node whose whole stake is gone has nothing
    left to slash: its garbage is caught by not being paid)."""


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
    overruns: list[str] = field(default_factory=list)
    """Each phase that ended after its window closed, with its numbers (``schedule.overrun``)."""
    slot_ms: float = 400.0
    """The virtual slot length the run used."""
    logs: list[str] = field(default_factory=list)
    """Every ``ctx.log`` line of every node, in order: ``"node 3 INFO stored ..."``."""

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


def check_properties(
    nodes: list[SimulatedNode],
    reports: list[RoundReport],
    slashes: dict[str, int],
    corrupted: dict[int, set[str]],
    faulty: set[str],
    bounty_per_round: int,
    errors: list[str],
    overruns: list[str],
) -> list[PropertyCheck]:
    """The incentive properties of a run, plus the two a real network would show: every phase met
    its window, and no task code or route failed (an auditor that needs a failing route fails)."""
    index = {node.public_key: node.index for node in nodes}
    honest_slashed = sorted(key for key in slashes if key not in faulty)
    over = [
        f"round {r.round} paid {r.reward_total} ROE" for r in reports if r.reward_total > bounty_per_round
    ]
    missed = []
    for report in reports:
        if report.outcome != "paid":
            continue
        for key in sorted(corrupted.get(report.round, ())):
            if key not in report.caught:
                missed.append(f"round {report.round}: node {index[key]} ({key[:8]}…)")
    unpaid = [r.round for r in reports if r.outcome != "paid" and r.submissions]
    caught_detail = "; ".join(missed) if missed else "every corrupted proof of a paid round was slashed"
    if unpaid and not missed:
        caught_detail += f" (rounds not paid: {', '.join(map(str, unpaid))})"
    return [
        PropertyCheck(
            PROPERTY_HONEST,
            not honest_slashed,
            "slashed: " + ", ".join(f"node {index[k]}" for k in honest_slashed)
            if honest_slashed
            else "no honest node lost stake",
        ),
        PropertyCheck(
            PROPERTY_BOUNTY,
            not over,
            "; ".join(over) if over else "every round paid at most bounty_amount_per_round",
        ),
        PropertyCheck(PROPERTY_CAUGHT, not missed, caught_detail),
        PropertyCheck(
            PROPERTY_WINDOWS,
            not overruns,
            _first(overruns) if overruns else "every phase ended inside its window",
        ),
        PropertyCheck(
            PROPERTY_ERRORS,
            not errors,
            _first(errors) if errors else "no phase raised and no route failed",
        ),
    ]


def _first(lines: list[str], count: int = 3) -> str:
    more = len(lines) - count
    return "; ".join(lines[:count]) + (f"; … and {more} more" if more > 0 else "")


__all__ = [
    "PHASES",
    "PROPERTY_BOUNTY",
    "PROPERTY_CAUGHT",
    "PROPERTY_ERRORS",
    "PROPERTY_HONEST",
    "PROPERTY_WINDOWS",
    "PropertyCheck",
    "RoundReport",
    "SimulationResult",
    "check_properties",
]
