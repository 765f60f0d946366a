"""The append-only, hash-chained transaction log, behind one small storage interface.

Every accepted transaction becomes one ``LogEntry``: its sequence number, the slot the sequencer
stamped it with, its canonical bytes, its signature, the previous entry's hash and its own hash::

    entry_hash = sha256_hex(f"{seq}:{slot}:{prev_hash}:{signature}:".encode() + tx)

The first entry's ``prev_hash`` is the genesis hash, so a log cannot be moved onto another genesis.
The receipt is stored beside the entry for ``GET /tx/{id}``; it is derived data (replay recomputes
it) and is not hashed.

``LogBackend`` is what a storage engine must offer. ``SQLiteLog`` is the default; a PostgreSQL
backend implements the same methods and nothing about the ledger's rules changes.

Durability: ``append`` (or ``stage`` then ``commit``) returns only after its entries are on disk.
``SQLiteLog`` runs in WAL mode with ``synchronous=FULL``, so every commit fsyncs the write-ahead log
before it returns; a batch of entries is one SQLite transaction, hence one fsync (group commit).
Triggers refuse any ``UPDATE`` or ``DELETE`` of the log table.

Finding an entry by its transaction id (``find``: ``GET /tx/{id}``, the receipt of a replayed
transaction) goes through the ``log_ids`` table: ``(tx_key, seq)`` with ``tx_key`` the id's first
``ID_KEY_CHARS`` characters; the full id is compared on the matched rows. ``log_ids`` is written in
bulk, in key order, once ``ID_BATCH`` entries have been committed since the last time (and when the log
is opened); the entries committed since then are found through a dict of this backend's own commits
(a bulk write that fails fails no commit: it is tried again ``ID_BATCH`` entries later).
An index on ``log.tx_id`` itself put every row's random 64-character key into a random page of a
B-tree: at 400,000 entries that was 27-31 us of CPU per row (stage and commit), against 9-12 with
``log_ids`` (same sitting). A log written before ``log_ids`` existed (with the ``log_tx_id`` index)
is migrated when it is opened, in one SQLite transaction: ``log_ids`` is filled and the old index
dropped, or, if that is interrupted, nothing changed (the next opening migrates it).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, cast

LOG = logging.getLogger(__name__)


class LogEntry(NamedTuple):
    """One accepted transaction, as logged: a named tuple whose fields are the log table's columns,
    in order (``stage`` writes each entry as its row). One is built per accepted transaction, and
    building a frozen dataclass of eight fields cost about three times as much."""

    seq: int
    slot: int
    tx_id: str
    tx: bytes
    """The transaction's canonical JSON bytes (what the signature covers)."""
    signature: str
    prev_hash: str
    entry_hash: str
    receipt: bytes = b""
    """The receipt as JSON; derived data, not covered by ``entry_hash``."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The ledger state after entry ``seq``, so start-up replays only the tail."""

    seq: int
    entry_hash: str
    state_root: str
    state: bytes
    """The canonical JSON of the plain state."""


def entry_hash_of(seq: int, slot: int, prev_hash: str, signature: str, tx: bytes) -> str:
    """The hash that chains entry ``seq`` to ``prev_hash`` (the bytes of the formula above, written
    in one bytes formatting: hashes and signatures are ASCII)."""
    return hashlib.sha256(
        b"%d:%d:%s:%s:%s" % (seq, slot, prev_hash.encode(), signature.encode(), tx)
    ).hexdigest()


class LogBackend(Protocol):
    """Durable storage of genesis, log entries and checkpoints.

    ``append`` is called from one writer thread at a time; the read methods may be called from
    another thread meanwhile and see only committed entries.
    """

    def read_genesis(self) -> bytes | None:
        """The genesis document's canonical bytes, or ``None`` for a new ledger."""
        ...

    def write_genesis(self, genesis: bytes) -> None:
        """Record the genesis document durably (once)."""
        ...

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Append entries in one durable commit; return only once they are on disk."""
        ...

    def stage(self, entries: Sequence[LogEntry]) -> None:
        """The first half of ``append``: write entries into an open transaction, not yet durable.
        Nothing else is written until ``commit`` (which may run on another thread) returns."""
        ...

    def commit(self) -> None:
        """The second half of ``append``: make the staged entries durable (one commit); on failure
        roll them back and raise."""
        ...

    def last_entry(self) -> LogEntry | None:
        """The newest entry, if any."""
        ...

    def entries(self, after: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` entries with ``seq > after``, oldest first."""
        ...

    def find(self, tx_id: str) -> LogEntry | None:
        """The entry of transaction ``tx_id``, if it was accepted."""
        ...

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint durably. May run on its own thread while entries are appended."""
        ...

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint, if any."""
        ...

    def checkpoint_roots(self) -> dict[int, str]:
        """``{seq: state_root}`` of every checkpoint (for ``pykoii ledger verify``)."""
        ...

    def marks(self) -> list[LogEntry]:
        """Every entry with an empty signature (the checkpoint marks), oldest first."""
        ...

    def close(self) -> None:
        """Release the storage."""
        ...


