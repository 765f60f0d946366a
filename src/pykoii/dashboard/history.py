"""What a staking key earned and lost per round, read from the ledger's log.

The ledger keeps a round's lists only a few rounds after its payout, but its log keeps every
``payout`` transaction, and each one's receipt holds ``Rewarded`` and ``Slashed`` events. This
follows the log from where it last stopped (at most ``LOOKBACK`` entries back on first use) and
keeps the events for one staking key, with a reason for each slash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..client import LedgerClient

LOOKBACK = 50_000
"""How far back in the log the first read starts."""
PAGE = 5000


@dataclass
class RoundOutcome:
    """One round's reward or slash for the key."""

    task_id: str
    round: int
    reward: int = 0
    slash: int = 0
    reason: str = ""
    slot: int = 0


@dataclass
class RewardHistory:
    """Rewards and slashes of ``staking_key``, per task and round, kept up to date by ``update``."""

    client: LedgerClient
    staking_key: str
    cursor: int | None = None
    outcomes: dict[tuple[str, int], RoundOutcome] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self) -> None:
        """Read the log entries since the last call (blocking; run it in a thread)."""
        with self._lock:
            if self.cursor is None:
                self.cursor = max(0, int(self.client.slot()["seq"]) - LOOKBACK)
            while True:
                entries = self.client.log(self.cursor, limit=PAGE)["entries"]
                for entry in entries:
                    self._read(entry)
                    self.cursor = int(entry["seq"])
                if len(entries) < PAGE:
                    return

    def _read(self, entry: dict[str, Any]) -> None:
        if '"payout"' not in entry["tx"]:
            return
        tx = orjson.loads(entry["tx"])
        if tx.get("type") != "payout":
            return
        receipt = self.client.transaction(entry["tx_id"])
        for event in receipt.get("events", []):
            if event.get("staker") != self.staking_key or event.get("kind") not in ("Rewarded", "Slashed"):
                continue
            key = (str(event["task_id"]), int(event["round"]))
            outcome = self.outcomes.setdefault(key, RoundOutcome(*key, slot=int(entry["slot"])))
            if event["kind"] == "Rewarded":
                outcome.reward += int(event["amount"])
            else:
                outcome.slash += int(event["amount"])
                outcome.reason = self._slash_reason(*key)

    def _slash_reason(self, task_id: str, number: int) -> str:
        try:
            view = self.client.round(task_id, number)
        except Exception:  # noqa: BLE001 - the reason is a courtesy; the slash itself is on record
            view = {}
        trigger = view.get("submissions_audit_trigger", {}).get(self.staking_key)
        if trigger:
            votes = trigger.get("votes", {}).values()
            false = sum(1 for v in votes if not v.get("is_valid"))
            return (
                f"your submission for round {number} was audited and judged invalid "
                f"({false} false vote{'s' if false != 1 else ''} against {len(votes) - false} true)"
            )
        value = view.get("submissions", {}).get(self.staking_key, {}).get("submission_value")
        if value is not None:
            return f"the round {number} distribution list slashed your submission {value[:40]!r}"
        return f"the round {number} distribution list slashed this node's stake"

    def for_task(self, task_id: str) -> list[RoundOutcome]:
        """The task's outcomes, oldest round first."""
        return sorted((o for (t, _), o in self.outcomes.items() if t == task_id), key=lambda o: o.round)
