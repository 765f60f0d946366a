"""Signature checks off the sequencer: batches of envelopes verified in worker processes.

Verification is about half the cost of accepting a transaction, and ed25519 in PyNaCl holds the
GIL, so it goes to worker processes rather than threads. Envelopes that arrive while a batch is
being verified are gathered into the next batch, across HTTP requests, so a worker is handed
hundreds of envelopes per round trip instead of one.

``Verifier(workers=0)`` verifies inline, in the calling thread: tests and small tools use it.
Either way each envelope goes through ``pykoii.keys.verify_envelope_bytes``, the one place
signatures are checked, and comes back as a ``Verified`` or as the ``PykoiiError`` that refused it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import selectors
import signal
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .. import errors
from ..errors import LedgerUnavailableError, MalformedTransactionError, PykoiiError
from ..keys import verify_envelope_bytes
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
    result = _attempt(envelope)
    if isinstance(result, PykoiiError):
        return result
    return Verified(tx=result[0], canonical=result[1], signature=envelope["signature"])


def _attempt(envelope: Any) -> tuple[Transaction, bytes] | PykoiiError:
    """``verify_envelope_bytes`` of an envelope, or the error that refuses it."""
    try:
        return verify_envelope_bytes(envelope)
    except PykoiiError as exc:
        return exc
    except Exception as exc:  # hostile input must fail its own envelope, never the worker's batch
        return MalformedTransactionError(f"transaction cannot be encoded: {exc}"[:300])


def _verify_payload(payload: bytes) -> list[tuple[Any, ...]]:
    """Worker side: verify a JSON list of envelopes; each comes back as ``(tx, canonical,
    signature)``, or its error as ``(name, message)``."""
    out: list[tuple[Any, ...]] = []
    for envelope in orjson.loads(payload):
        result = _attempt(envelope)
        if isinstance(result, PykoiiError):
            out.append((result.name, result.message))
        else:
            out.append((result[0], result[1], envelope["signature"]))
    return out


def _outcome(item: tuple[Any, ...]) -> Outcome:
    if len(item) == 3:
        return Verified(*item)
    name, message = item
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, PykoiiError)):
        cls = MalformedTransactionError
    return cls(message)


_HEADER = struct.Struct("!I")
"""Frames between the service and a worker: a 4-byte big-endian length, then the payload."""


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Exactly ``size`` bytes from a blocking socket, or ``None`` at end of stream."""
    chunks, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv_frame(sock: socket.socket) -> bytes | None:
    header = _recv_exact(sock, _HEADER.size)
    if header is None:
        return None
    return _recv_exact(sock, _HEADER.unpack(header)[0])


def _worker_main(channels: list[socket.socket]) -> None:
    """A worker process: answer every frame (a JSON list of envelopes) on either channel with the
    pickled ``_verify_payload`` of it; exit when the service closes a channel (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the service's to handle
    selector = selectors.DefaultSelector()
    for channel in channels:
        channel.setblocking(True)
        selector.register(channel, selectors.EVENT_READ, channel)
    while True:
        for key, _ in selector.select():
            channel = key.data
            payload = _recv_frame(channel)
            if payload is None:
                return
            try:
                result: Any = _verify_payload(payload)
            except Exception as exc:  # answered as a failed batch; the worker keeps serving
                result = repr(exc)
            answer = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            channel.sendall(_HEADER.pack(len(answer)) + answer)


Done = Callable[[list[Outcome] | PykoiiError], None]
"""Called once with a request's outcomes, in order, or with the error that failed its whole batch."""
_Batch = list[tuple[list[Any], Done]]


class _Worker:
    """One worker process and the service's two channels to it: ``async_sock`` is read and written by
    the event loop (non-blocking, callbacks; answers come back in the order requests were sent),
    ``sync_sock`` by ``verify_sync`` (blocking, from any thread, under a lock)."""

    def __init__(self, context: Any) -> None:
        self.async_sock, async_child = socket.socketpair()
        self.sync_sock, sync_child = socket.socketpair()
        self.process = context.Process(
            target=_worker_main, args=([async_child, sync_child],), name="pykoii-verify", daemon=True
        )
        self.process.start()
        async_child.close()
        sync_child.close()
        self.async_sock.setblocking(False)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.sent: deque[tuple[_Batch, int]] = deque()
        """Batches sent and not answered yet, oldest first."""
        self.dead: BaseException | None = None
        self.writing = False
        """Whether the loop watches ``async_sock`` to send the rest of ``outbox``."""


