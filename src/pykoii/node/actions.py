"""What a node does for a task (``Action``, ``ActionKind``) and what it already did (``NodeRecord``).

``pykoii.node.schedule`` says which actions are due; the runner (the node or the simulator) records
each one it carried out in the task's ``NodeRecord``, which the node persists in its journal.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ActionKind(enum.Enum):
    """What a node does; the value is the name used in keys, logs and JSON."""

    RUN_TASK = "run_task"
    """Run ``Task.task`` for ``round`` (the work; once per round)."""
    SUBMIT_PROOF = "submit_proof"
    """Run ``Task.submission`` for ``round`` and send a ``submit`` transaction (with the commitment
    to this node's beacon secret, ``submit_body``)."""
    REVEAL = "reveal"
    """Reveal the beacon secret committed with this node's proof for ``round`` (``reveal_body``)."""
    AUDIT_PROOFS = "audit_proofs"
    """Run ``Task.audit`` on ``candidates`` and cast ``votes`` (``audit_submission``)."""
    SUBMIT_DISTRIBUTION = "submit_distribution"
    """Run ``Task.distribution`` for ``round`` and send ``submit_distribution`` (attempt ``attempt``)."""
    AUDIT_DISTRIBUTION = "audit_distribution"
    """Recompute the list, compare it with the candidate's; cast ``votes`` (``audit_distribution``)."""
    PAYOUT = "payout"
    """Send ``payout`` for ``round``."""


@dataclass(frozen=True, slots=True)
class Action:
    """One thing due now. ``round`` is the round the action is about, not the current round."""

    kind: ActionKind
    round: int
    attempt: int = 0
    """The distribution attempt (0 first) for the two distribution actions."""
    candidates: tuple[tuple[str, str], ...] = ()
    """Audits to run: ``(staking key, submission_value)``; for a distribution, the list's submitter
    and its digest."""
    votes: tuple[tuple[str, bool], ...] = ()
    """Votes already decided by an earlier audit and due now: ``(candidate, is_valid)``."""

    @property
    def key(self) -> str:
        """The ``NodeRecord`` key that marks this action done (audits are recorded per vote)."""
        return action_key(self.kind, self.round)


def action_key(kind: ActionKind, round_number: int, candidate: str = "") -> str:
    """``"submit_proof:4"``, or ``"audit_proofs:4:<candidate>"`` for one vote."""
    key = f"{kind.value}:{round_number}"
    return f"{key}:{candidate}" if candidate else key


@dataclass
class NodeRecord:
    """What this node already did for one task; JSON-serializable so the node can persist it.

    ``done`` holds action keys (``action_key``); ``verdicts`` holds audit results
    (``"audit_proofs:4:<candidate>" -> True``) so that a candidate is audited once per round.
    """

    done: set[str] = field(default_factory=set)
    verdicts: dict[str, bool] = field(default_factory=dict)

    def is_done(self, key: str) -> bool:
        return key in self.done

    def mark(self, key: str) -> None:
        """Record that the action (or vote) with ``key`` was carried out."""
        self.done.add(key)

    def note_verdict(self, kind: ActionKind, round_number: int, candidate: str, verdict: bool) -> None:
        """Keep the result of auditing ``candidate`` (``kind`` is one of the two audit kinds)."""
        self.verdicts[action_key(kind, round_number, candidate)] = verdict

    def mark_vote(self, kind: ActionKind, round_number: int, candidate: str) -> None:
        """Record that this node's vote on ``candidate`` was sent."""
        self.done.add(action_key(kind, round_number, candidate))

    def first_round(self) -> int | None:
        """The first round this node ran the task for, if any."""
        rounds = [int(key.split(":")[1]) for key in self.done if key.startswith("run_task:")]
        return min(rounds) if rounds else None

    def prune(self, before_round: int) -> None:
        """Forget what concerns rounds older than ``before_round`` (keeps the file small).

        The first ``run_task`` is kept, since it says from which round on this node submits.
        """
        first = self.first_round()
        keep_first = action_key(ActionKind.RUN_TASK, first) if first is not None else ""
        self.done = {k for k in self.done if k == keep_first or int(k.split(":")[1]) >= before_round}
        self.verdicts = {k: v for k, v in self.verdicts.items() if int(k.split(":")[1]) >= before_round}

    def to_json(self) -> dict[str, Any]:
        """``{"done": [sorted keys], "verdicts": {key: bool}}``."""
        return {"done": sorted(self.done), "verdicts": dict(sorted(self.verdicts.items()))}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> NodeRecord:
        """The inverse of ``to_json`` (``None`` or ``{}`` gives an empty record)."""
        data = data or {}
        return cls(done=set(data.get("done", [])), verdicts=dict(data.get("verdicts", {})))


__all__ = ["Action", "ActionKind", "NodeRecord", "action_key"]
