"""The task's key-value store on this node: one SQLite file in the task's own folder.

The child owns it: the task's phases and its routes read and write it directly, in the child,
so a store access never crosses the protocol. The file is ``<data>/tasks/<task_id>/store.sqlite3``;
it outlives the child, so a restarted child (or node) finds what the task stored. Values are JSON.

>>> import tempfile, os
>>> store = SqliteStore(os.path.join(tempfile.mkdtemp(), "store.sqlite3"))
>>> store.set("value", "Hello, World!")
>>> store.get("value")
'Hello, World!'
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any


class SqliteStore:
    """``sdk.KeyValueStore`` over one SQLite file (WAL), safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        data = json.dumps(value)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, data))

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def keys(self) -> list[str]:
        """Every key, sorted."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT key FROM kv ORDER BY key")]

    def close(self) -> None:
        with self._lock:
            self._db.close()
