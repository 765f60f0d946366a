"""``POST /tx``, the ingest hot path: one handler (``TxIngest``) for every way a request reaches it,
and the JSON of errors (status per error class) that every route of the ledger answers with."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive, Scope, Send

from ..errors import (
    BlobCorruptionError,
    InsufficientStorageError,
    InvalidRequestError,
    InvalidTransactionError,
    LedgerUnavailableError,
    LogCorruptionError,
    MalformedTransactionError,
    NotFoundError,
    PayloadTooLargeError,
    PykoiiError,
    ReadOnlyReplicaError,
)
from .openapi import MAX_BATCH

if TYPE_CHECKING:
    from .store import LedgerStore

LOG = logging.getLogger("pykoii.ledger")

MAX_TX_BODY = 4 * 1024 * 1024
"""The largest ``POST /tx`` body, in bytes."""

STATUS: dict[type[PykoiiError], int] = {
    PayloadTooLargeError: 413,
    InvalidRequestError: 400,
    InvalidTransactionError: 400,
    NotFoundError: 404,
    ReadOnlyReplicaError: 403,
    LedgerUnavailableError: 503,
    InsufficientStorageError: 507,
    LogCorruptionError: 500,
    BlobCorruptionError: 500,
}
"""HTTP status per error class (the most specific class listed wins)."""


def status_of(error: PykoiiError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_plain(error: PykoiiError) -> dict[str, Any]:
    return {"error": error.name, "message": error.message}


class TxIngest:
    """``POST /tx`` (the ingest hot path), once for both ways a request reaches it: the lean path
    of the HTTP server's protocol (``server.GuardedProtocol``, no ASGI cycle) and ``LedgerApp``'s
    raw ASGI interface (the test client, a ``root_path``, pipelined requests). ``answer`` turns a
    whole body into ``(status, JSON)``: the receipt(s) once durable, or the error."""

    limit = MAX_TX_BODY

    def __init__(self, store: LedgerStore) -> None:
        self.store = store

    def too_large(self, declared: int | None = None) -> tuple[int, bytes]:
        """The 413 answer to a body over ``limit`` (``declared``: its ``Content-Length``)."""
        limit = self.limit
        if declared is not None:
            error = PayloadTooLargeError(
                f"body of {declared} bytes is over the limit of {limit}", limit=limit
            )
        else:
            error = PayloadTooLargeError(f"body is over the limit of {limit} bytes", limit=limit)
        return refusal(error)

    def answer_then(self, body: bytes, reply: Callable[[int, bytes], None]) -> None:
        """Call ``reply(status, JSON)`` with the answer to a whole body: at once for a refusal that
        needs no verification, else (from the event loop) once the store answered. No coroutine or
        task per request: the lean path of the HTTP protocol calls this for every ``POST /tx``."""
        try:
            envelopes, is_batch = decode_envelopes(body)
            future = self.store.submit_later(envelopes)
        except Exception as exc:
            reply(*_failed(exc))
            return
        future.add_done_callback(lambda done: reply(*_answered(done, is_batch)))

    async def answer(self, body: bytes) -> tuple[int, bytes]:
        """``answer_then``, awaited."""
        answered: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.answer_then(body, lambda status, text: answered.set_result((status, text)))
        return await answered

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``answer`` on the raw ASGI interface (the body read up to ``limit``)."""
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > self.limit:
            status, body = self.too_large(int(declared))
        else:
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left before sending its body: nothing to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                chunks.append(chunk)
                if size > self.limit or not message.get("more_body", False):
                    break
            status, body = self.too_large() if size > self.limit else await self.answer(b"".join(chunks))
        await send_json(send, status, body)


def _answered(done: asyncio.Future[list[Any]], is_batch: bool) -> tuple[int, bytes]:
    """``(status, JSON)`` of a settled ``submit_later``: the receipt (one envelope) or the list of
    receipts and errors (a batch), or the error that refused the request."""
    if done.cancelled():
        return refusal(LedgerUnavailableError("the ledger stopped before answering; retry"))
    try:
        results = done.result()
        if not is_batch:
            (outcome,) = results
            if isinstance(outcome, PykoiiError):
                raise outcome
            return 200, orjson.dumps(outcome, default=str)
        return 200, orjson.dumps(
            [error_plain(r) if isinstance(r, PykoiiError) else r for r in results], default=str
        )
    except Exception as exc:
        return _failed(exc)


def _failed(exc: Exception) -> tuple[int, bytes]:
    """The answer to ``POST /tx`` that raised ``exc``: its refusal, or (a bug) a logged JSON 500."""
    if isinstance(exc, PykoiiError):
        return refusal(exc)
    LOG.error("POST /tx failed", exc_info=exc)
    return 500, orjson.dumps({"error": "LedgerHTTPError", "message": f"POST /tx: {exc!r}"})


def refusal(error: PykoiiError) -> tuple[int, bytes]:
    """``(status, JSON)`` of an error answer."""
    return status_of(error), orjson.dumps(error_plain(error), default=str)


async def send_json(send: Send, status: int, body: bytes) -> None:
    """A whole JSON response (``body`` already encoded) on the raw ASGI interface."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def decode_envelopes(body: bytes) -> tuple[list[Any], bool]:
    """``(envelopes, is_batch)`` from a ``POST /tx`` body: one envelope object or a JSON list."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedTransactionError(f"body is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        return [data], False
    if isinstance(data, list) and 0 < len(data) <= MAX_BATCH:
        return data, True
    raise MalformedTransactionError(
        f"body must be one envelope object or a list of 1 to {MAX_BATCH} envelopes, got {type(data).__name__}"
        + (f" of {len(data)}" if isinstance(data, list) else "")
    )