class Verifier:
    """Verifies envelopes, inline (``workers=0``) or in ``workers`` processes, in batches.

    Each worker is a process with a socket pair to the service; the event loop writes a batch and
    reads the answer through callbacks on the socket, with no helper threads (whose hand-offs of the
    GIL cost the service's main process latency on every batch)."""

    def __init__(self, workers: int = 0, *, batch_max: int = 256) -> None:
        self.workers = workers
        self.batch_max = batch_max
        """The most envelopes per frame to a worker; a bigger request is verified in pieces."""
        self._workers: list[_Worker] = []
        self._sync_lock = threading.Lock()
        if workers > 0:
            context = multiprocessing.get_context("spawn")
            self._workers = [_Worker(context) for _ in range(workers)]
            # Wait until every worker is up and answering, not on the first request.
            self._sync_round([orjson.dumps([]) for _ in self._workers])
        self._waiting: deque[tuple[list[Any], Done]] = deque()
        self._waiting_count = 0
        self._in_flight = 0
        self._flush_scheduled = False
        self.batches = 0
        self.verified = 0

    def verify_sync(self, envelopes: list[Any]) -> list[Outcome]:
        """Verify a list of envelopes and wait; spread over the workers in chunks if there are any."""
        if not self._workers or len(envelopes) < 64:
            return [verify_one(envelope) for envelope in envelopes]
        size = max(64, len(envelopes) // (self.workers * 4) + 1)
        envelopes, refusals = _encodable(envelopes)
        chunks = [orjson.dumps(envelopes[i : i + size]) for i in range(0, len(envelopes), size)]
        out: list[Outcome] = []
        for i in range(0, len(chunks), len(self._workers)):
            for result in self._sync_round(chunks[i : i + len(self._workers)]):
                out.extend(_outcome(item) for item in result)
        for index, error in refusals.items():
            out[index] = error
        return out

    def _sync_round(self, payloads: list[bytes]) -> list[list[tuple[Any, ...]]]:
        """Send payload ``i`` to worker ``i`` on its blocking channel, then read every answer."""
        with self._sync_lock:
            workers = self._workers[: len(payloads)]
            try:
                for worker, payload in zip(workers, payloads, strict=True):
                    worker.sync_sock.sendall(_HEADER.pack(len(payload)) + payload)
                answers = [_recv_frame(worker.sync_sock) for worker in workers]
            except OSError as exc:
                raise LedgerUnavailableError(f"signature verification workers are down: {exc!r}") from None
            if any(answer is None for answer in answers):
                raise LedgerUnavailableError("signature verification workers are down: a worker exited")
            return [pickle.loads(answer) for answer in answers if answer is not None]

    async def verify(self, envelopes: list[Any]) -> list[Outcome]:
        """Verify envelopes, batched with those of concurrent callers."""
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()

        def done(result: list[Outcome] | PykoiiError) -> None:
            if future.done():
                return
            if isinstance(result, PykoiiError):
                future.set_exception(result)
            else:
                future.set_result(result)

        self.verify_then(envelopes, done)
        return await future

    def verify_then(self, envelopes: list[Any], done: Done) -> None:
        """Verify envelopes, batched with those of concurrent callers, and call ``done`` with the
        outcomes from the event loop (at once when verifying inline). The sequencer's queue is fed
        this way, without waking each caller's coroutine in between."""
        if not self._workers:
            done([verify_one(envelope) for envelope in envelopes])
            return
        size = self.batch_max
        if len(envelopes) <= size:
            self._waiting.append((envelopes, done))
        else:
            # In pieces, over every worker: the first request of a burst is verified (and reaches
            # the sequencer) while the others still are, instead of all of them at once at the end.
            pieces = [envelopes[i : i + size] for i in range(0, len(envelopes), size)]
            self._waiting.extend(zip(pieces, _joined(len(pieces), done), strict=True))
        self._waiting_count += len(envelopes)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._waiting:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        # At most two batches per worker in flight; the rest wait and grow into bigger batches.
        while self._waiting and self._in_flight < 2 * self.workers:
            # What waits is split evenly over the idle workers, so a burst is verified in parallel.
            idle = sum(1 for worker in self._workers if not worker.sent and worker.dead is None)
            share = min(self.batch_max, -(-self._waiting_count // max(idle, 1)))
            batch: _Batch = []
            count = 0
            while self._waiting and (not batch or count + len(self._waiting[0][0]) <= share):
                item = self._waiting.popleft()
                batch.append(item)
                count += len(item[0])
            self._waiting_count -= count
            self._send(batch, count)

    def _send(self, batch: _Batch, count: int) -> None:
        """Hand a batch to the worker with the fewest batches in flight."""
        try:
            payload = orjson.dumps([envelope for envelopes, _ in batch for envelope in envelopes])
        except Exception:  # an envelope orjson cannot encode (e.g. nested too deep): refuse it alone
            batch = [_set_aside_unencodable(envelopes, done) for envelopes, done in batch]
            payload = orjson.dumps([envelope for envelopes, _ in batch for envelope in envelopes])
        worker = min(self._workers, key=lambda w: (w.dead is not None, len(w.sent)))
        if worker.dead is not None:
            _fail(batch, _down(worker.dead))
            return
        self._attach(worker)
        worker.sent.append((batch, count))
        self._in_flight += 1
        worker.outbox += _HEADER.pack(len(payload))
        worker.outbox += payload
        if not worker.writing:
            self._write(worker)

    def _attach(self, worker: _Worker) -> None:
        loop = asyncio.get_running_loop()
        if worker.loop is not loop:
            worker.loop = loop
            loop.add_reader(worker.async_sock.fileno(), self._read, worker)

    def _write(self, worker: _Worker) -> None:
        try:
            sent = worker.async_sock.send(worker.outbox)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(worker, exc)
            return
        del worker.outbox[:sent]
        assert worker.loop is not None
        if worker.outbox and not worker.writing:
            worker.loop.add_writer(worker.async_sock.fileno(), self._write, worker)
        elif not worker.outbox and worker.writing:
            worker.loop.remove_writer(worker.async_sock.fileno())
        worker.writing = bool(worker.outbox)

    def _read(self, worker: _Worker) -> None:
        try:
            data = worker.async_sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(worker, exc)
            return
        if not data:
            self._lost(worker, ConnectionResetError("the worker process exited"))
            return
        worker.inbox += data
        while len(worker.inbox) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(worker.inbox)
            if len(worker.inbox) < _HEADER.size + size:
                break
            results = pickle.loads(worker.inbox[_HEADER.size : _HEADER.size + size])
            del worker.inbox[: _HEADER.size + size]
            batch, count = worker.sent.popleft()
            self._in_flight -= 1
            if isinstance(results, str):  # the worker failed on the whole batch
                _fail(batch, MalformedTransactionError(f"envelopes could not be verified: {results}"))
                continue
            start = 0
            for envelopes, done in batch:
                done([_outcome(item) for item in results[start : start + len(envelopes)]])
                start += len(envelopes)
            self.batches += 1
            self.verified += count
        self._schedule_flush()

    def _lost(self, worker: _Worker, exc: BaseException) -> None:
        """A worker's channel broke: fail its batches; later batches go to the other workers."""
        worker.dead = exc
        if worker.loop is not None and not worker.loop.is_closed():
            worker.loop.remove_reader(worker.async_sock.fileno())
            worker.loop.remove_writer(worker.async_sock.fileno())
        while worker.sent:
            batch, _ = worker.sent.popleft()
            self._in_flight -= 1
            _fail(batch, _down(exc))
        self._schedule_flush()

    def close(self) -> None:
        """Stop the worker processes."""
        for worker in self._workers:
            if worker.loop is not None and not worker.loop.is_closed():
                worker.loop.remove_reader(worker.async_sock.fileno())
                worker.loop.remove_writer(worker.async_sock.fileno())
            worker.async_sock.close()
            worker.sync_sock.close()
        for worker in self._workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self._workers = []


def _encodable(envelopes: list[Any]) -> tuple[list[Any], dict[int, PykoiiError]]:
    """``envelopes`` with each one orjson cannot encode replaced by ``None`` (which the worker answers
    cheaply), and the refusal that replaces its outcome, by index: one hostile envelope fails only
    itself, not the other envelopes of its batch."""
    kept = list(envelopes)
    refusals: dict[int, PykoiiError] = {}
    for index, envelope in enumerate(envelopes):
        try:
            orjson.dumps(envelope)
        except (TypeError, ValueError) as exc:
            kept[index] = None
            refusals[index] = MalformedTransactionError(
                f"envelope {index} cannot be encoded ({exc}); transactions nest at most 3 levels deep"
            )
    return kept, refusals


def _set_aside_unencodable(envelopes: list[Any], done: Done) -> tuple[list[Any], Done]:
    """A request with its unencodable envelopes set aside: ``done`` gets their refusals in place."""
    kept, refusals = _encodable(envelopes)
    if not refusals:
        return envelopes, done

    def patched(result: list[Outcome] | PykoiiError) -> None:
        if isinstance(result, list):
            for index, error in refusals.items():
                result[index] = error
        done(result)

    return kept, patched


def _joined(count: int, done: Done) -> list[Done]:
    """``count`` callbacks, one per piece of a request: ``done`` gets every piece's outcomes in
    order once all are back, or the first error that failed a piece (once)."""
    parts: list[list[Outcome] | None] = [None] * count
    left = [count]

    def piece(index: int) -> Done:
        def arrived(result: list[Outcome] | PykoiiError) -> None:
            if left[0] <= 0:
                return  # a piece failed before: the request was answered with its error
            if isinstance(result, PykoiiError):
                left[0] = 0
                done(result)
                return
            parts[index] = result
            left[0] -= 1
            if left[0] == 0:
                done([outcome for part in parts if part is not None for outcome in part])

        return arrived

    return [piece(index) for index in range(count)]


def _down(exc: BaseException) -> LedgerUnavailableError:
    return LedgerUnavailableError(f"signature verification workers are down: {exc!r}")


def _fail(batch: _Batch, error: PykoiiError) -> None:
    for _, done in batch:
        done(error)
