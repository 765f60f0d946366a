"""``LedgerStore``: the ledger's current state, its sequencer and its durable log.

Accepting a transaction takes four steps::

    envelope ─verify (worker processes, batched)─▶ queue ─sequencer: stamp slot, apply─▶
        log batch ─one SQLite commit (one fsync)─▶ receipts returned

One sequencer task drains the queue: it reads the slot once per pass, applies every waiting
transaction with ``apply_transaction`` (refused ones get their error and write nothing), and appends
the accepted ones to the hash-chained log in one durable commit. Passes are pipelined: pass N+1 is
applied while pass N's commit is on disk, and a pass's callers are answered only once its own commit
returned (group commit: what arrives meanwhile joins the next pass).

The in-memory state runs at most two passes ahead of the disk (``seq`` ahead of ``durable_seq``);
``durable`` lets a reader wait until what it read is on disk. If a commit fails, nothing of that
pass, of the pass applied on top of it, or of what waits is acknowledged (503) and nothing is written
after it; the state is rebuilt from the log on disk (``read_epoch`` changes, so readers that saw the
lost state answer 503), then writes are accepted again. Below the free-space reserve writes are
refused with ``InsufficientStorageError`` (507) before anything is applied. Start-up, replicas and
the roll-back replay the log with every check again (``replay.Replay``).

>>> import asyncio, tempfile, pathlib
>>> from pykoii.clock import ManualClock
>>> from pykoii.keys import Keypair
>>> from pykoii.ledger import LedgerParams
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> store = LedgerStore(SQLiteLog(folder / "ledger.sqlite3"), clock=ManualClock(),
...                     genesis=Genesis(params=LedgerParams(devnet=True)))
>>> alice = Keypair.from_seed(bytes(32))
>>> async def main():
...     await store.start()
...     envelope = alice.sign_transaction({"type": "airdrop", "to": alice.public_key, "amount": 5,
...                                        "recent_slot": store.slot()})
...     receipt = await store.submit(envelope)
...     await store.close()
...     return receipt["seq"]
>>> asyncio.run(main())
1
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..clock import WallClock
from ..errors import (
    DuplicateTransactionError,
    InsufficientStorageError,
    InvalidTransactionError,
    LedgerUnavailableError,
    NotFoundError,
    PykoiiError,
    ReadOnlyReplicaError,
    StaleTransactionError,
)
from ..ledger import (
    apply_transaction,
    state_root,
)
from ..ledger.codec import sha256_hex
from .blobs import DEFAULT_QUOTA_BYTES, BlobStore
from .events import EventHub, EventSource
from .log import LogBackend, LogEntry, SQLiteLog, entry_hash_of
from .metrics import Statistics
from .records import Genesis as Genesis
from .records import entry_to_plain, mark_entry, receipt_plain
from .replay import Replay
from .slots import SlotClock
from .space import DEFAULT_RESERVE_BYTES, check_reserve
from .verify import Verified, Verifier

LOG = logging.getLogger("pykoii.ledger")


@dataclass(slots=True)
class _Group:
    """The transactions of one ``submit_batch`` call, waiting for the sequencer."""

    outcomes: list[Any]
    future: asyncio.Future[list[Any]]


@dataclass(slots=True)
class _Pass:
    """One sequencer pass: its callers, checkpoint marks, log entries and receipts, and its commit."""

    groups: list[_Group]
    marks: list[tuple[int, str, asyncio.Future[None]]]
    entries: list[LogEntry] = field(default_factory=list)
    receipts: list[tuple[dict[str, Any], Verified]] = field(default_factory=list)
    seq: int = 0
    hash: str = ""
    commit: asyncio.Future[None] | None = None
    started: float = 0.0


class LedgerStore(Replay, EventSource):
    """Current state + sequencer + durable hash-chained log (+ optional blob store)."""

    def __init__(
        self,
        backend: LogBackend,
        *,
        clock: WallClock,
        genesis: Genesis | None = None,
        verifier: Verifier | None = None,
        blobs: BlobStore | None = None,
        read_only: bool = False,
        checkpoint_every: int = 200_000,
        max_pending: int = 100_000,
        use_checkpoint: bool = True,
        on_progress: Any = None,
        data_dir: str | None = None,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.verifier = verifier or Verifier(0)
        self.blobs = blobs
        self.read_only = read_only
        self.checkpoint_every = checkpoint_every
        self.max_pending = max_pending
        self.events = EventHub()
        self.stats = Statistics()
        recorded = backend.read_genesis()
        if recorded is None:
            genesis = genesis or Genesis()
            if genesis.anchor_ms == 0:
                genesis = Genesis(genesis.params, genesis.slot_ms, int(clock.wall() * 1000), genesis.version)
            backend.write_genesis(genesis.to_bytes())
        else:
            genesis = Genesis.from_bytes(recorded)
        self.genesis = genesis
        self.data_dir = data_dir
        """The folder whose free space the reserve guards (``None``: no reserve)."""
        self.reserve_bytes = reserve_bytes if data_dir is not None else 0
        self._use_checkpoint = use_checkpoint
        self._on_progress = on_progress
        self.read_epoch = 0
        """Changes whenever the in-memory state is rolled back to the disk's (after a failed commit)."""
        self.recovering = False
        """True while the state is being rebuilt from disk; reads are refused meanwhile."""
        self._restore()
        self.slots = SlotClock(
            clock, anchor_ms=genesis.anchor_ms, slot_ms=genesis.slot_ms, floor=self.last_slot
        )
        self._pending: list[_Group] = []
        self._marks: list[tuple[int, str, asyncio.Future[None]]] = []
        self._passes: list[_Pass] = []  # applied, not answered: the one committing, the one on top
        self._unsettled: dict[str, dict[str, Any]] = {}
        """Receipts of applied, not yet durable entries (a repeat of one answers it once durable)."""
        self._pending_count = 0
        self._wakeup: asyncio.Event | None = None
        self._committed: asyncio.Condition | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-log")
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-checkpoint")
        self._checkpointing: asyncio.Task[None] | None = None
        self._quiet_timer: asyncio.TimerHandle | None = None
        self._last_arrival = 0.0
        """The event loop's time of the last ``submit_later`` (a due checkpoint waits for quiet)."""
        self._broken: BaseException | None = None
        self._low_space = False
        self._root_cache: tuple[tuple[int, int], asyncio.Future[str]] | None = None
        self._phases: dict[str, tuple[int, str]] = {}

    # --- reading ----------------------------------------------------------------------------

    def slot(self) -> int:
        """The current slot."""
        return self.slots.current()

    def root(self) -> str:
        """The state root of the current state."""
        return state_root(self.state)

    async def durable_root(self) -> dict[str, Any]:
        """``{state_root, state_root_seq}``: the root of the state after entry ``state_root_seq``,
        once that entry is durable. The state is encoded on the event loop (``_snapshot``, as a
        checkpoint takes it) and hashed on a thread, once per seq, for every concurrent caller."""
        epoch, seq = self.read_epoch, self.seq
        cached = self._root_cache
        if cached is None or cached[0] != (epoch, seq):
            _, _, data = self._snapshot()
            future = asyncio.get_running_loop().run_in_executor(self._checkpointer, sha256_hex, data)
            cached = self._root_cache = ((epoch, seq), future)
        root = await cached[1]
        await self.durable(seq, epoch)
        return {"state_root": root, "state_root_seq": seq}

    def receipt(self, tx_id: str) -> dict[str, Any]:
        """The receipt of an accepted transaction, or ``NotFoundError``."""
        entry = self.backend.find(tx_id)
        if entry is None:
            raise NotFoundError(f"no accepted transaction has id {tx_id!r}", tx_id=tx_id)
        receipt: dict[str, Any] = orjson.loads(entry.receipt)
        return receipt

    def log_page(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Log entries with ``seq > after`` (at most ``limit``), as ``GET /log`` serves them."""
        return [entry_to_plain(entry) for entry in self.backend.entries(after, limit)]

    async def wait_for_entries(self, after: int, timeout: float) -> None:
        """Return once the log holds a durable entry past ``after``, or ``timeout`` seconds have
        passed (also while a failed commit is being rolled back: no busy loop for followers)."""
        if self.durable_seq > after or self._committed is None or timeout <= 0:
            return
        async with self._committed:
            try:
                await asyncio.wait_for(self._committed.wait_for(lambda: self.durable_seq > after), timeout)
            except TimeoutError:
                pass

    async def durable(self, seq: int, epoch: int) -> None:
        """Return once entry ``seq`` is on disk, for a reader that looked at the state during
        ``read_epoch == epoch``; ``LedgerUnavailableError`` if what it saw was rolled back (or is
        being rebuilt) instead."""
        if self.durable_seq < seq and self._committed is not None and self.read_epoch == epoch:
            async with self._committed:
                await self._committed.wait_for(
                    lambda: self.durable_seq >= seq or self.read_epoch != epoch or self._stuck
                )
        if self.read_epoch != epoch or self.recovering or self.durable_seq < seq:
            raise LedgerUnavailableError(
                "a log write failed and the ledger's state went back to what is on disk; retry shortly"
            )

    @property
    def _stuck(self) -> bool:
        return self._broken is not None and not self.recovering

    @property
    def healthy(self) -> bool:
        """False once a log write failed and the state could not be rebuilt (until a restart),
        and while it is being rebuilt."""
        return self._broken is None

    @property
    def role(self) -> str:
        """What ``GET /health`` calls this ledger: ``primary`` or ``replica``."""
        return "replica" if self.read_only else "primary"

    @property
    def pending(self) -> int:
        """Transactions verified and waiting for the sequencer."""
        return self._pending_count

    # --- writing ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the sequencer and the slot ticker on the running event loop."""
        self._wakeup = asyncio.Event()
        self._committed = asyncio.Condition()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._sequencer()), loop.create_task(self._ticker())]

    async def submit(self, envelope: Any) -> dict[str, Any]:
        """Accept one envelope; return its receipt once it is durable, or raise why it was refused."""
        (outcome,) = await self.submit_batch([envelope])
        if isinstance(outcome, PykoiiError):
            raise outcome
        return outcome

    async def submit_batch(self, envelopes: list[Any]) -> list[dict[str, Any] | PykoiiError]:
        """Accept envelopes; return, in order, each one's receipt (once durable) or its error."""
        return await self.submit_later(envelopes)

    def submit_later(self, envelopes: list[Any]) -> asyncio.Future[list[Any]]:
        """``submit_batch`` as the future of its answer, without a coroutine: ``POST /tx`` adds a
        callback to it instead of running a task per request. Raises at once what ``submit_batch``
        raises before waiting (a replica, a broken log, a full disk, a full queue)."""
        self._check_writable()
        if self._pending_count + len(envelopes) > self.max_pending:
            raise LedgerUnavailableError(
                f"the sequencer has {self._pending_count} transactions waiting (limit {self.max_pending}); "
                "retry shortly",
                pending=self._pending_count,
            )
        loop = asyncio.get_running_loop()
        self._last_arrival = loop.time()
        future: asyncio.Future[list[Any]] = loop.create_future()

        def verified(outcomes: list[Any] | PykoiiError) -> None:
            # Straight from the verifier to the sequencer's queue: the caller's coroutine next wakes
            # with its receipts.
            if self._broken is not None and not isinstance(outcomes, PykoiiError):
                outcomes = self._unavailable()
            if isinstance(outcomes, PykoiiError):
                if not future.done():
                    future.set_exception(outcomes)
                return
            for outcome in outcomes:
                if isinstance(outcome, PykoiiError):
                    self.stats.reject(outcome)
            self._pending.append(_Group(outcomes, future))
            self._pending_count += len(outcomes)
            assert self._wakeup is not None, "LedgerStore.start() was not called"
            self._wakeup.set()

        self.verifier.verify_then(envelopes, verified)
        return future

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyReplicaError("this ledger is a read-only replica; send transactions to its primary")
        if self._broken is not None:
            raise self._unavailable()
        if self._low_space:
            self._check_space()

    def _unavailable(self) -> LedgerUnavailableError:
        if self.recovering:
            return LedgerUnavailableError(
                f"a log write failed ({self._broken!r}); the ledger is rebuilding its state from disk; "
                "retry shortly"
            )
        return LedgerUnavailableError(
            f"a log write failed ({self._broken!r}); the ledger refuses writes until it is restarted"
        )

    def _check_space(self) -> None:
        """``InsufficientStorageError`` while the disk is below the reserve (checked once per pass,
        and on every write while it is low)."""
        if self.data_dir is not None:
            self._low_space = True
            check_reserve(self.data_dir, self.reserve_bytes)
            self._low_space = False

    async def _sequencer(self) -> None:
        """Apply each pass while the previous pass's commit is on disk (pipelined), and answer a
        pass only once its commit returned: nothing is acknowledged before it is durable, and a
        failed commit discards the pass applied on top of it (see ``_roll_back``)."""
        assert self._wakeup is not None
        while True:
            if not (self._pending or self._marks):
                if self._passes:
                    await self._settle(self._passes[0], None)
                    continue
                await self._wakeup.wait()
            self._wakeup.clear()
            groups, self._pending = self._pending, []
            self._pending_count = 0
            current = self._apply(groups)
            if self._passes and not await self._settle(self._passes[0], current):
                continue
            if current is None:
                continue
            self._passes.append(current)
            if not current.entries:
                await self._settle(current, None)  # nothing to write: answer at once
                continue
            current.started = self.clock.now()
            try:
                self.backend.stage(current.entries)  # rows on this thread, the COMMIT on the writer's
            except Exception as exc:
                await self._settle(current, None, failure=exc)
                continue
            current.commit = asyncio.get_running_loop().run_in_executor(self._writer, self.backend.commit)

    def _apply(self, groups: list[_Group]) -> _Pass | None:
        """Stamp and apply one pass (checkpoint marks first: they change no state); ``None`` if
        the disk is below the reserve (every group refused before anything is applied)."""
        try:
            self._check_space()
        except InsufficientStorageError as refused:
            for group in groups:
                if not group.future.done():
                    group.future.set_exception(refused)
            return None
        slot = self.slots.current()
        done = _Pass(groups, self._marks)
        self._marks = []
        entries = done.entries
        for at, root, _ in done.marks:
            self.seq += 1
            entries.append(mark_entry(self.seq, slot, self.last_hash, at, root))
            self.last_hash, self.last_slot, self._last_mark_seq = entries[-1].entry_hash, slot, self.seq
        for group in groups:
            outcomes = group.outcomes
            for index, outcome in enumerate(outcomes):
                if not isinstance(outcome, Verified):
                    continue
                try:
                    receipt = apply_transaction(self.state, outcome.tx, slot)
                except (DuplicateTransactionError, StaleTransactionError) as exc:
                    unsettled = self._unsettled.get(outcome.tx.tx_id)
                    outcomes[index] = unsettled or self._first_receipt(outcome, exc)
                    continue
                except InvalidTransactionError as exc:
                    self.stats.reject(exc)
                    outcomes[index] = exc
                    continue
                self.seq += 1
                entry_hash = entry_hash_of(
                    self.seq, slot, self.last_hash, outcome.signature, outcome.canonical
                )
                plain = receipt_plain(receipt, self.seq)
                entries.append(
                    LogEntry(
                        self.seq,
                        slot,
                        receipt.tx_id,
                        outcome.canonical,
                        outcome.signature,
                        self.last_hash,
                        entry_hash,
                        orjson.dumps(plain),
                    )
                )
                self.last_hash, self.last_slot = entry_hash, slot
                self._unsettled[receipt.tx_id] = outcomes[index] = plain
                done.receipts.append((plain, outcome))
        done.seq, done.hash = self.seq, self.last_hash
        return done

    async def _settle(self, done: _Pass, after: _Pass | None, failure: BaseException | None = None) -> bool:
        """Wait for ``done``'s commit and answer its callers; on failure roll back (``done`` and the
        pass ``after`` it, applied on top of it, are both answered 503) and return False."""
        if failure is None and done.commit is not None:
            try:
                await asyncio.shield(done.commit)  # a cancelled sequencer must not cancel the commit
            except Exception as exc:
                failure = exc
        self._passes.remove(done)
        for receipt, _ in done.receipts:
            self._unsettled.pop(receipt["tx_id"], None)
        if failure is not None:
            behind = [] if after is None else [after]
            self._passes.clear()
            self._unsettled.clear()
            for lost in (done, *behind):
                self._marks[:0] = lost.marks
            await self._roll_back(failure, [group for lost in (done, *behind) for group in lost.groups])
            return False
        for group in done.groups:
            if not group.future.done():
                group.future.set_result(group.outcomes)
        for *_, future in done.marks:
            future.set_result(None)
        if not done.entries:
            return True
        self.durable_seq, self.durable_hash = done.seq, done.hash
        self.stats.commits += 1
        self.stats.committed_entries += len(done.entries)
        self.stats.commit_seconds += self.clock.now() - done.started
        self.stats.accepted += len(done.receipts)
        await self._notify()
        if self.events.active:
            self._publish(done.receipts)
        self._maybe_checkpoint()
        return True

    async def _notify(self) -> None:
        """Wake whoever waits for durable entries (``wait_for_entries``, ``durable``)."""
        if self._committed is not None:
            async with self._committed:
                self._committed.notify_all()

    async def _roll_back(self, failure: BaseException, groups: list[_Group]) -> None:
        """A commit failed: answer its pass and everything that waits behind it with 503 (nothing
        of it is acknowledged, and nothing is stamped after it), then rebuild the in-memory state
        from the log on disk, off the event loop; writes are accepted again once that is done."""
        self._broken = failure
        self.recovering = True
        self.read_epoch += 1
        LOG.error(
            "log commit failed after seq %d: %r; nothing past it was acknowledged; "
            "rebuilding the state from disk",
            self.durable_seq,
            failure,
        )
        error = LedgerUnavailableError(
            f"the log write failed and nothing was acknowledged: {failure!r}; retry shortly"
        )
        waiting, self._pending = self._pending, []
        self._pending_count = 0
        for group in [*groups, *waiting]:
            if not group.future.done():
                group.future.set_exception(error)
        marks, self._marks = self._marks, []
        for *_, future in marks:
            future.set_exception(error)
        await self._notify()
        try:
            await asyncio.to_thread(self._restore)
        except Exception as exc:
            self._broken = exc
            LOG.error("the state could not be rebuilt from disk (%r); restart the ledger", exc)
        else:
            self._broken = None
            LOG.warning("state rebuilt from disk at seq %d; accepting writes again", self.seq)
        finally:
            self.recovering = False
            self.read_epoch += 1
            await self._notify()

    def _first_receipt(self, outcome: Verified, error: PykoiiError) -> Any:
        """A replayed transaction gets the receipt of its first acceptance; otherwise its error."""
        entry = self.backend.find(outcome.tx.tx_id)
        if entry is not None:
            return orjson.loads(entry.receipt)
        self.stats.reject(error)
        return error

    async def _append(self, entries: list[LogEntry]) -> None:
        started = self.clock.now()
        # The rows are written on the event loop's thread and only the commit (the fsync) goes to the
        # writer thread: a thread that steps through the inserts re-takes the GIL after every step and
        # waits for the busy loop each time (milliseconds per commit under load); the commit alone
        # re-takes it once. The sequencer waits for the commit, so callers are answered only after it.
        self.backend.stage(entries)
        await asyncio.get_running_loop().run_in_executor(self._writer, self.backend.commit)
        self.stats.commits += 1
        self.stats.committed_entries += len(entries)
        self.stats.commit_seconds += self.clock.now() - started

    async def close(self) -> None:
        """Stop the sequencer after its current batch, write a checkpoint, and release storage."""
        if self._quiet_timer is not None:
            self._quiet_timer.cancel()
            self._quiet_timer = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        # The writer's commit finishes; what was applied and not written is dropped and refused.
        await asyncio.get_running_loop().run_in_executor(self._writer, lambda: None)
        closing = LedgerUnavailableError("the ledger is shutting down")
        for group in [group for done in self._passes for group in done.groups] + self._pending:
            if not group.future.done():
                group.future.set_exception(closing)
        # A background checkpoint waiting for its mark gives up (the final one replaces it).
        for *_, future in self._marks + [mark for done in self._passes for mark in done.marks]:
            if not future.done():
                future.set_exception(closing)
        self._pending, self._passes, self._marks = [], [], []
        last = self.backend.last_entry()
        if self._broken is None and (last.seq if last else 0) != self.seq:
            self._restore()
        self.events.close()
        if self._checkpointing is not None:
            try:
                await self._checkpointing
            except Exception:
                pass  # the final checkpoint below covers it
        if (
            self._broken is None
            and not self.read_only
            and self.seq > max(self._checkpoint_seq, self._last_mark_seq)
        ):
            await self.checkpoint()
        self._writer.shutdown(wait=True)
        self._checkpointer.shutdown(wait=True)
        self.verifier.close()
        self.backend.close()


def open_store(
    data_dir: str,
    *,
    clock: WallClock,
    genesis: Genesis | None = None,
    workers: int = 0,
    read_only: bool = False,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    blob_quota_bytes: int = DEFAULT_QUOTA_BYTES,
    **options: Any,
) -> LedgerStore:
    """A ``LedgerStore`` on ``DIR/ledger.sqlite3`` with blobs in ``DIR/blobs``; writes refused below
    ``reserve_bytes`` free on the disk, blobs limited to ``blob_quota_bytes`` in all."""
    from pathlib import Path

    folder = Path(data_dir)
    return LedgerStore(
        SQLiteLog(folder / "ledger.sqlite3"),
        clock=clock,
        genesis=genesis,
        verifier=Verifier(workers),
        blobs=BlobStore(folder / "blobs", reserve_bytes=reserve_bytes, quota_bytes=blob_quota_bytes),
        read_only=read_only,
        data_dir=str(folder),
        reserve_bytes=reserve_bytes,
        **options,
    )
