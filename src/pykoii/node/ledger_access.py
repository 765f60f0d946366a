"""The ledger calls the node makes, over ``pykoii.client.LedgerClient``, made awaitable.

The client is synchronous; each call runs in a worker thread so a slow ledger never blocks the
node's event loop (its HTTP server, the other tasks). Tests pass ``transport`` to reach an
in-process ledger app.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..client import LedgerClient


class NodeLedger:
    """Slot, task state, transactions, blobs and balances, as the node needs them."""

    def __init__(self, base_url: str, *, client: LedgerClient | None = None, transport: Any = None) -> None:
        self.base_url = base_url
        self.client = client or LedgerClient(base_url, transport=transport, retries=2)
        self.slot_ms = 400
        """The ledger's slot length in ms, as of the last ``slot()`` read."""

    async def slot(self) -> int:
        answer = await asyncio.to_thread(self.client.slot)
        self.slot_ms = int(answer.get("slot_ms", self.slot_ms)) or self.slot_ms
        return int(answer["slot"])

    async def task(self, task_id: str) -> dict[str, Any]:
        """The task's whole ``TaskState`` (every partial-fetch flag set)."""
        return await asyncio.to_thread(
            lambda: self.client.task(
                task_id,
                is_submission_required=True,
                is_distribution_required=True,
                is_available_balances_required=True,
                is_stake_list_required=True,
            )
        )

    async def send(self, envelope: dict[str, Any]) -> dict[str, Any]:
        return dict(await asyncio.to_thread(self.client.send, envelope))

    async def put_blob(self, data: bytes) -> str:
        return await asyncio.to_thread(self.client.put_blob, data)

    async def blob(self, cid: str) -> bytes:
        return await asyncio.to_thread(self.client.get_blob, cid)

    async def balance(self, public_key: str) -> int:
        account = await asyncio.to_thread(self.client.account, public_key)
        return int(account.get("balance", 0))

    def close(self) -> None:
        self.client.close()
