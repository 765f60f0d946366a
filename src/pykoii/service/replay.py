"""A ``LedgerStore``'s state and its disk: checkpoints written, and the state rebuilt from them and the log.

Start-up, ``pykoii ledger verify`` (from genesis, every checkpoint root checked on the way), a
replica's appends and the roll-back after a failed commit all go through ``Replay``: each entry's
hash chain, signature and canonical form are checked again, it is applied at its recorded slot,
and the receipt replay computes must be the one stored beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import InvalidTransactionError, LogCorruptionError
from ..ledger import LedgerParams, LedgerState, apply_transaction, from_plain, state_root, to_plain
from ..ledger.codec import sha256_hex
from .log import Checkpoint, LogBackend, LogEntry, iter_entries
from .records import Genesis, chain_problem, receipt_plain, state_bytes
from .verify import Verified, Verifier

if TYPE_CHECKING:
    from .store import Statistics


class Replay:
    """The start-up half of ``LedgerStore`` (a mixin: the store sets these attributes)."""

    backend: LogBackend
    genesis: Genesis
    verifier: Verifier
    state: LedgerState
    seq: int
    last_hash: str
    last_slot: int
    durable_seq: int
    durable_hash: str
    stats: Statistics
    _checkpoint_seq: int
    _expected_roots: dict[int, str]
    _use_checkpoint: bool
    _on_progress: Any
    _checkpointer: ThreadPoolExecutor

    # --- start-up ---------------------------------------------------------------------------

    def _restore(self) -> None:
        """Build the state from what is on disk: the newest checkpoint (unless ``use_checkpoint``
        is off), then the log's tail, checked again. Start-up and the roll-back after a failed
        commit both run this."""
        self.state = LedgerState(params=from_plain(LedgerParams, to_plain(self.genesis.params)))
        self.seq = self._checkpoint_seq = 0
        self.last_hash = self.genesis.hash
        self.last_slot = 0
        # Replaying from the start checks every recorded checkpoint root on the way.
        self._expected_roots = {} if self._use_checkpoint else self.backend.checkpoint_roots()
        if self._use_checkpoint:
            self._load_checkpoint()
        self._replay_tail()
        self.durable_seq, self.durable_hash = self.seq, self.last_hash
        """The newest entry on disk and its hash (``seq`` may run one pass ahead while it commits)."""

    def _load_checkpoint(self) -> None:
        checkpoint = self.backend.latest_checkpoint()
        if checkpoint is None:
            return
        state = from_plain(LedgerState, orjson.loads(checkpoint.state))
        root = state_root(state)
        if root != checkpoint.state_root:
            raise LogCorruptionError(
                f"checkpoint at seq {checkpoint.seq} has state root {root}, but {checkpoint.state_root} "
                "was recorded; remove the checkpoints table to replay the whole log",
                seq=checkpoint.seq,
            )
        self.state = state
        self.seq = self._checkpoint_seq = checkpoint.seq
        self.last_hash = checkpoint.entry_hash
        last = self.backend.entries(checkpoint.seq - 1, 1)
        self.last_slot = last[0].slot if last else 0

    def _replay_tail(self) -> None:
        page: list[LogEntry] = []
        for entry in iter_entries(self.backend, self.seq):
            page.append(entry)
            if len(page) >= 5000:
                self._check_and_apply(page)
                page = []
                if self._on_progress is not None:
                    self._on_progress(self.seq)
        if page:
            self._check_and_apply(page)
        self.stats.replayed = self.seq - self._checkpoint_seq

    def _check_and_apply(self, entries: Sequence[LogEntry]) -> list[LogEntry]:
        """Check chain and signatures of entries that follow ``self.seq``, apply them, and return them
        with their receipts. Raises ``LogCorruptionError`` naming the first bad entry."""
        envelopes = []
        problem: tuple[int, str] | None = None  # the first entry that breaks the chain, and why
        prev_hash, seq, slot = self.last_hash, self.seq, self.last_slot
        for index, entry in enumerate(entries):
            seq += 1
            why = chain_problem(entry, seq, prev_hash, slot)
            if why is None:
                try:
                    envelopes.append({"tx": orjson.loads(entry.tx), "signature": entry.signature})
                except orjson.JSONDecodeError:
                    why = "transaction bytes are not JSON"
            if why is not None:
                problem = (index, why)
                break
            prev_hash, slot = entry.entry_hash, entry.slot
        outcomes = self.verifier.verify_sync(envelopes)
        out = []
        for index, entry in enumerate(entries):
            if problem is not None and index == problem[0]:
                raise _corrupt(entry, problem[1])
            outcome = outcomes[index]
            if not isinstance(outcome, Verified):
                raise _corrupt(entry, f"{outcome.name}: {outcome}")
            if outcome.canonical != entry.tx:
                raise _corrupt(entry, "transaction bytes are not in canonical form")
            try:
                receipt = apply_transaction(self.state, outcome.tx, entry.slot)
            except InvalidTransactionError as exc:
                raise _corrupt(entry, f"the ledger refuses it on replay: {exc.name}: {exc}") from None
            self.seq, self.last_hash, self.last_slot = entry.seq, entry.entry_hash, entry.slot
            expected = self._expected_roots.get(entry.seq)
            if expected is not None and state_root(self.state) != expected:
                raise _corrupt(entry, f"the state root after it differs from checkpoint root {expected}")
            receipt_json = entry.receipt or orjson.dumps(receipt_plain(receipt, entry.seq))
            out.append(
                LogEntry(
                    entry.seq,
                    entry.slot,
                    entry.tx_id,
                    entry.tx,
                    entry.signature,
                    entry.prev_hash,
                    entry.entry_hash,
                    receipt_json,
                )
            )
        return out

    # --- checkpoints ------------------------------------------------------------------------

    async def checkpoint(self) -> None:
        """Record the current state durably, so the next start-up replays only what follows."""
        await self._write_checkpoint(*self._snapshot())

    def _snapshot(self) -> tuple[int, str, Any]:
        """``(seq, last hash, plain state)``: ``to_plain`` copies the state, which may then move on."""
        return self.seq, self.last_hash, to_plain(self.state)

    async def _write_checkpoint(self, seq: int, last_hash: str, plain: Any) -> None:
        self._checkpoint_seq = seq  # also when it fails: the next try is a full interval later

        def encode_and_write() -> None:
            data = state_bytes(plain)
            checkpoint = Checkpoint(seq=seq, entry_hash=last_hash, state_root=sha256_hex(data), state=data)
            self.backend.write_checkpoint(checkpoint)

        await asyncio.get_running_loop().run_in_executor(self._checkpointer, encode_and_write)


def _corrupt(entry: LogEntry, why: str) -> LogCorruptionError:
    return LogCorruptionError(f"log entry {entry.seq} does not verify: {why}", seq=entry.seq)
