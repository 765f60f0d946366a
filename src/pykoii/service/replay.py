"""A ``LedgerStore``'s state and its disk: checkpoints written, and the state rebuilt from them and the log.

Start-up, ``pykoii ledger verify`` (from genesis, every checkpoint root checked on the way), a
replica's appends and the roll-back after a failed commit all go through ``Replay``: each entry's
hash chain, signature and canonical form are checked again, it is applied at its recorded slot,
and the receipt replay computes must be the one stored beside it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import InvalidTransactionError, LedgerUnavailableError, LogCorruptionError
from ..ledger import LedgerParams, LedgerState, apply_transaction, from_plain, state_root, to_plain
from ..ledger.codec import plain_bytes, sha256_hex
from ..ledger.events import Receipt
from .log import Checkpoint, LogBackend, LogEntry, iter_entries
from .records import Genesis, chain_problem, entry_from_plain, mark_entry, mark_of, receipt_plain
from .slots import SlotClock
from .verify import Verified, Verifier

if TYPE_CHECKING:
    from .metrics import Statistics

QUIET_SECONDS = 0.1
"""How long no request may have arrived for a due checkpoint to be taken (``_maybe_checkpoint``)."""


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
    """Checkpoint rows' roots, checked when the replay passes their seq (``ledger verify``)."""
    _roots: dict[int, str]
    """Roots computed (or loaded) on the way, for the checkpoint marks that follow."""
    _root_seqs: set[int]
    _last_mark_seq: int
    slots: SlotClock
    _tasks: list[asyncio.Task[None]]
    _wakeup: asyncio.Event | None
    _marks: list[tuple[int, str, asyncio.Future[None]]]
    _broken: BaseException | None
    _append: Callable[[list[LogEntry]], Awaitable[None]]
    _roll_back: Callable[[BaseException, list[Any]], Awaitable[None]]
    _notify: Callable[[], Awaitable[None]]
    _check_space: Callable[[], None]
    _use_checkpoint: bool
    _on_progress: Any
    _checkpointer: ThreadPoolExecutor
    checkpoint_every: int
    _checkpointing: asyncio.Task[None] | None
    _quiet_timer: asyncio.TimerHandle | None
    _last_arrival: float
    _pending: list[Any]
    _passes: list[Any]

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
        self._roots = {}
        self._last_mark_seq = 0
        if self._use_checkpoint:
            self._load_checkpoint()
        # The roots the tail's checkpoint marks name are computed on the way and compared when
        # the (chain-checked) mark itself is replayed.
        self._root_seqs = set(self._expected_roots) | {
            mark[0] for entry in self.backend.marks() if (mark := mark_of(entry)) and mark[0] > self.seq
        }
        self._replay_tail()
        self.durable_seq, self.durable_hash = self.seq, self.last_hash
        """The newest entry on disk and its hash (``seq`` may run one pass ahead while it commits)."""

    def _load_checkpoint(self) -> None:
        """Load the newest checkpoint if it is tied to the hash chain: its root is the one a
        checkpoint mark in the log records, its state hashes to that root, and it sits at the log
        entry it names. A checkpoint nobody marked (written before marks existed) is not used:
        the whole log is replayed, checking its root on the way."""
        checkpoint = self.backend.latest_checkpoint()
        if checkpoint is None:
            return
        marks = [
            mark for entry in self.backend.marks() if (mark := mark_of(entry)) and mark[0] == checkpoint.seq
        ]
        if not marks:
            self._expected_roots = self.backend.checkpoint_roots()
            return
        refuse = f"checkpoint at seq {checkpoint.seq}"
        if checkpoint.state_root not in {root for _, root in marks}:
            raise LogCorruptionError(
                f"{refuse} records state root {checkpoint.state_root}, but the log marks "
                f"{marks[-1][1]} for it; remove the checkpoints table to replay the whole log",
                seq=checkpoint.seq,
            )
        state = from_plain(LedgerState, orjson.loads(checkpoint.state))
        root = state_root(state)
        at = self.backend.entries(checkpoint.seq - 1, 1)
        if root != checkpoint.state_root or not at or at[0].entry_hash != checkpoint.entry_hash:
            raise LogCorruptionError(
                f"{refuse} does not match what it records (state root {root}, entry hash "
                f"{checkpoint.entry_hash}); remove the checkpoints table to replay the whole log",
                seq=checkpoint.seq,
            )
        self._adopt_checkpoint(checkpoint, state, at[0].slot, root)

    def _adopt_checkpoint(self, checkpoint: Checkpoint, state: LedgerState, slot: int, root: str) -> None:
        """Start from a checked checkpoint: its state, at its seq, entry hash and ``slot``."""
        self.state = state
        self.seq = self._checkpoint_seq = checkpoint.seq
        self.last_hash, self.last_slot = checkpoint.entry_hash, slot
        self._roots[checkpoint.seq] = root

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
        """Check chain, signatures and stored receipts of entries that follow ``self.seq``, apply
        them, and return them with their receipts. Raises ``LogCorruptionError`` naming the first
        bad entry."""
        envelopes = []
        marks: dict[int, tuple[int, str]] = {}
        problem: tuple[int, str] | None = None  # the first entry that breaks the chain, and why
        prev_hash, seq, slot = self.last_hash, self.seq, self.last_slot
        for index, entry in enumerate(entries):
            seq += 1
            why = chain_problem(entry, seq, prev_hash, slot)
            if why is None and (mark := mark_of(entry)) is not None:
                marks[index] = mark
                if mark[0] >= entry.seq:
                    why = f"its checkpoint mark names seq {mark[0]}, which is not before it"
            elif why is None:
                try:
                    envelopes.append({"tx": orjson.loads(entry.tx), "signature": entry.signature})
                except orjson.JSONDecodeError:
                    why = "transaction bytes are not JSON"
            if why is not None:
                problem = (index, why)
                break
            prev_hash, slot = entry.entry_hash, entry.slot
        outcomes = iter(self.verifier.verify_sync(envelopes))
        out = []
        for index, entry in enumerate(entries):
            if problem is not None and index == problem[0]:
                raise _corrupt(entry, problem[1])
            mark = marks.get(index)
            if mark is not None:
                self._last_mark_seq = entry.seq
                known = self._roots.get(mark[0])
                if known is not None and known != mark[1]:
                    raise _corrupt(
                        entry, f"it marks state root {mark[1]} for seq {mark[0]}, which has {known}"
                    )
                plain: Any = orjson.loads(mark_entry(entry.seq, entry.slot, entry.prev_hash, *mark).receipt)
            else:
                plain = receipt_plain(self._apply_logged(entry, next(outcomes)), entry.seq)
            self.seq, self.last_hash, self.last_slot = entry.seq, entry.entry_hash, entry.slot
            receipt = orjson.dumps(plain)
            if entry.receipt and entry.receipt != receipt:
                raise _corrupt(entry, "its stored receipt differs from the one replay computes")
            if entry.seq in self._root_seqs:
                root = self._roots[entry.seq] = state_root(self.state)
                expected = self._expected_roots.get(entry.seq)
                if expected is not None and root != expected:
                    raise _corrupt(entry, f"the state root after it differs from checkpoint root {expected}")
            out.append(
                LogEntry(
                    entry.seq,
                    entry.slot,
                    entry.tx_id,
                    entry.tx,
                    entry.signature,
                    entry.prev_hash,
                    entry.entry_hash,
                    receipt,
                )
            )
        return out

    def _apply_logged(self, entry: LogEntry, outcome: Any) -> Receipt:
        """Apply a logged transaction whose signature was checked again; ``LogCorruptionError``
        if it does not verify or the ledger refuses it."""
        if not isinstance(outcome, Verified):
            raise _corrupt(entry, f"{outcome.name}: {outcome}")
        if outcome.canonical != entry.tx:
            raise _corrupt(entry, "transaction bytes are not in canonical form")
        try:
            return apply_transaction(self.state, outcome.tx, entry.slot)
        except InvalidTransactionError as exc:
            raise _corrupt(entry, f"the ledger refuses it on replay: {exc.name}: {exc}") from None

    # --- checkpoints ------------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        """Take the periodic checkpoint once it is due (``checkpoint_every`` durable entries since
        the last), at a quiet moment: no request for ``QUIET_SECONDS`` and nothing waiting for the
        sequencer, so taking the state (a fifth of a second at 100,000 nodes, on the event loop)
        delays no one; else this looks again once it could be quiet. A checkpoint still not taken
        ``checkpoint_every // 2`` entries later is taken at once, busy or not: a restart replays at
        most 1.5 intervals plus the passes in flight. Then in the background: the sequencer goes
        on while the bytes are hashed and written (on its own thread and connection); the mark
        goes through a later pass, so the checkpoint is stored only once everything it covers is
        durable."""
        every = self.checkpoint_every
        since = self.durable_seq - self._checkpoint_seq
        if not every or since < every or self._broken is not None:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return  # the next pass's settle looks again
        loop = asyncio.get_running_loop()
        wait = max(self._last_arrival + QUIET_SECONDS - loop.time(), 0.0)
        if (wait > 0 or self._pending or self._passes) and since < every + every // 2:
            if self._quiet_timer is None:
                self._quiet_timer = loop.call_later(wait or QUIET_SECONDS, self._quiet_checkpoint)
            return
        snapshot = self._snapshot()
        self._checkpointing = loop.create_task(self._write_checkpoint(*snapshot))

    def _quiet_checkpoint(self) -> None:
        self._quiet_timer = None
        self._maybe_checkpoint()

    async def checkpoint(self) -> None:
        """Record the current state durably, so the next start-up replays only what follows."""
        await self._write_checkpoint(*self._snapshot())

    def _snapshot(self) -> tuple[int, str, bytes]:
        """``(seq, last hash, state bytes)``: the canonical bytes of the state after ``seq``,
        encoded from the live state in one call on the event loop's thread (``plain_bytes``), so
        nothing changes it meanwhile; the state may move on as soon as it returns. The one way a
        checkpoint, ``durable_root`` and a validator's block checkpoint take the state."""
        return self.seq, self.last_hash, plain_bytes(self.state)

    async def _write_checkpoint(self, seq: int, last_hash: str, data: bytes) -> None:
        """Hash the state's bytes on the checkpoint thread, mark its root in the log (durable),
        then store the checkpoint: a checkpoint always has its mark."""
        self._checkpoint_seq = seq  # also when it fails: the next try is a full interval later
        loop = asyncio.get_running_loop()
        root = await loop.run_in_executor(self._checkpointer, sha256_hex, data)
        await self._mark(seq, root)
        checkpoint = Checkpoint(seq=seq, entry_hash=last_hash, state_root=root, state=data)
        await loop.run_in_executor(self._checkpointer, self.backend.write_checkpoint, checkpoint)

    async def _mark(self, at: int, root: str) -> None:
        """Append the checkpoint mark of ``root`` for seq ``at`` durably: in the sequencer's next
        pass while it runs, else (at shutdown) directly."""
        if self._tasks and self._wakeup is not None:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._marks.append((at, root, future))
            self._wakeup.set()
            await future
            return
        entry = mark_entry(self.seq + 1, max(self.slots.current(), self.last_slot), self.last_hash, at, root)
        await self._append([entry])
        self.seq, self.last_hash, self.last_slot, self._last_mark_seq = (
            entry.seq,
            entry.entry_hash,
            entry.slot,
            entry.seq,
        )
        self.durable_seq, self.durable_hash = self.seq, self.last_hash

    async def append_replicated(self, plain_entries: list[Any]) -> int:
        """Replica: check, apply and durably append entries streamed from a primary's ``GET /log``.

        Returns how many were appended. Raises ``LogCorruptionError`` at the first entry that does
        not verify, leaving the replica at the last good entry.
        """
        if self._broken is not None:
            raise LedgerUnavailableError(
                f"the replica's log failed ({self._broken!r}) and its state is being rebuilt from disk"
            )
        entries = [entry_from_plain(plain) for plain in plain_entries if int(plain["seq"]) > self.seq]
        if not entries:
            return 0
        self._check_space()
        before = self.seq
        try:
            checked = self._check_and_apply(entries)
        except LogCorruptionError as exc:
            if self.seq != before:  # entries before the bad one were applied, not written
                await self._roll_back(exc, [])
            raise
        try:
            await self._append(checked)
        except Exception as exc:
            await self._roll_back(exc, [])
            raise LedgerUnavailableError(f"the replica's log write failed: {exc!r}") from exc
        self.durable_seq, self.durable_hash = self.seq, self.last_hash
        self.stats.accepted += len(checked)
        await self._notify()
        return len(checked)


def _corrupt(entry: LogEntry, why: str) -> LogCorruptionError:
    return LogCorruptionError(f"log entry {entry.seq} does not verify: {why}", seq=entry.seq)
