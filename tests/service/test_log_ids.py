"""The log's id lookup (``SQLiteLog.find`` through ``log_ids``): before and after each bulk write, across
reopening, from a second backend on the same file, and the migration of a log with the old index."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from pykoii.service import log as log_module
from pykoii.service.log import LogEntry, SQLiteLog


def entry(seq: int, tx_id: str | None = None) -> LogEntry:
    digest = hashlib.sha256(seq.to_bytes(8, "big")).hexdigest()
    return LogEntry(
        seq, seq // 10, tx_id or digest, b"{}", "sig", digest, digest, f'{{"seq":{seq}}}'.encode()
    )


def found(log: SQLiteLog, entries: list[LogEntry]) -> list[int | None]:
    return [None if (hit := log.find(e.tx_id)) is None else hit.seq for e in entries]


def test_every_committed_entry_is_found_before_and_after_each_bulk_write_and_after_reopening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "ID_BATCH", 5)
    path = tmp_path / "log.sqlite3"
    log = SQLiteLog(path)
    written: list[LogEntry] = []
    try:
        for start in range(1, 30, 3):
            batch = [entry(seq) for seq in range(start, start + 3)]
            log.stage(batch)
            assert found(log, batch) == [None] * 3  # staged is not committed
            log.commit()
            written += batch
            assert found(log, written) == [e.seq for e in written]
            assert len(log._recent) < 5  # the rest went to log_ids in bulk
        # Ids sharing their first ID_KEY_CHARS characters are told apart by the full id.
        twins = [entry(31, "a" * 16 + "1" * 48), entry(32, "a" * 16 + "2" * 48)]
        log.append(twins)
        assert found(log, twins) == [31, 32]
        assert log.find("a" * 16 + "3" * 48) is None
        assert log.find("a" * 16) is None
        assert log.find("no such id") is None
    finally:
        log.close()
    reopened = SQLiteLog(path)
    try:
        assert reopened._recent == {}  # everything was indexed on opening
        assert found(reopened, written + twins) == [e.seq for e in written + twins]
        assert reopened.find(written[4].tx_id) == written[4]
    finally:
        reopened.close()


def test_a_second_backend_on_the_same_file_finds_what_the_first_appends_after_it_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite3"
    writer = SQLiteLog(path)
    writer.append([entry(1)])
    other = SQLiteLog(path)
    try:
        writer.append([entry(2), entry(3)])
        assert found(other, [entry(1), entry(2), entry(3)]) == [1, 2, 3]
        assert other.find("missing") is None
    finally:
        other.close()
        writer.close()


def test_a_log_with_the_old_tx_id_index_is_migrated_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    schema = log_module._SCHEMA
    ids_table = schema[
        schema.index("CREATE TABLE IF NOT EXISTS log_ids") : schema.index("WITHOUT ROWID;") + 14
    ]
    old.executescript(schema.replace(ids_table, "CREATE INDEX IF NOT EXISTS log_tx_id ON log (tx_id);"))
    old_entries = [entry(seq) for seq in range(1, 8)]
    old.executemany(
        f"INSERT INTO log ({log_module._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.seq, e.slot, e.tx_id, e.tx, e.signature, e.prev_hash, e.entry_hash, e.receipt)
            for e in old_entries
        ],
    )
    old.close()
    log = SQLiteLog(path)
    try:
        indexes = {row[0] for row in log._read("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "log_tx_id" not in indexes
        assert log._read("SELECT count(*) FROM log_ids") == [(7,)]
        assert found(log, old_entries) == list(range(1, 8))
        log.append([entry(8)])
        assert log.find(entry(8).tx_id) == entry(8)
    finally:
        log.close()


def test_ids_committed_since_the_last_bulk_write_are_indexed_when_the_log_is_next_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite3"
    log = SQLiteLog(path)
    log.append([entry(seq) for seq in range(1, 4)])
    log.close()  # stopped before a bulk write: these ids were only in its memory
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("SELECT count(*) FROM log_ids").fetchone() == (0,)
    conn.close()
    log = SQLiteLog(path)
    try:
        assert log._read("SELECT count(*) FROM log_ids") == [(3,)]
        assert found(log, [entry(seq) for seq in range(1, 4)]) == [1, 2, 3]
    finally:
        log.close()


def test_a_failed_bulk_write_fails_no_commit_and_is_tried_again_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "ID_BATCH", 2)
    log = SQLiteLog(tmp_path / "log.sqlite3")
    real = SQLiteLog._index_ids
    calls: list[int] = []

    def failing(self: SQLiteLog) -> None:
        calls.append(len(self._recent))
        if len(calls) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        real(self)

    monkeypatch.setattr(SQLiteLog, "_index_ids", failing)
    try:
        log.append([entry(1), entry(2)])  # committed, although its bulk write failed
        assert found(log, [entry(1), entry(2)]) == [1, 2]
        log.append([entry(3)])  # not yet tried again (2 more entries first)
        log.append([entry(4)])
        assert calls == [2, 4] and log._recent == {}
        assert found(log, [entry(seq) for seq in range(1, 5)]) == [1, 2, 3, 4]
    finally:
        log.close()
