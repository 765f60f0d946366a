"""The virtual nodes of a simulation: their behaviours, in-memory store, ledger reader and faulty proof.

Each ``SimulatedNode`` holds its own ``Task`` instance and ``MemoryStore`` (what a real node keeps
in its per-task JSON store) and reads the ledger through a ``StateReader`` (what a real node's
``LedgerReader`` gives over HTTP). It has two lanes of virtual time, as a node has (see
``pykoii.node.schedule``): the work lane runs ``task()``, the round lane everything else; each phase's
measured duration moves its lane's clock, so a slow phase ends (and sends) in a later slot.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NotFoundError
from ..keys import Keypair
from ..ledger import LedgerState
from ..ledger.codec import to_plain
from ..ledger.state import TaskState
from ..ledger.types import MAX_SUBMISSION_BYTES
from ..node.schedule import NodeRecord
from ..sdk import RoundContext, Task, load_task
from ..service.blobs import check_size, cid_of, digest_of_cid

HONEST, FAULTY, LAZY, OFFLINE = "honest", "faulty", "lazy", "offline"
COLLUDER, WITHHOLDER = "colluder", "withholder"
"""Adversaries (issue 16): a colluder submits garbage, defends the other colluders' garbage, accuses
every honest candidate it may, and, when selected, sends a list that pays only colluders; a withholder
submits and never reveals its beacon secret (the only choice the commit-reveal beacon leaves a
grinder)."""


class MemoryStore:
    """An in-memory ``KeyValueStore`` (values are copied in and out, as a JSON store would)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()  # the node's routes read it from the server thread

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            value = self._data.get(key, default)
            return value if isinstance(value, str | int | float | bool | type(None)) else copy.deepcopy(value)

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value if isinstance(value, str | int | float | bool) else copy.deepcopy(value)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._data)


class MemoryBlobs:
    """The simulated ledger's CID store (``ctx.blobs``): same CIDs, same size limit, shared by all
    nodes, in memory."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        data = bytes(data)
        check_size(data)
        cid = cid_of(data)
        with self._lock:
            self._blobs[cid] = data
        return cid

    def get(self, cid: str) -> bytes:
        digest_of_cid(cid)  # a malformed id is refused as the ledger refuses it
        with self._lock:
            found = self._blobs.get(cid)
        if found is None:
            raise NotFoundError(f"no blob has id {cid}", cid=cid)
        return found


class StateReader:
    """``LedgerReader`` over a task in a ``LedgerState`` (Koii's field names, plain JSON values).

    ``urls`` maps the URLs the nodes registered (``http://node-N.simulated``, so the log stays the
    same from run to run) to where each virtual node really answers in this process; what the task
    reads (``node_urls()``, ``task_state()["ip_address_list"]``) is the URL that answers.
    """

    def __init__(self, state: LedgerState, task_id: str, urls: Mapping[str, str] | None = None) -> None:
        self._state = state
        self._task_id = task_id
        self._urls = urls or {}

    @property
    def _task(self) -> TaskState:
        return self._state.tasks[self._task_id]  # type: ignore[index]

    def task_state(self) -> dict[str, Any]:
        plain: dict[str, Any] = to_plain(self._task)
        plain["ip_address_list"] = self.node_urls()
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
        return {str(key): self._urls.get(url, url) for key, url in self._task.ip_address_list.items()}


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
    variables: dict[str, str] = field(default_factory=dict)
    """This node's task variables (the run's ``variables``, then its own ``node_variables``)."""
    url: str = ""
    """Where the node's routes answer (``/task/<task_id>/...`` under it); empty without routes."""
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("pykoii.task"), repr=False)
    """``ctx.log`` of this node: its lines go to ``SimulationResult.logs``."""
    working: int | None = None
    """The round whose ``task()`` the work lane runs (or last ran), and when it ends (ms)."""
    work_until_ms: float = 0.0
    round_free_ms: float = 0.0
    """When the round lane (submission, audits, distribution, payout) is free again (ms)."""

    def working_at(self, slot: int, slot_ms: float) -> int | None:
        """The round still being worked on during ``slot``, or ``None`` if the work lane is free."""
        if self.working is None or _slot(self.work_until_ms, slot_ms) <= slot:
            return None
        return self.working

    def round_busy(self, slot: int, slot_ms: float) -> bool:
        """Whether the round lane is still busy with a phase begun earlier, through all of ``slot``."""
        return _slot(self.round_free_ms, slot_ms) > slot


