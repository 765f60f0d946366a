"""Checkpoints on a validator: the state after a committed block, tied to the block's app hash.

The sequencer ties a checkpoint to its log with a checkpoint *mark*, a log entry each process writes
when it decides to; on validators that would give every validator a different log (seq, hence
receipts and the engine's ``LastResultsHash``). A validator's checkpoint is therefore not a log entry:
it is a row of the ``checkpoints`` table (state, seq, entry hash, state root) written after a block's
Commit, and it is trusted only through the ``blocks`` table, whose rows are written in the same SQLite
commit as the block's log entries and carry the app hash this validator gave the engine for that
block. At start-up the newest checkpoint is loaded only if

- a committed block ends at its seq (``blocks.seq``) and the root it records is that block's app hash;
- its state hashes (``state_root``) to that app hash;
- its entry hash is the hash of log entry ``seq`` (the genesis hash at seq 0);

otherwise start-up stops with ``LogCorruptionError`` naming what does not match, and
``pykoii validator run --replay-log`` drops the checkpoints and replays the whole log instead. The log's
tail after the checkpoint is replayed with every check, and the state root after it must be the app
hash of the last block (checked by ``ChainStore``); the engine then checks that app hash at its
handshake, and the network's next block header checks it again (a validator whose state differs
halts, see ``ChainStore``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import LogCorruptionError
from ..ledger import LedgerState, from_plain, state_root
from ..ledger.codec import sha256_hex
from ..service.log import Checkpoint

if TYPE_CHECKING:
    from .log import ChainLog

LOG = logging.getLogger("pykoii.chain.checkpoints")

REPLAY_HINT = (
    "start it once with `pykoii validator run --replay-log` to drop the checkpoints and replay the whole log"
)


class BlockCheckpoints:
    """The checkpoint half of ``ChainStore`` (a mixin over ``LedgerStore``)."""

    backend: ChainLog
    genesis: Any
    seq: int
    checkpoint_every: int
    _checkpoint_seq: int
    _checkpointer: Any
    _checkpointing: asyncio.Task[None] | None
    _snapshot: Callable[[], tuple[int, str, bytes]]
    _adopt_checkpoint: Callable[[Checkpoint, LedgerState, int, str], None]

    def _load_checkpoint(self) -> None:
        """Load the newest checkpoint if it is tied to a committed block (module docstring)."""
        checkpoint = self.backend.latest_checkpoint()
        if checkpoint is None:
            return
        refuse = f"the checkpoint at seq {checkpoint.seq} in {self.backend.path}"
        block = self.backend.block_ending_at(checkpoint.seq)
        if block is None:
            raise LogCorruptionError(
                f"{refuse} is at no committed block (no row of the blocks table ends at seq "
                f"{checkpoint.seq}); {REPLAY_HINT}",
                seq=checkpoint.seq,
            )
        if checkpoint.state_root != block.app_hash:
            raise LogCorruptionError(
                f"{refuse} records state root {checkpoint.state_root}, but block {block.height} was "
                f"committed with app hash {block.app_hash}; {REPLAY_HINT}",
                seq=checkpoint.seq,
                height=block.height,
            )
        try:
            state = from_plain(LedgerState, orjson.loads(checkpoint.state))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise LogCorruptionError(
                f"{refuse} holds no readable ledger state ({exc!r}); {REPLAY_HINT}", seq=checkpoint.seq
            ) from None
        root = state_root(state)
        if root != block.app_hash:
            raise LogCorruptionError(
                f"{refuse} holds a state whose root is {root}, not the app hash {block.app_hash} of "
                f"block {block.height}: it was changed after it was written; {REPLAY_HINT}",
                seq=checkpoint.seq,
                height=block.height,
            )
        at = self.backend.entries(checkpoint.seq - 1, 1) if checkpoint.seq else []
        entry_hash = at[0].entry_hash if at else self.genesis.hash
        if checkpoint.entry_hash != entry_hash or (checkpoint.seq and not at):
            raise LogCorruptionError(
                f"{refuse} records entry hash {checkpoint.entry_hash}, but log entry {checkpoint.seq} "
                f"has {entry_hash}; {REPLAY_HINT}",
                seq=checkpoint.seq,
            )
        self._adopt_checkpoint(checkpoint, state, at[0].slot if at else 0, root)

    async def checkpoint(self) -> None:
        """Record the state of the last committed block (at shutdown), unless the state is not that
        block's (a block finalized and not committed, none committed yet)."""
        last = self.backend.last_block()
        if last is None or last.seq != self.seq:
            return
        await self._write_block_checkpoint(*self._snapshot(), last.app_hash)

    def _maybe_block_checkpoint(self, app_hash: str) -> None:
        """After a Commit: a checkpoint in the background once ``checkpoint_every`` entries were
        committed since the last one (the state is encoded now, ``_snapshot``; it is hashed and
        written on the checkpoint thread while blocks go on)."""
        if not self.checkpoint_every or self.seq - self._checkpoint_seq < self.checkpoint_every:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._checkpointing = asyncio.get_running_loop().create_task(
            self._write_block_checkpoint(*self._snapshot(), app_hash)
        )

    async def _write_block_checkpoint(self, seq: int, last_hash: str, data: bytes, app_hash: str) -> None:
        """Store the state's bytes as the checkpoint of the block whose app hash is ``app_hash``,
        once their hash (on the checkpoint thread) is that app hash: a state that moved between
        FinalizeBlock and Commit is never stored as the block's (start-up would refuse it)."""
        self._checkpoint_seq = seq  # also when it fails: the next try is a full interval later
        loop = asyncio.get_running_loop()
        root = await loop.run_in_executor(self._checkpointer, sha256_hex, data)
        if root != app_hash:
            LOG.error(
                "checkpoint at seq %d not written: its state has root %s, not the block's app hash %s",
                seq,
                root,
                app_hash,
            )
            return
        checkpoint = Checkpoint(seq=seq, entry_hash=last_hash, state_root=app_hash, state=data)
        await loop.run_in_executor(self._checkpointer, self.backend.write_checkpoint, checkpoint)
