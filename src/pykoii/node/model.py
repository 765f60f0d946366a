"""What the node holds about itself and its tasks: its settings and each task's live state.

Plain dataclasses with no behaviour, shared by ``runtime`` (the loops), ``executor`` (one action)
and ``operations`` (the operator's actions), so none of them imports another for its types.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .journal import TaskRecord
from .masking import Masker
from .sandbox import SandboxLimits, TaskProcess

log = logging.getLogger("pykoii.node")

FLAG_AFTER_ROUNDS = 3
"""A task with no accepted submission for this many rounds is flagged (Koii's watchdog)."""

LOCAL_CODE = "local:"
"""Prefix of a task's code id when the operator runs a local folder (``add-task --code``)."""


@dataclass
class NodeConfig:
    """Settings of one node (``pykoii node run`` options)."""

    data_dir: Path
    ledger_url: str = "http://127.0.0.1:8899"
    wallet_path: Path | None = None
    """The main wallet; default ``<data>/keys/main_wallet.json`` (created when missing)."""
    host: str = "127.0.0.1"
    port: int = 30017
    dashboard_port: int = 30018
    """The operator port (dashboard and control API), always bound to 127.0.0.1."""
    public_url: str = ""
    """The URL registered with stakes (Koii's ``ip_address_list``); default ``http://host:port``."""
    poll_interval: float = 0.25
    """Seconds between two looks at the ledger for each task."""
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    restart_backoff: float = 1.0
    """First delay before restarting a crashed child; doubles each time, up to ``max_backoff``."""
    max_backoff: float = 300.0
    stable_after: float = 600.0
    """Seconds a child must run for its backoff to reset."""
    follow_migrations: str = "ask"
    """When a task is migrated (``migrated_to``): ``ask`` stops its child and waits for the operator
    (dashboard button or ``pykoii node follow TASK_ID``); ``auto`` stakes the same amount on the new
    version with the same variables and starts it."""


@dataclass
class TaskRuntime:
    """What the node knows about one task while it runs."""

    record: TaskRecord
    process: TaskProcess | None = None
    status: str = "stopped"
    """``starting``, ``running``, ``backoff`` (child died; restarting), ``stopped``, ``failed``,
    ``migrated`` (the task moved to ``migrated_to``; its child is stopped), ``removing``
    (``remove-task``: forgotten once the proofs it sent are revealed)."""
    migrated_to: str = ""
    flagged: bool = False
    last_error: str = ""
    ledger_error: bool = False
    """``last_error`` came from the ledger (unreachable, refused a read): cleared once it answers."""
    stake_seen: int | None = None
    """The stake on the ledger at the last look (to notice a slash)."""
    restarts: int = 0
    backoff: float = 0.0
    started_at: float = 0.0
    first_round: int | None = None
    current_round: int = -1
    last_submitted_round: int | None = None
    state: dict[str, Any] = field(default_factory=dict)
    """The node's part of the task as of the last tick (``NodeLedger.task``)."""
    reads: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    """What task code asked of the ledger since the last tick (``answers.py``), read once a tick."""
    loop: asyncio.Task[None] | None = None
    """The task's loop: while it runs, the task runs on this node (the dashboard's "running")."""
    reveals: asyncio.Task[None] | None = None
    """After ``stop-task`` or ``remove-task``, after a restart of a stopped or removing task and at
    shutdown: the reveals of the proofs already sent (``_reveals_after_stop``), the task not running."""
    work: asyncio.Task[None] | None = None
    """The work lane: ``task()`` of round ``working``, running beside the loop."""
    working: int | None = None
    unrevealed: list[tuple[int, range]] | None = None
    """This node's proofs the ledger holds unrevealed, reveal window not closed, as ``(round, reveal
    window)``, as of the last ``_reveal_due`` (None: not read yet)."""
    logger: logging.Logger = field(default_factory=lambda: log)
    masker: Masker = field(default_factory=Masker)
