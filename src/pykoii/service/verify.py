"""Signature checks off the sequencer: batches of envelopes verified in worker processes.

Verification is about half the cost of accepting a transaction, and ed25519 in PyNaCl holds the
GIL, so it goes to worker processes rather than threads. Envelopes that arrive while a batch is
being verified are gathered into the next batch, across HTTP requests, so a worker is handed
hundreds of envelopes per round trip instead of one.

``Verifier(workers=0)`` verifies inline, in the calling thread: tests and small tools use it.
Either way each envelope goes through ``pykoii.keys.verify_envelope``, the one place signatures are
checked, and comes back as a ``Verified`` or as the ``PykoiiError`` that refused it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import orjson

from .. import errors
from ..errors import LedgerUnavailableError, MalformedTransactionError, PykoiiError
from ..keys import verify_envelope
from ..ledger.codec import canonical_bytes
from ..ledger.transactions import Transaction


@dataclass(frozen=True, slots=True)
class Verified:
    """An envelope whose signature verified: the decoded transaction and what the log keeps."""

    tx: Transaction
    canonical: bytes
    signature: str


Outcome = Verified | PykoiiError


def verify_one(envelope: Any) -> Outcome:
    """Verify one envelope; return a ``Verified`` or the error that refuses it."""
    try:
        tx = verify_envelope(envelope)
        return Verified(tx=tx, canonical=canonical_bytes(envelope["tx"]), signature=envelope["signature"])
    except PykoiiError as exc:
        return exc
    except (TypeError, ValueError, RecursionError) as exc:
        return MalformedTransactionError(f"transaction cannot be encoded: {exc}")


def _verify_payload(payload: bytes) -> list[tuple[Any, ...]]:
    """Worker side: verify a JSON list of envelopes; errors travel as ``(name, message)``."""
    out: list[tuple[Any, ...]] = []
    for envelope in orjson.loads(payload):
        outcome = verify_one(envelope)
        if isinstance(outcome, Verified):
            out.append((outcome.tx, outcome.canonical, outcome.signature))
        else:
            out.append((outcome.name, outcome.message))
    return out


def _outcome(item: tuple[Any, ...]) -> Outcome:
    if len(item) == 3:
        return Verified(*item)
    name, message = item
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, PykoiiError)):
        cls = MalformedTransactionError
    return cls(message)


def _warm(_: int = 0) -> int:
    return os.getpid()


class Verifier:
    """Verifies envelopes, inline (``workers=0``) or in ``workers`` processes, in batches."""

    def __init__(self, workers: int = 0, *, batch_max: int = 4096) -> None:
        self.workers = workers
        self.batch_max = batch_max
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
            # Start every worker now, not on the first request.
            list(self._pool.map(_warm, range(workers)))
        self._waiting: deque[tuple[list[Any], asyncio.Future[list[Outcome]]]] = deque()
        self._waiting_count = 0
        self._in_flight = 0
        self._flush_scheduled = False
        self.batches = 0
        self.verified = 0

    def verify_sync(self, envelopes: list[Any]) -> list[Outcome]:
        """Verify a list of envelopes and wait; spread over the workers in chunks if there are any."""
        if self._pool is None or len(envelopes) < 64:
            return [verify_one(envelope) for envelope in envelopes]
        size = max(64, len(envelopes) // (self.workers * 4) + 1)
        chunks = [orjson.dumps(envelopes[i : i + size]) for i in range(0, len(envelopes), size)]
        return [_outcome(item) for result in self._pool.map(_verify_payload, chunks) for item in result]

    async def verify(self, envelopes: list[Any]) -> list[Outcome]:
        """Verify envelopes, batched with those of concurrent callers."""
        if self._pool is None:
            return [verify_one(envelope) for envelope in envelopes]
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._waiting.append((envelopes, future))
        self._waiting_count += len(envelopes)
        self._schedule_flush()
        return await future

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._waiting:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        # At most two batches per worker in flight; the rest wait and grow into bigger batches.
        while self._waiting and self._in_flight < 2 * self.workers:
            batch: list[tuple[list[Any], asyncio.Future[list[Outcome]]]] = []
            count = 0
            while self._waiting and (not batch or count + len(self._waiting[0][0]) <= self.batch_max):
                item = self._waiting.popleft()
                batch.append(item)
                count += len(item[0])
            self._waiting_count -= count
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._run(batch, count))

    async def _run(self, batch: list[tuple[list[Any], asyncio.Future[list[Outcome]]]], count: int) -> None:
        assert self._pool is not None
        try:
            payload = orjson.dumps([envelope for envelopes, _ in batch for envelope in envelopes])
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._pool, _verify_payload, payload)
            start = 0
            for envelopes, future in batch:
                if not future.done():
                    future.set_result([_outcome(item) for item in results[start : start + len(envelopes)]])
                start += len(envelopes)
            self.batches += 1
            self.verified += count
        except Exception as exc:  # a dead worker or an unencodable envelope: fail this batch only
            error: PykoiiError
            if isinstance(exc, BrokenProcessPool | RuntimeError):
                error = LedgerUnavailableError(f"signature verification workers are down: {exc!r}")
            else:
                error = MalformedTransactionError(f"envelopes could not be verified: {exc!r}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        finally:
            self._in_flight -= 1
            self._schedule_flush()

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
