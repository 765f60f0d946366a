"""``ChainLog``: a validator's SQLite log (the service's ``SQLiteLog``) plus its ``blocks`` table.

Each committed block is one ``blocks`` row (height, the app hash this validator gave the engine for it,
the last log seq after it, how many transactions it held, its slot), written in the same SQLite commit as
the block's log entries. Checkpoints (``checkpoints.BlockCheckpoints``) are trusted through these rows;
a validator keeps its newest ``KEPT_CHECKPOINTS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ..errors import LogCorruptionError
from ..service.log import Checkpoint, LogEntry, SQLiteLog

KEPT_CHECKPOINTS = 2
"""A validator keeps its newest two checkpoints (each is the whole state)."""


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One committed block, as the ``blocks`` table keeps it."""

    height: int
    app_hash: str
    seq: int
    txs: int
    slot: int
    """The slot of the block's BFT time (``store.block_slot``); its entries carry it."""


_COLUMNS = "height, app_hash, seq, txs, slot"


class ChainLog(SQLiteLog):
    """``SQLiteLog`` plus a ``blocks`` table written in the same commit as the block's entries."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._writer.execute(
            "CREATE TABLE IF NOT EXISTS blocks (height INTEGER PRIMARY KEY, app_hash TEXT NOT NULL, "
            "seq INTEGER NOT NULL, txs INTEGER NOT NULL, slot INTEGER NOT NULL)"
        )
        columns = {row[1] for row in self._writer.execute("PRAGMA table_info(blocks)")}
        if "slot" not in columns:
            raise LogCorruptionError(
                f"{path} was written by a pykoii whose slots were block heights (its blocks table has "
                f"no slot column: {sorted(columns)}); start this validator on an empty folder"
            )
        self._writer.execute("CREATE INDEX IF NOT EXISTS blocks_seq ON blocks (seq)")
        self.next_block: BlockRecord | None = None
        """The block row ``stage`` writes with the next entries."""

    def stage(self, entries: Sequence[LogEntry]) -> None:
        super().stage(entries)
        block, self.next_block = self.next_block, None
        if block is not None:
            try:
                self._writer.execute(
                    "INSERT INTO blocks (height, app_hash, seq, txs, slot) VALUES (?, ?, ?, ?, ?)",
                    (block.height, block.app_hash, block.seq, block.txs, block.slot),
                )
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise

    def last_block(self) -> BlockRecord | None:
        return self._block(f"SELECT {_COLUMNS} FROM blocks ORDER BY height DESC LIMIT 1")

    def block_ending_at(self, seq: int) -> BlockRecord | None:
        """The first block after which the log ends at ``seq`` (the one that wrote entry ``seq``)."""
        return self._block(f"SELECT {_COLUMNS} FROM blocks WHERE seq = ? ORDER BY height LIMIT 1", (seq,))

    def block_holding(self, seq: int) -> BlockRecord | None:
        """The block that holds log entry ``seq`` (the first whose last seq is ``seq`` or more)."""
        return self._block(
            f"SELECT {_COLUMNS} FROM blocks WHERE seq >= ? ORDER BY seq, height LIMIT 1", (seq,)
        )

    def _block(self, sql: str, params: tuple[object, ...] = ()) -> BlockRecord | None:
        rows = self._read(sql, params)
        if not rows:
            return None
        height, app_hash, seq, txs, slot = rows[0]
        return BlockRecord(
            cast(int, height), cast(str, app_hash), cast(int, seq), cast(int, txs), cast(int, slot)
        )

    def write_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint and drop those before the one preceding it (start-up uses the newest;
        the sequencer's keep every root for ``ledger verify``, a validator's log has no marks)."""
        super().write_checkpoint(checkpoint)
        self._checkpointer.execute(
            "DELETE FROM checkpoints WHERE seq < (SELECT min(seq) FROM "
            "(SELECT seq FROM checkpoints ORDER BY seq DESC LIMIT ?))",
            (KEPT_CHECKPOINTS,),
        )

    def drop_checkpoints(self) -> None:
        """Delete every checkpoint (start-up then replays the whole log)."""
        self._writer.execute("DELETE FROM checkpoints")
