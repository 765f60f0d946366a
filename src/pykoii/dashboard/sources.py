"""Where the explorer reads the ledger from: a ``LedgerClient`` (any ledger, over HTTP) or the
service's own ``LedgerStore`` (when the ledger service mounts the explorer in its app).

Both give the same async reads, shaped as the HTTP API answers them, and a live event feed. With a
store the reads go straight to memory (no HTTP request to itself); with a client each read runs in
a worker thread so the synchronous client never blocks the event loop.
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
    async def task(self, task_id: str) -> dict[str, Any]: ...
    async def round(self, task_id: str, round_number: int, after: str = "") -> dict[str, Any]: ...
    async def distribution(
        self, task_id: str, round_number: int, submitter: str, after: str = ""
    ) -> dict[str, Any]: ...
    async def account(self, pubkey: str) -> dict[str, Any]: ...
    async def log(self, after: int, limit: int) -> list[dict[str, Any]]: ...
    async def transaction(self, tx_id: str) -> dict[str, Any]: ...
    def events(self) -> AsyncIterator[Event]: ...


class ClientSource:
    """Reads over a ``LedgerClient``."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client

    async def slot(self) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self.client.slot))

    async def tasks(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.client.tasks)

    async def task(self, task_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(
            lambda: self.client.task(
                task_id,
                is_submission_required=True,
                is_distribution_required=True,
                is_available_balances_required=True,
                is_stake_list_required=True,
            )
        )

    async def round(self, task_id: str, round_number: int, after: str = "") -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.client.round(task_id, round_number, after=after))

    async def distribution(
        self, task_id: str, round_number: int, submitter: str, after: str = ""
    ) -> dict[str, Any]:
        return await asyncio.to_thread(
            lambda: self.client.distribution(task_id, round_number, submitter=submitter, after=after)
        )

    async def account(self, pubkey: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.client.account, pubkey)

    async def log(self, after: int, limit: int) -> list[dict[str, Any]]:
        return (await asyncio.to_thread(lambda: self.client.log(after, limit=limit)))["entries"]

    async def transaction(self, tx_id: str) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self.client.transaction, tx_id))

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


class StoreSource:
    """Reads straight from the ledger service's store (same answers as its HTTP routes)."""

    def __init__(self, store: Any) -> None:
        from ..service import views  # only when the service itself mounts the explorer

        self.store = store
        self.views = views

    async def slot(self) -> dict[str, Any]:
        return {"slot": self.store.slot(), "slot_ms": self.store.genesis.slot_ms, "seq": self.store.seq}

    async def tasks(self) -> list[dict[str, Any]]:
        slot = self.store.slot()
        return [self.views.task_summary(task, slot) for task in self.store.state.tasks.values()]

    async def task(self, task_id: str) -> dict[str, Any]:
        task = self.views.get_task(self.store.state, task_id)
        flags = dict.fromkeys(self.views.TASK_FLAGS, True)
        plain: dict[str, Any] = orjson.loads(
            orjson.dumps(self.views.task_view(task, self.store.slot(), flags), default=str)
        )
        return plain

    async def round(self, task_id: str, round_number: int, after: str = "") -> dict[str, Any]:
        task = self.views.get_task(self.store.state, task_id)
        view = self.views.round_view(task, round_number, self.store.slot(), after)
        plain: dict[str, Any] = orjson.loads(orjson.dumps(view, default=str))
        return plain

    async def distribution(
        self, task_id: str, round_number: int, submitter: str, after: str = ""
    ) -> dict[str, Any]:
        task = self.views.get_task(self.store.state, task_id)
        view = self.views.distribution_view(task, round_number, submitter, after)
        plain: dict[str, Any] = orjson.loads(orjson.dumps(view, default=str))
        return plain

    async def account(self, pubkey: str) -> dict[str, Any]:
        return dict(self.views.account_view(self.store.state, pubkey))

    async def log(self, after: int, limit: int) -> list[dict[str, Any]]:
        return list(self.store.log_page(after, limit))

    async def transaction(self, tx_id: str) -> dict[str, Any]:
        return dict(self.store.receipt(tx_id))

    async def events(self) -> AsyncIterator[Event]:
        hub = self.store.events
        subscription = hub.subscribe()
        try:
            while True:
                batch = await hub.wait(subscription)
                if batch is None:
                    return
                for _, kind, data, _ in batch:
                    yield kind, data
        finally:
            hub.unsubscribe(subscription)


def as_source(client_or_store: Any) -> LedgerSource:
    """A ``LedgerSource`` for a ``LedgerClient``, a ``LedgerStore`` or a ready source."""
    if isinstance(client_or_store, LedgerClient):
        return ClientSource(client_or_store)
    if hasattr(client_or_store, "log_page") and hasattr(client_or_store, "state"):
        return StoreSource(client_or_store)
    if hasattr(client_or_store, "tasks") and hasattr(client_or_store, "events"):
        source: LedgerSource = client_or_store
        return source
    raise TypeError(f"create_explorer needs a LedgerClient or a LedgerStore, got {type(client_or_store)!r}")


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
