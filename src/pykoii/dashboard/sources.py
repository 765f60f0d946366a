"""Where the explorer reads the ledger from: the ``LedgerSource`` interface.

``ClientSource`` reads any ledger over HTTP (each read in a worker thread so the synchronous client
never blocks the event loop); the ledger service passes its own ``pykoii.service.reads.StoreReads``,
which answers the same reads from memory. Both shape their answers as the HTTP API does. The
explorer knows nothing of the service's store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import orjson

from ..client import LedgerClient

Event = tuple[str, dict[str, Any]]


class LedgerSource(Protocol):
    """The reads the explorer needs."""

    async def slot(self) -> dict[str, Any]: ...
    async def tasks(self) -> list[dict[str, Any]]: ...
    async def round(self, task_id: str, round_number: int, after: str = "") -> dict[str, Any]: ...
    async def distribution(
        self, task_id: str, round_number: int, submitter: str, after: str = ""
    ) -> dict[str, Any]: ...
    async def stakers(self, task_id: str, after: str = "") -> dict[str, Any]: ...
    async def account(self, pubkey: str) -> dict[str, Any]: ...
    async def log(self, after: int, limit: int) -> list[dict[str, Any]]: ...
    async def transaction(self, tx_id: str) -> dict[str, Any]: ...
    async def blob(self, cid: str) -> bytes: ...
    def events(self) -> AsyncIterator[Event]: ...


class ClientSource:
    """Reads over a ``LedgerClient``."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    async def slot(self) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self.client.slot))

    async def tasks(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.client.tasks)

    async def round(self, task_id: str, round_number: int, after: str = "") -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.client.round(task_id, round_number, after=after))

    async def distribution(
        self, task_id: str, round_number: int, submitter: str, after: str = ""
    ) -> dict[str, Any]:
        return await asyncio.to_thread(
            lambda: self.client.distribution(task_id, round_number, submitter=submitter, after=after)
        )

    async def stakers(self, task_id: str, after: str = "") -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.client.stakers(task_id, after=after))

    async def account(self, pubkey: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.client.account, pubkey)

    async def log(self, after: int, limit: int) -> list[dict[str, Any]]:
        return (await asyncio.to_thread(lambda: self.client.log(after, limit=limit)))["entries"]

    async def transaction(self, tx_id: str) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self.client.transaction, tx_id))

    async def blob(self, cid: str) -> bytes:
        return await asyncio.to_thread(self.client.get_blob, cid)

    async def events(self) -> AsyncIterator[Event]:
        """The ledger's ``GET /events`` stream, read with an async client on the same base URL."""
        async with (
            httpx.AsyncClient(base_url=self.client.base_url, timeout=None) as http,
            http.stream("GET", "/events") as response,
        ):
            kind, data = "message", ""
            async for line in response.aiter_lines():
                if line == "":
                    if data:
                        yield kind, orjson.loads(data)
                    kind, data = "message", ""
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()


def as_source(client_or_source: Any) -> LedgerSource:
    """A ``LedgerSource`` for a ``LedgerClient``, or the given source itself."""
    if isinstance(client_or_source, LedgerClient):
        return ClientSource(client_or_source)
    if all(hasattr(client_or_source, name) for name in ("slot", "tasks", "stakers", "log", "events")):
        source: LedgerSource = client_or_source
        return source
    raise TypeError(f"create_explorer needs a LedgerClient or a LedgerSource, got {type(client_or_source)!r}")


async def sse(events: AsyncIterator[Event], keepalive: float = 15.0) -> AsyncIterator[bytes]:
    """Server-sent-event bytes for ``(kind, data)`` pairs, with keep-alive comments."""
    iterator = events.__aiter__()
    yield b": live\n\n"
    pending: asyncio.Task[Event] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=keepalive)
            if not done:
                yield b": keep-alive\n\n"
                continue
            try:
                kind, data = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(data, default=str))
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(BaseException):
                await aclose()
