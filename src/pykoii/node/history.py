"""What a staking key earned and lost per round, read from what concerns that key only.

A node reads its part of each task every tick (``GET /tasks/{id}/nodes/{key}``): the payout record
of every round the ledger still holds, and the key's own proof and audit trigger in each. For each
round found paid there and not read before, this asks the ledger for the key's one entry of the
paid list (``GET /tasks/{id}/rounds/{r}/distribution?key=``: the reward, and the slash as taken),
and keeps it, with a reason for a slash, in the node's journal (so a restart shows the same
history). A paid round costs a few hundred bytes whatever the round's size; the log, which holds
every node's transactions, is never read.

Not guaranteed: a round paid and pruned (``ROUNDS_KEPT`` settled rounds and the task's allowed
failed distributions) while neither the node's loop nor the dashboard read the task, e.g. a task
stopped on this node before its last rounds were paid and no dashboard page opened meanwhile, is
not in the history; its reward is still in the claimable balance.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..client import LedgerClient
from .journal import Journal

PAID = "PayoutSuccessful"


@dataclass
class RoundOutcome:
    """One round's reward or slash for the key."""

    task_id: str
    round: int
    reward: int = 0
    slash: int = 0
    reason: str = ""


@dataclass
class RewardHistory:
    """Rewards and slashes of ``staking_key``, per task and round, kept up to date by ``update``
    (and in ``journal`` when given)."""

    client: LedgerClient
    staking_key: str
    journal: Journal | None = None
    outcomes: dict[tuple[str, int], RoundOutcome] = field(default_factory=dict)
    read: set[tuple[str, int]] = field(default_factory=set)
    """``(task, round)`` of every paid round whose entry was read (or kept in the journal)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for task_id, number, reward, slash, reason in self.journal.outcomes() if self.journal else []:
            self.outcomes[(task_id, number)] = RoundOutcome(task_id, number, reward, slash, reason)
            self.read.add((task_id, number))

    def unread(self, task_id: str, state: dict[str, Any]) -> list[int]:
        """The rounds ``state`` (the node's part of the task) says are paid and not read yet."""
        record = state.get("distributions_audit_record", {})
        return sorted(int(r) for r, v in record.items() if v == PAID and (task_id, int(r)) not in self.read)

    def update(self, task_id: str, state: dict[str, Any]) -> None:
        """Read the key's entry of each paid round of ``state`` not read yet (blocking: one small
        read per such round; run it in a thread)."""
        with self._lock:
            for number in self.unread(task_id, state):
                try:
                    page = self.client.distribution(task_id, number, key=self.staking_key)
                except Exception:  # noqa: BLE001 - pruned meanwhile, or the ledger is away: next time
                    continue
                reward = slash = 0
                for item in page["entries"]:
                    reward, slash = int(item["reward"]), int(item["slash"])
                self.read.add((task_id, number))
                if not reward and not slash:
                    continue
                reason = self._slash_reason(state, number) if slash else ""
                self.outcomes[(task_id, number)] = RoundOutcome(task_id, number, reward, slash, reason)
                if self.journal is not None:
                    self.journal.put_outcome(task_id, number, reward, slash, reason)

    def _slash_reason(self, state: dict[str, Any], number: int) -> str:
        """Why the round's list slashed the key, from its proof and audit trigger in ``state``."""
        me = self.staking_key
        trigger = state.get("submissions_audit_trigger", {}).get(str(number), {}).get(me)
        if trigger:
            votes = trigger.get("votes", {}).values()
            false = sum(1 for v in votes if not v.get("is_valid"))
            return (
                f"your submission for round {number} was audited and judged invalid "
                f"({false} false vote{'s' if false != 1 else ''} against {len(votes) - false} true)"
            )
        value = state.get("submissions", {}).get(str(number), {}).get(me, {}).get("submission_value")
        if value is not None:
            return f"the round {number} distribution list slashed your submission {value[:40]!r}"
        return f"the round {number} distribution list slashed this node's stake"

    def for_task(self, task_id: str) -> list[RoundOutcome]:
        """The task's outcomes, oldest round first."""
        return sorted((o for (t, _), o in self.outcomes.items() if t == task_id), key=lambda o: o.round)
