"""What a node remembers across restarts: its tasks and every transaction it sent for them.

One SQLite file, ``<data>/node.sqlite3``, owned by the node (a task child never sees it).

- ``tasks``: the tasks the operator added, with their stake, task variables, whether they
  should run, and whether the operator removed them (kept until their proofs are revealed).
- ``records``: per task, the schedule's ``NodeRecord`` (which actions are done, audit verdicts),
  saved before a transaction is sent, so ``schedule.due_actions`` never offers it again.
- ``actions``: one row per on-chain action of a task round (``submit`` round 7, ``audit`` of a
  candidate in round 7, ``distribution`` for round 5, ``payout`` of round 5 …), keyed by
  ``(task_id, kind, round, candidate)``. A row is written with status ``sending`` and the signed
  envelope **before** the envelope goes to the ledger, and set to ``done`` (or ``failed``) after
  the answer. A restarted node re-sends a ``sending`` envelope unchanged: the ledger either accepts
  it or refuses it as a replay or a duplicate, which counts as done. So a node never submits twice
  for a round, even when it is killed between sending and hearing back.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

SENDING, DONE, FAILED = "sending", "done", "failed"


@dataclass
class TaskRecord:
    """A task the operator added to this node."""

    task_id: str
    stake: int
    """ROE the operator asked to stake."""
    variables: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    """Whether the task should run (``stop-task`` clears it, ``start-task`` sets it)."""
    code_cid: str = ""
    removed: bool = False
    """``remove-task`` was asked: the task is forgotten once every proof it sent is revealed."""


@dataclass
class ActionRecord:
    """One on-chain action and where it stands."""

    task_id: str
    kind: str
    round: int
    candidate: str
    status: str
    envelope: dict[str, Any] | None
    error: str
    slot: int


EVENTS_KEPT = 500
"""Node events kept per task (newest first)."""


class Journal:
    """The node's SQLite journal. Every write commits before the call returns."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        os.chmod(self.path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS tasks (
                task_id TEXT PRIMARY KEY, stake INTEGER NOT NULL, variables TEXT NOT NULL,
                enabled INTEGER NOT NULL, code_cid TEXT NOT NULL DEFAULT '',
                removed INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE IF NOT EXISTS records (task_id TEXT PRIMARY KEY, record TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS actions (
                task_id TEXT NOT NULL, kind TEXT NOT NULL, round INTEGER NOT NULL,
                candidate TEXT NOT NULL, status TEXT NOT NULL, envelope TEXT, error TEXT NOT NULL,
                slot INTEGER NOT NULL, PRIMARY KEY (task_id, kind, round, candidate));
            CREATE TABLE IF NOT EXISTS events (
                id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, at REAL NOT NULL,
                kind TEXT NOT NULL, detail TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS events_by_task ON events (task_id, id);
            CREATE TABLE IF NOT EXISTS outcomes (
                task_id TEXT NOT NULL, round INTEGER NOT NULL, reward INTEGER NOT NULL,
                slash INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (task_id, round));
            """
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        if "removed" not in columns:  # a journal written before remove-task waited for reveals
            self._db.execute("ALTER TABLE tasks ADD COLUMN removed INTEGER NOT NULL DEFAULT 0")

    # -- tasks ----------------------------------------------------------------------------------

    def put_task(self, record: TaskRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tasks (task_id, stake, variables, enabled, code_cid, removed)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.task_id,
                    record.stake,
                    json.dumps(record.variables),
                    int(record.enabled),
                    record.code_cid,
                    int(record.removed),
                ),
            )

    def tasks(self) -> list[TaskRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT task_id, stake, variables, enabled, code_cid, removed FROM tasks ORDER BY task_id"
            ).fetchall()
        return [TaskRecord(r[0], r[1], json.loads(r[2]), bool(r[3]), r[4], bool(r[5])) for r in rows]

    def task(self, task_id: str) -> TaskRecord | None:
        return next((t for t in self.tasks() if t.task_id == task_id), None)

    def remove_task(self, task_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,))
            self._db.execute("DELETE FROM records WHERE task_id = ?", (task_id,))
            self._db.execute("DELETE FROM actions WHERE task_id = ?", (task_id,))

    # -- the schedule's record (schedule.NodeRecord as JSON) -------------------------------------

    def load_record(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._db.execute("SELECT record FROM records WHERE task_id = ?", (task_id,)).fetchone()
        return json.loads(row[0]) if row else {}

    def save_record(self, task_id: str, record: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO records VALUES (?, ?)", (task_id, json.dumps(record)))

    # -- actions --------------------------------------------------------------------------------

    def record(
        self,
        task_id: str,
        kind: str,
        round_number: int,
        candidate: str,
        status: str,
        *,
        envelope: dict[str, Any] | None = None,
        error: str = "",
        slot: int = 0,
    ) -> None:
        """Write (or overwrite) the row of one action; committed when this returns."""
        with self._lock:
            if envelope is None:
                row = self._db.execute(
                    "SELECT envelope FROM actions WHERE task_id=? AND kind=? AND round=? AND candidate=?",
                    (task_id, kind, round_number, candidate),
                ).fetchone()
                stored = row[0] if row else None
            else:
                stored = json.dumps(envelope)
            self._db.execute(
                "INSERT OR REPLACE INTO actions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task_id, kind, round_number, candidate, status, stored, error, slot),
            )

    def actions(self, task_id: str, *, status: str | None = None) -> list[ActionRecord]:
        query = "SELECT * FROM actions WHERE task_id = ?"
        params: tuple[Any, ...] = (task_id,)
        if status is not None:
            query += " AND status = ?"
            params += (status,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY round, kind, candidate", params).fetchall()
        return [
            ActionRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None, r[6], r[7])
            for r in rows
        ]

    def prune(self, task_id: str, before_round: int) -> None:
        """Forget actions of rounds older than ``before_round``."""
        with self._lock:
            self._db.execute("DELETE FROM actions WHERE task_id = ? AND round < ?", (task_id, before_round))

    # -- node events (the node's own record of each task's life, apart from the task's log) --------

    def event(self, task_id: str, kind: str, detail: str, at: float) -> None:
        """Record one event (``start``, ``exit``, ``limit``, ``restart``, ``stop``, ...) of a task;
        only the newest ``EVENTS_KEPT`` per task are kept, whatever the task writes to its log."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (task_id, at, kind, detail) VALUES (?, ?, ?, ?)",
                (task_id, at, kind, detail),
            )
            if cursor.lastrowid and cursor.lastrowid % 50 == 0:
                self._db.execute(
                    "DELETE FROM events WHERE task_id = ? AND id <= (SELECT id FROM events WHERE task_id = ?"
                    " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (task_id, task_id, EVENTS_KEPT),
                )

    def events(self, task_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` events of a task, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT at, kind, detail FROM events WHERE task_id = ? ORDER BY id DESC LIMIT ?",
                (task_id, limit),
            ).fetchall()
        return [{"at": r[0], "kind": r[1], "detail": r[2]} for r in reversed(rows)]

    # -- what the staking key earned and lost per paid round (``node.history``) -------------------

    def put_outcome(self, task_id: str, round_number: int, reward: int, slash: int, reason: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?)",
                (task_id, round_number, reward, slash, reason),
            )

    def outcomes(self) -> list[tuple[str, int, int, int, str]]:
        """Every round's ``(task, round, reward, slash, reason)``, kept even after a task is removed."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM outcomes ORDER BY task_id, round").fetchall()
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4])) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
