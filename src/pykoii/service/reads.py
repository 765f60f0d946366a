"""The ledger service's answer to the explorer's ``LedgerSource`` interface
(``pykoii.dashboard.sources``): the same reads as the HTTP routes, straight from the store's
memory, so the explorer mounted in the service never sends an HTTP request to itself and never
touches the store itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..errors import NotFoundError
from . import views

Event = tuple[str, dict[str, Any]]


class StoreReads:
    """Reads straight from the ledger service's store (same answers as its HTTP routes)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.views = views

    async def slot(self) -> dict[str, Any]:
        return {"slot": self.store.slot(), "slot_ms": self.store.genesis.slot_ms, "seq": self.store.seq}

    async def tasks(self) -> list[dict[str, Any]]:
        slot = self.store.slot()
        return [self.views.task_summary(task, slot) for task in self.store.state.tasks.values()]

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

    async def stakers(self, task_id: str, after: str = "") -> dict[str, Any]:
        task = self.views.get_task(self.store.state, task_id)
        plain: dict[str, Any] = orjson.loads(orjson.dumps(self.views.stakers_view(task, after), default=str))
        return plain

    async def account(self, pubkey: str) -> dict[str, Any]:
        return dict(self.views.account_view(self.store.state, pubkey))

    async def log(self, after: int, limit: int) -> list[dict[str, Any]]:
        return list(self.store.log_page(after, limit))

    async def transaction(self, tx_id: str) -> dict[str, Any]:
        return dict(self.store.receipt(tx_id))

    async def blob(self, cid: str) -> bytes:
        if self.store.blobs is None:
            raise NotFoundError("this ledger stores no blobs")
        return bytes(await asyncio.to_thread(self.store.blobs.get, cid))

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
