"""``ChainStore``: the ledger's state driven by CometBFT blocks instead of the sequencer.

It is a ``LedgerStore`` (the same state, hash-chained SQLite log, receipts, event hub and start-up
replay), with four differences:

- **Slots come from the block's BFT time**, not from the local clock nor the height: block ``H`` at
  time ``T`` (the engine's, in FinalizeBlock) is in slot ``block_slot(T)`` = ``(T - anchor_ms) //
  slot_ms``, never below the slot of block ``H - 1`` (the sequencer's ``SlotClock`` counts the same
  way from its own clock). ``finalize_block`` applies every transaction of the block with
  ``apply_transaction(state, tx, slot)``; ``slot()`` is the last committed block's slot, which
  clients sign as ``recent_slot``. Several blocks may share a slot; a slot may hold none.
- **Blocks are persisted at Commit.** The accepted transactions of a block become log entries (their
  ``slot`` is the block's slot) and one row of the ``blocks`` table (height, app hash, last seq, slot),
  all in one SQLite commit; start-up replays the log (after the newest checkpoint) and checks that
  the state root equals the app hash of the last block, which ``Info`` then reports to the engine.
- **Checkpoints are tied to blocks**, not marked in the log (``checkpoints.BlockCheckpoints``), so
  every validator's log stays the same.
- **Writes go through the engine.** ``submit`` broadcasts the envelope through the engine's RPC
  (``broadcast_tx_sync``, which runs ``CheckTx``) and answers only when the block holding it is
  committed **and** the network built on it: block ``H``'s outcomes are released when block
  ``H + 1`` is finalized, which the engine does only after checking that ``H + 1``'s header carries
  the app hash this validator computed for ``H``. A validator whose state diverged therefore never
  acknowledges anything from the diverged state.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import orjson

from ..client import error_from_body
from ..clock import SystemClock
from ..errors import (
    DuplicateTransactionError,
    InvalidTransactionError,
    LedgerUnavailableError,
    LogCorruptionError,
    MalformedTransactionError,
    PayloadTooLargeError,
    PykoiiError,
    StaleTransactionError,
)
from ..ledger import apply_transaction, canonical_bytes
from ..ledger.codec import sha256_hex
from ..ledger.transition import check_recency
from ..ledger.types import Roe
from ..service.blobs import DEFAULT_QUOTA_BYTES, BlobStore
from ..service.log import LogEntry, entry_hash_of
from ..service.records import Genesis, receipt_plain
from ..service.space import DEFAULT_RESERVE_BYTES
from ..service.store import LedgerStore
from ..service.verify import Verified, Verifier
from .checkpoints import BlockCheckpoints
from .log import BlockRecord, ChainLog

MAX_TX_BYTES = 1024 * 1024
"""The largest transaction the application accepts (the engine's mempool allows 4 MiB, so a bigger
one reaches ``CheckTx`` and is refused with a code)."""

BROADCAST_PARALLEL = 32
"""A ``POST /tx`` batch goes to the engine as up to this many concurrent JSON-RPC batches."""

CACHE_SIZE = 200_000
"""Verified transactions remembered between ``CheckTx`` and the block that holds them."""


@dataclass(slots=True)
class TxResult:
    """What ``finalize_block`` decided for one transaction."""

    code: int
    codespace: str = ""
    log: str = ""
    data: bytes = b""
    receipt: dict[str, Any] | None = None
    tx: Any = None
    """The decoded transaction (for the ABCI events)."""


@dataclass(slots=True)
class _Block:
    """A finalized block waiting for Commit."""

    height: int
    slot: int
    entries: list[LogEntry] = field(default_factory=list)
    receipts: list[tuple[dict[str, Any], Verified]] = field(default_factory=list)
    outcomes: dict[bytes, dict[str, Any] | PykoiiError] = field(default_factory=dict)
    """Per transaction hash: the receipt or the refusal a waiting ``POST /tx`` gets."""
    app_hash: str = ""


ERROR_NAMES: tuple[str, ...] = ()


def error_code(error: PykoiiError) -> int:
    """The ABCI code of a refusal: 1 + the error's place among pykoii's error names (sorted)."""
    global ERROR_NAMES
    if not ERROR_NAMES:
        from .. import errors

        ERROR_NAMES = tuple(
            sorted(
                name
                for name, value in vars(errors).items()
                if isinstance(value, type) and issubclass(value, errors.PykoiiError)
            )
        )
    try:
        return 1 + ERROR_NAMES.index(error.name)
    except ValueError:
        return len(ERROR_NAMES) + 1


def with_height(receipt: dict[str, Any], height: int) -> dict[str, Any]:
    """A receipt as a validator answers it: plus ``height``, the block that holds it (its ``slot``
    is that block's slot). The log keeps the plain receipt, which replay recomputes and compares."""
    return {**receipt, "height": height}


def block_slot(genesis: Genesis, time_ms: int, previous: int) -> int:
    """The slot of a block whose BFT time is ``time_ms`` (ms since the epoch), after a block in slot
    ``previous``: slot ``n`` covers ``[anchor_ms + n*slot_ms, anchor_ms + (n+1)*slot_ms)``."""
    return max(previous, (time_ms - genesis.anchor_ms) // genesis.slot_ms)


def time_ms(timestamp: Any) -> int:
    """Milliseconds since the epoch of a protobuf ``Timestamp``."""
    return int(timestamp.seconds) * 1000 + int(timestamp.nanos) // 1_000_000


def tx_hash(tx: bytes) -> bytes:
    """The engine's id of a transaction: SHA-256 of its bytes."""
    return hashlib.sha256(tx).digest()


class ChainStore(BlockCheckpoints, LedgerStore):
    """A ``LedgerStore`` whose transactions are ordered by CometBFT (see the module docstring)."""

    backend: ChainLog

    def __init__(
        self,
        backend: ChainLog,
        *,
        genesis: Genesis,
        rpc_url: str,
        verifier: Verifier | None = None,
        blobs: BlobStore | None = None,
        ack_timeout: float = 30.0,
        stall_after: float = 10.0,
        retain_blocks: int = 0,
        diverge_at: int = 0,
        replay_log: bool = False,
        **options: Any,
    ) -> None:
        if replay_log:
            backend.drop_checkpoints()
        super().__init__(
            backend, clock=SystemClock(), genesis=genesis, verifier=verifier, blobs=blobs, **options
        )
        if self.genesis.hash != genesis.hash:
            raise LogCorruptionError(
                f"{backend.path} holds a ledger of another genesis ({self.genesis.hash}, the network's is "
                f"{genesis.hash}); start this validator on an empty folder"
            )
        self.rpc_url = rpc_url.rstrip("/")
        self.ack_timeout = ack_timeout
        self.stall_after = stall_after
        self.retain_blocks = retain_blocks
        self.diverge_at = diverge_at
        """Test-only: corrupt the state at this height so the validator diverges (0: never)."""
        last = backend.last_block()
        self.height = last.height if last else 0
        self.block_slot = last.slot if last else 0
        """The slot of the last committed block."""
        self.app_hash = self.root() if last is None else last.app_hash
        if last is not None:
            if last.seq != self.seq:
                raise LogCorruptionError(
                    f"block {last.height} was recorded after log entry {last.seq}, but the log ends at "
                    f"{self.seq}",
                    seq=self.seq,
                )
            root = self._roots.get(self.seq) or self.root()
            if root != last.app_hash:
                raise LogCorruptionError(
                    f"the state replayed from the log has root {root}, but block {last.height} "
                    f"recorded app hash {last.app_hash}",
                    seq=self.seq,
                )
        self.last_commit_at = time.monotonic()
        self._cache: OrderedDict[bytes, Verified] = OrderedDict()
        self._block: _Block | None = None
        self._unconfirmed: _Block | None = None
        self._waiters: dict[bytes, list[asyncio.Future[dict[str, Any] | PykoiiError]]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.halted: str | None = None
        """Why this validator stopped (divergence, engine exit), once it has."""

    # --- reading ----------------------------------------------------------------------------

    def slot(self) -> int:
        """The last committed block's slot: the slot clients sign with."""
        return self.block_slot

    def receipt(self, tx_id: str) -> dict[str, Any]:
        """The receipt of an accepted transaction with the ``height`` of its block."""
        return self._with_block_height(super().receipt(tx_id))

    def _with_block_height(self, receipt: dict[str, Any]) -> dict[str, Any]:
        """A logged (committed) receipt plus the height of the block that holds it."""
        block = self.backend.block_holding(receipt["seq"])
        return with_height(receipt, block.height if block else self.height)

    @property
    def role(self) -> str:
        return "validator"

    @property
    def healthy(self) -> bool:
        return self.halted is None and self._broken is None

    def mark_halted(self, why: str) -> None:
        """Refuse writes from now on and fail every waiting ``POST /tx`` with ``why``."""
        self.halted = why
        self._broken = LedgerUnavailableError(why)
        error = LedgerUnavailableError(f"{why}; nothing waiting was acknowledged")
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_result(error)
        self._waiters.clear()

    # --- start and stop ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._committed is None:
            self._wakeup = asyncio.Event()
            self._committed = asyncio.Condition()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.ack_timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().close()

    # --- CheckTx, proposals -----------------------------------------------------------------

    def decode(self, tx: bytes) -> Any:
        """The envelope of a transaction's bytes, or the error that refuses them."""
        if len(tx) > MAX_TX_BYTES:
            return PayloadTooLargeError(
                f"transaction of {len(tx)} bytes is over the limit of {MAX_TX_BYTES}", limit=MAX_TX_BYTES
            )
        try:
            return orjson.loads(tx)
        except orjson.JSONDecodeError as exc:
            return MalformedTransactionError(f"transaction bytes are not a JSON envelope: {exc}")

    async def verified(self, txs: Sequence[bytes]) -> list[Verified | PykoiiError]:
        """Each transaction checked (size, envelope, signature) from the cache or by the workers."""
        out: list[Verified | PykoiiError | None] = []
        missing: list[tuple[int, Any]] = []
        for index, tx in enumerate(txs):
            cached = self._cache.get(tx_hash(tx))
            if cached is not None:
                out.append(cached)
                continue
            envelope = self.decode(tx)
            if isinstance(envelope, PykoiiError):
                out.append(envelope)
                continue
            out.append(None)
            missing.append((index, envelope))
        if missing:
            outcomes = await self.verifier.verify([envelope for _, envelope in missing])
            for (index, _), outcome in zip(missing, outcomes, strict=True):
                out[index] = outcome
                if isinstance(outcome, Verified):
                    self._remember(txs[index], outcome)
        return cast(list[Verified | PykoiiError], out)

    def _remember(self, tx: bytes, outcome: Verified) -> None:
        self._cache[tx_hash(tx)] = outcome
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    async def check_tx(self, tx: bytes, recheck: bool) -> Verified | PykoiiError:
        """``CheckTx``: size, envelope, signature (skipped on recheck for a cached one), replay horizon."""
        cached = self._cache.get(tx_hash(tx)) if recheck else None
        outcome = cached if cached is not None else (await self.verified([tx]))[0]
        if isinstance(outcome, Verified):
            try:
                check_recency(self.state, outcome.tx, self.block_slot)
            except InvalidTransactionError as exc:
                return exc
        return outcome

    # --- FinalizeBlock and Commit -----------------------------------------------------------

    async def finalize_block(
        self, txs: Sequence[bytes], height: int, time_ms: int
    ) -> tuple[list[TxResult], str]:
        """Apply block ``height`` of BFT time ``time_ms``; return one result per transaction and the
        app hash after it."""
        self._confirm(height)
        outcomes = await self.verified(txs)
        slot = block_slot(self.genesis, time_ms, self.block_slot)
        block = self._block = _Block(height, slot)
        results: list[TxResult] = []
        accepted: dict[str, dict[str, Any]] = {}
        for tx, outcome in zip(txs, outcomes, strict=True):
            key = tx_hash(tx)
            self._cache.pop(key, None)
            if not isinstance(outcome, Verified):
                results.append(self._refused(block, key, outcome))
                continue
            try:
                receipt = apply_transaction(self.state, outcome.tx, slot)
            except (DuplicateTransactionError, StaleTransactionError) as exc:
                first = accepted.get(outcome.tx.tx_id)
                first = with_height(first, height) if first else self._first_receipt(outcome, exc)
                result = self._refused(block, key, exc)
                if not isinstance(first, PykoiiError):
                    block.outcomes[key] = first if "height" in first else self._with_block_height(first)
                result.tx = outcome.tx
                results.append(result)
                continue
            except InvalidTransactionError as exc:
                self.stats.reject(exc)
                result = self._refused(block, key, exc)
                result.tx = outcome.tx
                results.append(result)
                continue
            self.seq += 1
            entry_hash = entry_hash_of(self.seq, slot, self.last_hash, outcome.signature, outcome.canonical)
            plain = receipt_plain(receipt, self.seq)
            data = orjson.dumps(plain)
            block.entries.append(
                LogEntry(
                    self.seq,
                    slot,
                    receipt.tx_id,
                    outcome.canonical,
                    outcome.signature,
                    self.last_hash,
                    entry_hash,
                    data,
                )
            )
            self.last_hash, self.last_slot = entry_hash, slot
            accepted[receipt.tx_id] = plain
            block.outcomes[key] = with_height(plain, height)
            block.receipts.append((plain, outcome))
            results.append(TxResult(code=0, data=data, receipt=plain, tx=outcome.tx))
        if self.diverge_at and height == self.diverge_at:
            # Test-only switch (PYKOII_TEST_DIVERGE_AT): mint one ROE nobody sent, so this
            # validator's app hash differs from every other's from this height on.
            self.state.total_supply = Roe(self.state.total_supply + 1)
            self.app_hash = ""
        if block.entries or not self.app_hash:
            self.app_hash = self.root()
        block.app_hash = self.app_hash
        return results, self.app_hash

    def _refused(self, block: _Block, key: bytes, error: PykoiiError) -> TxResult:
        block.outcomes[key] = error
        return TxResult(code=error_code(error), codespace=error.name, log=error.message)

    async def commit_block(self) -> int:
        """``Commit``: make the finalized block durable; return the height the engine may prune below."""
        block = self._block
        assert block is not None, "Commit without FinalizeBlock"
        self.backend.next_block = BlockRecord(
            block.height, block.app_hash, self.seq, len(block.outcomes), block.slot
        )
        try:
            await self._append(block.entries)
        except Exception as exc:
            # No rollback here: the engine has decided the block, so this validator stops (the
            # exception reaches the engine, which halts) and replays from its log after a restart.
            self._broken = exc
            raise
        self.durable_seq, self.durable_hash = self.seq, self.last_hash
        self._block = None
        self.height = block.height
        new_slot, self.block_slot = block.slot > self.block_slot, block.slot
        self.last_commit_at = time.monotonic()
        self._unconfirmed = block
        self.stats.accepted += len(block.entries)
        await self._notify()
        if self.events.active:
            self._publish(block.receipts)
        if new_slot:
            self._publish_slot(block.slot)
        self._maybe_block_checkpoint(block.app_hash)
        return max(0, block.height - self.retain_blocks) if self.retain_blocks else 0

    def _confirm(self, height: int) -> None:
        """Block ``height`` is being finalized, so the engine accepted the app hash of ``height - 1``:
        release the outcomes of that block to the ``POST /tx`` calls waiting for them."""
        block, self._unconfirmed = self._unconfirmed, None
        if block is None or block.height != height - 1:
            return
        for key, outcome in block.outcomes.items():
            for future in self._waiters.pop(key, ()):
                if not future.done():
                    future.set_result(outcome)

    # --- POST /tx ---------------------------------------------------------------------------

    def submit_later(self, envelopes: list[Any]) -> asyncio.Future[list[Any]]:
        """``submit_batch`` (through the engine, not the local sequencer) as a task."""
        return asyncio.get_running_loop().create_task(self.submit_batch(envelopes))

    async def submit_batch(self, envelopes: list[Any]) -> list[dict[str, Any] | PykoiiError]:
        """Broadcast envelopes through the engine; each answer is the receipt once the network
        committed it (with ``height``), or why it was refused."""
        self._check_writable()
        quiet = time.monotonic() - self.last_commit_at
        if quiet > self.stall_after:
            raise LedgerUnavailableError(
                f"no block was committed for {quiet:.1f} s (last height {self.height}): fewer than 2/3 "
                "of the validators' voting power is online, so the network cannot commit transactions; "
                "nothing was sent, retry when blocks resume",
                height=self.height,
            )
        txs = [orjson.dumps(envelope) for envelope in envelopes]
        keys = [tx_hash(tx) for tx in txs]
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[dict[str, Any] | PykoiiError]] = []
        for key in keys:
            future: asyncio.Future[dict[str, Any] | PykoiiError] = loop.create_future()
            self._waiters.setdefault(key, []).append(future)
            futures.append(future)
        try:
            answers = await self._broadcast(txs)
        except BaseException:
            for key, future in zip(keys, futures, strict=True):
                self._forget(key, future)
            raise
        results: list[dict[str, Any] | PykoiiError | None] = [None] * len(txs)
        waiting = []
        for index, answer in enumerate(answers):
            refusal = self._refusal(answer, envelopes[index])
            if refusal is None:
                waiting.append(index)
                continue
            self._forget(keys[index], futures[index])
            results[index] = refusal
        if waiting:
            done, _ = await asyncio.wait([futures[i] for i in waiting], timeout=self.ack_timeout)
            for index in waiting:
                future = futures[index]
                if future.done():
                    results[index] = future.result()
                    continue
                self._forget(keys[index], future)
                results[index] = LedgerUnavailableError(
                    f"the transaction passed CheckTx but no committed block held it within "
                    f"{self.ack_timeout:.0f} s (last height {self.height}); it was not acknowledged: "
                    "fewer than 2/3 of the validators may be online. Sending it again is safe",
                    height=self.height,
                )
        return cast(list[dict[str, Any] | PykoiiError], results)

    def _forget(self, key: bytes, future: asyncio.Future[Any]) -> None:
        futures = self._waiters.get(key)
        if futures is not None:
            if future in futures:
                futures.remove(future)
            if not futures:
                del self._waiters[key]

    def _refusal(self, answer: Any, envelope: Any) -> PykoiiError | dict[str, Any] | None:
        """The error (or first receipt) a ``broadcast_tx_sync`` answer means; ``None`` if admitted."""
        if "error" in answer:
            message = str(answer["error"].get("data") or answer["error"].get("message"))
            if "already exists in cache" in message:
                receipt = self._receipt_of(envelope)
                return receipt  # None: still in the mempool, wait for its block
            if "too large" in message.lower():
                return PayloadTooLargeError(f"the engine refused the transaction: {message}")
            if "mempool is full" in message:
                return LedgerUnavailableError(f"the engine's mempool is full; retry shortly ({message})")
            return LedgerUnavailableError(f"the engine refused the transaction: {message}")
        result = answer["result"]
        if int(result.get("code", 0)) == 0:
            return None
        error = error_from_body(400, {"error": result.get("codespace"), "message": result.get("log", "")})
        if isinstance(error, DuplicateTransactionError):
            receipt = self._receipt_of(envelope)
            if receipt is not None:
                return receipt
        return error

    def _receipt_of(self, envelope: Any) -> dict[str, Any] | None:
        """The receipt of an already accepted transaction, found by its id."""
        try:
            tx_id = sha256_hex(canonical_bytes(envelope["tx"]))
        except (TypeError, KeyError, ValueError):
            return None
        entry = self.backend.find(tx_id)
        return None if entry is None else self._with_block_height(orjson.loads(entry.receipt))

    async def _broadcast(self, txs: list[bytes]) -> list[Any]:
        """``broadcast_tx_sync`` for each transaction, as up to ``BROADCAST_PARALLEL`` concurrent
        JSON-RPC batches: the engine answers one batch's calls one after the other, each after its
        ``CheckTx``, which its ABCI client flushes on a 20 ms timer (a batch of N: ~N periods)."""
        if not txs:
            return []
        size = -(-len(txs) // BROADCAST_PARALLEL)
        parts = await asyncio.gather(
            *(
                self._broadcast_part(txs, start, min(start + size, len(txs)))
                for start in range(0, len(txs), size)
            )
        )
        return [answer for part in parts for answer in part]

    async def _broadcast_part(self, txs: list[bytes], start: int, end: int) -> list[Any]:
        assert self._session is not None, "ChainStore.start() was not called"
        calls = [
            {
                "jsonrpc": "2.0",
                "id": index,
                "method": "broadcast_tx_sync",
                "params": {"tx": base64.b64encode(txs[index]).decode()},
            }
            for index in range(start, end)
        ]
        try:
            async with self._session.post(self.rpc_url, data=orjson.dumps(calls)) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LedgerUnavailableError(
                f"this validator's engine RPC at {self.rpc_url} cannot be reached ({exc!r}); nothing was "
                "acknowledged, sending again is safe"
            ) from None
        answers = orjson.loads(body)
        if isinstance(answers, dict):
            answers = [answers]
        by_id = {answer.get("id"): answer for answer in answers}
        return [
            by_id.get(index, {"error": {"message": "no answer from the engine"}})
            for index in range(start, end)
        ]


def open_chain_store(
    data_dir: str | Path,
    *,
    genesis: Genesis,
    rpc_url: str,
    workers: int = 1,
    reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    blob_quota_bytes: int = DEFAULT_QUOTA_BYTES,
    **options: Any,
) -> ChainStore:
    """A ``ChainStore`` on ``DIR/ledger.sqlite3`` with blobs in ``DIR/blobs``: at most
    ``blob_quota_bytes`` of them, never leaving less than ``reserve_bytes`` free on the disk."""
    folder = Path(data_dir)
    return ChainStore(
        ChainLog(folder / "ledger.sqlite3"),
        genesis=genesis,
        rpc_url=rpc_url,
        verifier=Verifier(workers),
        blobs=BlobStore(folder / "blobs", reserve_bytes=reserve_bytes, quota_bytes=blob_quota_bytes),
        data_dir=str(folder),
        reserve_bytes=reserve_bytes,
        **options,
    )