class LogCollector(logging.Handler):
    """Keeps ``ctx.log`` lines of every virtual node: ``"node 3 WARNING <message>"``."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name.rsplit('.', 1)[-1]} {record.levelname} {record.getMessage()}")

    def logger(self, run: int, index: int) -> logging.Logger:
        """The logger of node ``index`` of run ``run`` (one handler: this collector)."""
        log = logging.getLogger(f"pykoii.simulate.{run}.node {index}")
        log.handlers[:] = [self]
        log.setLevel(logging.INFO)
        log.propagate = False
        return log


def _slot(ms: float, slot_ms: float) -> int:
    return int(ms // slot_ms)


ProofHook = Callable[[RoundContext, str], Any]


@dataclass
class FaultyBehaviour:
    """What a faulty node does, from ``simulate(faulty_behaviour=...)``:

    - ``None``: submit a corrupted proof (``corrupt``); audits stay honest;
    - a ``Task`` subclass, instance, or a path to a ``task.py`` (or its folder): the node runs that
      task instead of yours, every phase, routes included;
    - a mapping of task variables: the node runs your task with these variables on top (for a task
      that has its own faulty mode, like Hello World's ``FAULTY=1``);
    - a callable ``hook(ctx, proof) -> proof``: the node submits what the hook returns instead of
      its proof (``None`` skips the round).

    A faulty node's proof is expected to be caught (``faulty submitters caught``) whenever it is not
    the one its own task code produced: always for a task or variables, when the hook changed it.
    """

    make_task: Callable[[], Task] | None = None
    variables: dict[str, str] = field(default_factory=dict)
    hook: ProofHook | None = None

    @classmethod
    def of(cls, value: Any) -> FaultyBehaviour:
        if value is None:
            return cls()
        if isinstance(value, FaultyBehaviour):
            return value
        if isinstance(value, Task):
            return cls(make_task=task_factory(value))
        if isinstance(value, type) and issubclass(value, Task):
            return cls(make_task=value)
        if isinstance(value, str | Path):
            return cls(make_task=task_factory(load_task(value)))
        if isinstance(value, Mapping):
            return cls(variables={str(k): str(v) for k, v in value.items()})
        if callable(value):
            return cls(hook=value)
        raise ConfigError(
            f"faulty_behaviour is {value!r}; accepted: a Task subclass or instance, a task.py path, "
            "a mapping of task variables, or a callable hook(ctx, proof) -> proof",
            field="faulty_behaviour",
        )

    @property
    def runs_own_code(self) -> bool:
        """Whether a faulty node runs code of its own (task or variables) instead of corrupting."""
        return self.make_task is not None or bool(self.variables)


def task_factory(task: Task | Callable[[], Task]) -> Callable[[], Task]:
    """Make a fresh instance per node: the class again, or a deep copy if it needs arguments."""
    if callable(task) and not isinstance(task, Task):
        return task
    cls = type(task)

    def make() -> Task:
        try:
            return cls()
        except TypeError:
            return copy.deepcopy(task)

    return make


def node_roles(nodes: int, seed: int, counts: Mapping[str, int], fixed: Mapping[int, str]) -> list[str]:
    """Each node's behaviour: the ``fixed`` ones (``{index: role}``) first, the remaining counts drawn
    from the seed among the other nodes. Raises ``ConfigError`` for counts that do not fit."""
    if nodes < 1:
        raise ConfigError(f"--nodes is {nodes}; accepted: 1 or more", field="nodes", received=nodes)
    for name, count in counts.items():
        if count < 0:
            raise ConfigError(f"--{name} is {count}; accepted: 0 or more", field=name, received=count)
    names = {
        "faulty": FAULTY,
        "lazy-auditors": LAZY,
        "offline": OFFLINE,
        "colluding": COLLUDER,
        "withholding": WITHHOLDER,
    }
    for index, role in fixed.items():
        if not 0 <= index < nodes or role not in ROLES:
            raise ConfigError(
                f"--role {index}={role}; accepted: a node index 0-{nodes - 1} and one of {', '.join(ROLES)}",
                field="role",
                received=f"{index}={role}",
            )
    total = sum(counts.values())
    free = nodes - len(fixed)
    remaining = {names[name]: count for name, count in counts.items()}
    for role in fixed.values():
        if role in remaining:
            remaining[role] = max(0, remaining[role] - 1)
    if sum(remaining.values()) > free:
        raise ConfigError(
            f"--faulty + --lazy-auditors + --offline is {total}; accepted: at most --nodes ({nodes}), since "
            "each node has one behaviour",
            field="faulty",
            received=total,
        )
    drawn = [role for role, count in remaining.items() for _ in range(count)]
    drawn += [HONEST] * (free - len(drawn))
    random.Random(seed).shuffle(drawn)
    return [fixed[index] if index in fixed else drawn.pop(0) for index in range(nodes)]


ROLES = (HONEST, FAULTY, LAZY, OFFLINE, COLLUDER, WITHHOLDER)


def corrupt(value: str, public_key: str) -> str:
    """A faulty node's proof: never equal to ``value``, at most 512 bytes."""
    return ("corrupted:" + hashlib.sha256(f"{public_key}:{value}".encode()).hexdigest())[
        :MAX_SUBMISSION_BYTES
    ]


__all__ = [
    "COLLUDER",
    "FAULTY",
    "HONEST",
    "LAZY",
    "OFFLINE",
    "ROLES",
    "WITHHOLDER",
    "FaultyBehaviour",
    "LogCollector",
    "MemoryBlobs",
    "MemoryStore",
    "SimulatedNode",
    "StateReader",
    "corrupt",
    "node_roles",
    "task_factory",
]