def iter_entries(backend: LogBackend, after: int = 0, page: int = 5000) -> Iterator[LogEntry]:
    """Every entry with ``seq > after``, oldest first, read a page at a time."""
    while True:
        chunk = backend.entries(after, page)
        yield from chunk
        if len(chunk) < page:
            return
        after = chunk[-1].seq


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,
    slot INTEGER NOT NULL,
    tx_id TEXT NOT NULL,
    tx BLOB NOT NULL,
    signature TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    entry_hash TEXT NOT NULL,
    receipt BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log_ids (
    tx_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tx_key, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS log_marks ON log (seq) WHERE signature = '';
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    entry_hash TEXT NOT NULL,
    state_root TEXT NOT NULL,
    state BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS log_no_update BEFORE UPDATE ON log
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS log_no_delete BEFORE DELETE ON log
    BEGIN SELECT RAISE(ABORT, 'the log is append-only'); END;
"""

_COLUMNS = ", ".join(LogEntry._fields)
"""The log table's columns, in ``LogEntry``'s order (each entry is its row)."""
ID_KEY_CHARS = 16
"""How many leading characters of a transaction id ``log_ids`` keys on (64 bits of a hex SHA-256:
the rows a key matches are compared on the full id, so a shared prefix costs a row read, no more)."""
ID_BATCH = 50_000
"""Committed entries between two bulk writes of ``log_ids`` (the dict of the entries committed since
the last one holds at most about this many ids)."""
KEPT_CHECKPOINT_STATES = 2
"""Checkpoints whose state is kept (the newest); older rows keep only seq, entry hash and root."""
_IDS_THROUGH = "ids_through"
"""The ``meta`` key of the last seq whose id is in ``log_ids``."""
WRITER_CACHE_KIB = 16 * 1024
"""The writer connection's page cache (SQLite's default is 2 MiB). Measured when every row also went
into an index on ``tx_id`` at a random place (those pages kept falling out of a 2 MiB cache: 9.7 us of
CPU a row into a 300,000-entry log, 5.3 us with 16 MiB); the rows now go in seq order and only the bulk
writes of ``log_ids`` walk an index, in key order."""


class SQLiteLog:
    """``LogBackend`` on one SQLite file: WAL, ``synchronous=FULL``, one commit per ``append``.

    Two connections: the writer (used by ``append`` and the other writes, from one thread) and the
    reader (for the read methods, guarded by a lock so any thread may call them).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        self._writer.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._writer.executescript(_SCHEMA)
        self._reader = self._connect()
        self._read_lock = threading.Lock()
        self._staged: list[LogEntry] = []
        """The entries ``stage`` wrote, put into ``_recent`` once committed."""
        self._recent: dict[str, int] = {}
        """``{tx_id: seq}`` of the entries committed through this backend and not yet in ``log_ids``."""
        self._recent_through = 0
        """The last seq that ``log_ids`` or ``_recent`` covers."""
        self._index_at = ID_BATCH
        """``_recent``'s size at which ``commit`` writes it into ``log_ids``."""
        self._index_ids()
        # Checkpoints are written on their own connection, so a big one runs beside the appends
        # (SQLite serialises the two writes; ``busy_timeout`` makes either wait for the other).
        self._checkpointer = self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def read_genesis(self) -> bytes | None:
        row = self._read("SELECT value FROM meta WHERE key = 'genesis'")
        return bytes(cast(bytes, row[0][0])) if row else None

    def write_genesis(self, genesis: bytes) -> None:
        with self._transaction():
            self._writer.execute("INSERT INTO meta (key, value) VALUES ('genesis', ?)", (genesis,))

    def append(self, entries: Sequence[LogEntry]) -> None:
        self.stage(entries)
        self.commit()

    def stage(self, entries: Sequence[LogEntry]) -> None:
        self._staged = []
        self._writer.execute("BEGIN IMMEDIATE")
        try:
            # Each entry is its row (LogEntry's fields are the columns, in order), as a plain tuple:
            # sqlite3 binds a tuple subclass through the slower sequence protocol.
            self._writer.executemany(
                f"INSERT INTO log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", map(tuple, entries)
            )
        except BaseException:
            self._writer.execute("ROLLBACK")
            raise
        self._staged = list(entries)

    def commit(self) -> None:
        staged, self._staged = self._staged, []
        try:
            self._writer.execute("COMMIT")
        except BaseException:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            raise
        recent = self._recent
        for entry in staged:
            recent.setdefault(entry.tx_id, entry.seq)
        if staged:
            self._recent_through = max(self._recent_through, staged[-1].seq)
        if len(recent) >= self._index_at:
            try:
                self._index_ids()
            except sqlite3.Error as exc:
                # The entries are committed (this commit succeeded): their ids stay in ``_recent``,
                # where ``find`` sees them, and the bulk write is tried again ID_BATCH entries later.
                self._index_at = len(recent) + ID_BATCH
                LOG.warning(
                    "the bulk write of %d ids into log_ids failed (%r); tried again later", len(recent), exc
                )

    def _index_ids(self) -> None:
        """Write the ids of every entry past ``log_ids``' last into it, in key order (one commit),
        then forget them from ``_recent``. Also the migration of a log that had the ``log_tx_id``
        index: dropped in the same commit."""
        with self._transaction():
            through = self._ids_through(self._writer)
            self._writer.execute(
                "INSERT OR IGNORE INTO log_ids (tx_key, seq) "
                f"SELECT substr(tx_id, 1, {ID_KEY_CHARS}), seq FROM log WHERE seq > ? ORDER BY 1",
                (through,),
            )
            last = self._writer.execute("SELECT max(seq) FROM log").fetchone()[0]
            through = max(through, 0 if last is None else int(last))
            self._writer.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_IDS_THROUGH, through)
            )
            self._writer.execute("DROP INDEX IF EXISTS log_tx_id")
        self._recent_through = max(self._recent_through, through)
        self._recent = {}
        self._index_at = ID_BATCH

    @staticmethod
    def _ids_through(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (_IDS_THROUGH,)).fetchone()
        return 0 if row is None else int(row[0])

    def last_entry(self) -> LogEntry | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM log ORDER BY seq DESC LIMIT 1")
        return _entry(rows[0]) if rows else None

    def entries(self, after: int, limit: int) -> list[LogEntry]:
        rows = self._read(f"SELECT {_COLUMNS} FROM log WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return [_entry(row) for row in rows]

    def find(self, tx_id: str) -> LogEntry | None:
        # In this order: an id leaves ``_recent`` only once ``log_ids`` holds it (committed), and an
        # entry committed after ``through`` was read is in the last query's range.
        through = self._recent_through
        seq = self._recent.get(tx_id)
        if seq is not None:
            rows = self._read(f"SELECT {_COLUMNS} FROM log WHERE seq = ?", (seq,))
            return _entry(rows[0])
        with self._read_lock:
            reader = self._reader
            rows = reader.execute(
                f"SELECT {_COLUMNS} FROM log WHERE seq IN (SELECT seq FROM log_ids WHERE tx_key = ?) "
                "AND tx_id = ? ORDER BY seq LIMIT 1",
                (tx_id[:ID_KEY_CHARS], tx_id),
            ).fetchall()
            if not rows:
                # Past what this backend covers: entries another process appended (a backend that
                # only reads sees every entry appended since it was opened this way).
                after = max(through, self._ids_through(reader))
                rows = reader.execute(
                    f"SELECT {_COLUMNS} FROM log WHERE seq > ? AND tx_id = ? ORDER BY seq LIMIT 1",
                    (after, tx_id),
                ).fetchall()
        return _entry(rows[0]) if rows else None

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint, and empty the state of those older than the newest
        ``KEPT_CHECKPOINT_STATES`` (their seq, entry hash and root stay, for ``ledger verify``):
        start-up loads only the newest, and each state is the whole ledger (58 MB at 100,000 nodes),
        so keeping every one would grow the file by a state per checkpoint interval."""
        c = checkpoint
        with _Transaction(self._checkpointer):
            self._checkpointer.execute(
                "INSERT OR REPLACE INTO checkpoints (seq, entry_hash, state_root, state) VALUES (?, ?, ?, ?)",
                (c.seq, c.entry_hash, c.state_root, c.state),
            )
            self._checkpointer.execute(
                "UPDATE checkpoints SET state = x'' WHERE length(state) > 0 AND seq < (SELECT min(seq) "
                "FROM (SELECT seq FROM checkpoints ORDER BY seq DESC LIMIT ?))",
                (KEPT_CHECKPOINT_STATES,),
            )

    def latest_checkpoint(self) -> Checkpoint | None:
        rows = self._read(
            "SELECT seq, entry_hash, state_root, state FROM checkpoints ORDER BY seq DESC LIMIT 1"
        )
        if not rows:
            return None
        seq, entry_hash, root, state = rows[0]
        return Checkpoint(
            seq=cast(int, seq),
            entry_hash=cast(str, entry_hash),
            state_root=cast(str, root),
            state=bytes(cast(bytes, state)),
        )

    def checkpoint_roots(self) -> dict[int, str]:
        rows = cast(list[tuple[int, str]], self._read("SELECT seq, state_root FROM checkpoints ORDER BY seq"))
        return dict(rows)

    def marks(self) -> list[LogEntry]:
        rows = self._read(f"SELECT {_COLUMNS} FROM log WHERE signature = '' ORDER BY seq")
        return [_entry(row) for row in rows]

    def close(self) -> None:
        self._writer.close()
        self._checkpointer.close()
        with self._read_lock:
            self._reader.close()

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._writer)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def _entry(row: tuple[object, ...]) -> LogEntry:
    seq, slot, tx_id, tx, signature, prev_hash, entry_hash, receipt = row
    return LogEntry(
        seq=int(seq),  # type: ignore[call-overload]
        slot=int(slot),  # type: ignore[call-overload]
        tx_id=str(tx_id),
        tx=tx.encode() if isinstance(tx, str) else bytes(tx),  # type: ignore[call-overload]
        signature=str(signature),
        prev_hash=str(prev_hash),
        entry_hash=str(entry_hash),
        receipt=receipt.encode() if isinstance(receipt, str) else bytes(receipt),  # type: ignore[call-overload]
    )
