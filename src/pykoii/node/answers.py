"""What the node answers a task child's requests (``protocol.py``): ledger reads and node services.

Ledger reads are read from the ledger when task code asks, once per tick each
(``TaskRuntime.reads``, cleared at every tick): ``task_state``, ``stakes`` and ``node_urls`` read the
task's state (whole, or with only the maps they need), ``submissions`` and ``audit_triggers`` the
round's pages. The node's own reads never include them: what task code asks for is its choice.
Node services: ``node.sign`` signs ``keys.PAYLOAD_DOMAIN`` + the payload
with the staking key (the child never holds a key, and the prefix means no transaction can be
signed this way); ``node.blob_put`` / ``node.blob_get`` go to the ledger's blob store (its limits,
CIDs checked); ``node.slot_time`` is the ledger's slot length in ms.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import SandboxError
from ..keys import sign_payload
from ..service.blobs import check_size

if TYPE_CHECKING:
    from .runtime import Node


def child_answers(node: Node, task_id: str) -> Callable[[str, list[Any]], Awaitable[Any]]:
    """The function that answers task ``task_id``'s child on ``node``."""

    async def answer(method: str, params: list[Any]) -> Any:
        if method.startswith("node."):
            return await node_service(node, method.removeprefix("node."), params)
        name = method.removeprefix("ledger.")
        if name not in LEDGER_READS:
            raise SandboxError(f"unknown ledger read {method!r}; accepted: {', '.join(LEDGER_READS)}")
        runtime = node.tasks.get(task_id)
        cache: dict[tuple[Any, ...], Any] = runtime.reads if runtime is not None else {}
        key = (name, *(str(p) for p in params[:1]))
        if key not in cache:
            cache[key] = await ledger_read(node, task_id, name, params)
        return cache[key]

    return answer


LEDGER_READS = ("task_state", "submissions", "audit_triggers", "stakes", "node_urls")
"""What a task child may ask of the ledger (``sdk.LedgerReader``)."""


async def ledger_read(node: Node, task_id: str, name: str, params: list[Any]) -> Any:
    """One ``LedgerReader`` answer, read from the ledger now."""
    if name in ("submissions", "audit_triggers"):
        number = int(params[0])
        if number < 0:
            return {}
        pages = await node.ledger.round_pages(task_id, number)
        return pages["submissions" if name == "submissions" else "submissions_audit_trigger"]
    if name == "stakes":
        return (await asyncio.to_thread(node.ledger.client.task, task_id, is_stake_list_required=True))[
            "stake_list"
        ]
    if name == "node_urls":
        return (await asyncio.to_thread(node.ledger.client.task, task_id))["ip_address_list"]
    return await node.ledger.whole_task(task_id)


async def node_service(node: Node, name: str, params: list[Any]) -> Any:
    if name == "sign":
        return sign_payload(node.staking, base64.b64decode(str(params[0]), validate=True))
    if name == "blob_put":
        data = base64.b64decode(str(params[0]), validate=True)
        check_size(data)
        return await node.ledger.put_blob(data)
    if name == "blob_get":
        return base64.b64encode(await node.ledger.blob(str(params[0]))).decode()
    if name == "slot_time":
        if node.slot < 0:
            await node.ledger.slot()
        return float(node.ledger.slot_ms)
    raise SandboxError(f"unknown node service node.{name}; accepted: sign, blob_put, blob_get, slot_time")


__all__ = ["child_answers", "node_service"]
