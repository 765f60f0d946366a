"""The virtual nodes of a simulation: their behaviours, in-memory store, ledger reader and faulty proof.

Each ``SimulatedNode`` holds its own ``Task`` instance and ``MemoryStore`` (what a real node keeps
in its per-task JSON store) and reads the ledger through a ``StateReader`` (what a real node's
``LedgerReader`` gives over HTTP).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..keys import Keypair
from ..ledger import LedgerState
from ..ledger.codec import to_plain
from ..ledger.state import TaskState
from ..ledger.types import MAX_SUBMISSION_BYTES
from ..node.schedule import NodeRecord
from ..sdk import Task

HONEST, FAULTY, LAZY, OFFLINE = "honest", "faulty", "lazy", "offline"


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
    "MemoryStore",
    "SimulatedNode",
    "StateReader",
    "corrupt",
]
