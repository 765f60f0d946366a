"""What a staking key earned and lost per round, read from the ledger's log.

A payout's receipt holds totals, not one event per key (``RoundPaid``: the list's submitter, root,
totals and the slashes that were capped), so a round of 100,000 nodes has a small receipt. The
key's own amounts come from the list: its chunks (``upload_distribution_chunk``) are in the log
before the payout, and this keeps the key's entry of every chunk it reads; for a list whose chunks
came before the first entry read, it asks the ledger for that one entry
(``GET /tasks/{id}/rounds/{r}/distribution?key=``), which it holds while the round is recent. This
follows the log from where it last stopped (at most ``LOOKBACK`` entries back on first use), with a
reason for each slash.
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
    listed: dict[tuple[str, int, str], tuple[int, int]] = field(default_factory=dict)
    """``(task, round, list submitter) → (reward, slash)`` of this key, from the chunks read."""
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
        text = entry["tx"]
        if '"upload_distribution_chunk"' in text and self.staking_key in text:
            tx = orjson.loads(text)
            if tx.get("type") == "upload_distribution_chunk":
                key = (str(tx["task_id"]), int(tx["round"]), str(tx["signer"]))
                reward, slash = self.listed.get(key, (0, 0))
                reward += int(tx.get("rewards", {}).get(self.staking_key, 0))
                slash += int(tx.get("slashes", {}).get(self.staking_key, 0))
                self.listed[key] = (reward, slash)
            return
        if '"payout"' not in text or orjson.loads(text).get("type") != "payout":
            return
        receipt = self.client.transaction(entry["tx_id"])
        for event in receipt.get("events", []):
            if event.get("kind") != "RoundPaid":
                continue
            task_id, number = str(event["task_id"]), int(event["round"])
            reward, slash = self._amounts(task_id, number, str(event["distribution_submitter"]))
            slash = int(event.get("capped", {}).get(self.staking_key, slash))
            if not reward and not slash:
                continue
            outcome = self.outcomes.setdefault(
                (task_id, number), RoundOutcome(task_id, number, slot=int(entry["slot"]))
            )
            outcome.reward, outcome.slash = reward, slash
            if slash:
                outcome.reason = self._slash_reason(task_id, number)

    def _amounts(self, task_id: str, number: int, submitter: str) -> tuple[int, int]:
        """This key's ``(reward, slash)`` in the list ``submitter`` sent for the round."""
        found = self.listed.pop((task_id, number, submitter), None)
        if found is not None:
            return found
        try:
            page = self.client.distribution(task_id, number, submitter=submitter, key=self.staking_key)
        except Exception:  # noqa: BLE001 - pruned long ago and its chunks not read: nothing to show
            return 0, 0
        for item in page["entries"]:
            return int(item["reward"]), int(item["slash"])
        return 0, 0

    def _slash_reason(self, task_id: str, number: int) -> str:
        try:
            view = self.client.round(task_id, number, key=self.staking_key)
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
