"""The JSON-lines protocol between a node and a task's child process.

One JSON object per line, UTF-8, on the child's stdin (node → child) and a private copy of its
stdout (child → node); the child points its own fd 1 at stderr, so a stray ``print`` in task code
lands in the task log instead of the protocol. Every message has a ``kind``:

node → child

- ``init``: ``{task_id, code, public_key, variables, listen_fd, sandbox}``, sent once, first.
- ``run``: ``{id, phase, context: {round, slot}, args}``: run one phase (``setup``, ``task``,
  ``submission``, ``audit``, ``distribution``).
- ``reply``: ``{id, ok, value | error}``: the answer to a child's ``request``.
- ``stop``: finish and exit.

child → node

- ``ready``: ``{ok, isolation | error_type, error}``: the sandbox is up and the task code imported.
- ``result``: ``{id, ok, value | error_type, error, traceback}``: the outcome of a ``run``.
- ``request``: ``{id, method, params}``: something the node answers: a ledger read
  (``ledger.task_state``, ``ledger.submissions``, ``ledger.audit_triggers``, ``ledger.stakes``,
  ``ledger.node_urls``) or a node service (``node.sign`` [base64 payload] → base58 signature of
  ``keys.PAYLOAD_DOMAIN`` + payload by the staking key; ``node.blob_put`` [base64 bytes] → CID;
  ``node.blob_get`` [CID] → base64 bytes; ``node.slot_time`` → the ledger's slot length in ms).
- ``log``: ``{level, message}``: a line for the task's log.

>>> decode(encode({"kind": "run", "id": 1, "phase": "task"}))["phase"]
'task'
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import SandboxError

PHASES = ("setup", "task", "submission", "audit", "distribution")
"""Phases a ``run`` message may name, as the methods of ``pykoii.Task``."""

LEDGER_METHODS = ("task_state", "submissions", "audit_triggers", "stakes", "node_urls")
"""``LedgerReader`` methods a child may ask the node for, sent as ``ledger.<name>``."""

NODE_METHODS = ("sign", "blob_put", "blob_get", "slot_time")
"""Node services a child may ask for, sent as ``node.<name>``."""

MAX_LINE = 16 * 1024 * 1024
"""The longest line either side accepts (bytes)."""


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line: compact JSON and a newline."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one protocol line, or raise ``SandboxError`` naming what arrived."""
    try:
        message = json.loads(line)
    except ValueError:
        raise SandboxError(
            f"task child sent a line that is not JSON: {line[:200]!r}", line=line[:200]
        ) from None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise SandboxError(f"task child sent a message without a kind: {line[:200]!r}", line=line[:200])
    return message
