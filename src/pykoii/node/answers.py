"""What the node answers a task child's requests (``protocol.py``): ledger reads and node services.

Ledger reads come from the task state the node last read (``TaskRuntime.state``), so a phase sees
what the node decided on. Node services: ``node.sign`` signs ``keys.PAYLOAD_DOMAIN`` + the payload
with the staking key (the child never holds a key, and the prefix means no transaction can be
signed this way); ``node.blob_put`` / ``node.blob_get`` go to the ledger's blob store (its limits,
CIDs checked); ``node.slot_time`` is the ledger's slot length in ms.
"""

from __future__ import annotations

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
        runtime = node.tasks.get(task_id)
        state = runtime.state if runtime and runtime.state else await node.ledger.task(task_id)
        name = method.removeprefix("ledger.")
        if name == "task_state":
            return state
        if name == "submissions":
            return state.get("submissions", {}).get(str(params[0]), {})
        if name == "audit_triggers":
            return state.get("submissions_audit_trigger", {}).get(str(params[0]), {})
        if name == "stakes":
            return state.get("stake_list", {})
        if name == "node_urls":
            return state.get("ip_address_list", {})
        raise SandboxError(f"unknown ledger read {method!r}")

    return answer


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
