"""The OpenAPI 3.1 document of the ledger API (``GET /openapi.json``).

Every parameter is a ``Param`` defined here once: the handlers in ``app.py`` read it with its bounds
and default, and the document states the same schema; transaction objects come from
``ledger.transactions.transaction_schemas`` (the decoder's own bounds). A schema-driven fuzzer
(schemathesis, ``tests/service/test_openapi_fuzz.py``) checks the two against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ledger.bounds import MAX_INTEGER
from ..ledger.transactions import transaction_schemas
from .views import MAX_PAGE, ROUND_PAGE, TASK_FLAGS

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"

BASE58_KEY = "^[1-9A-HJ-NP-Za-km-z]{32,44}$"
"""A base58 public key, as ``ledger.codec.is_address`` accepts it (it also checks the 32 bytes)."""


@dataclass(frozen=True, slots=True)
class Param:
    """One query or path parameter: the handlers read it (``app.int_param`` etc.) and the OpenAPI
    document describes it, from this one definition."""

    name: str
    where: str
    schema: dict[str, Any]
    text: str

    @property
    def default(self) -> Any:
        return self.schema.get("default")

    @property
    def low(self) -> int:
        return int(self.schema["minimum"])

    @property
    def high(self) -> int:
        return int(self.schema["maximum"])


def _int(name: str, default: int, low: int, high: int, text: str) -> Param:
    return Param(
        name, "query", {"type": "integer", "minimum": low, "maximum": high, "default": default}, text
    )


def _flag(name: str, text: str) -> Param:
    return Param(name, "query", {"type": "boolean", "default": False}, text)


def _key(name: str, text: str) -> Param:
    return Param(name, "query", {"type": "string", "pattern": BASE58_KEY}, text)


LOG_AFTER = _int("after", 0, 0, 2**62, "return entries with seq > after")
LOG_LIMIT = _int("limit", 1000, 1, 5000, "at most this many")
LOG_WAIT = _int("wait", 0, 0, 30, "seconds to wait for a new entry when there is none")
EVENTS_LIMIT = _int("limit", 0, 0, 2**31, "close the stream after this many events (0: never)")
EVENTS_TYPES = Param(
    "types",
    "query",
    {"type": "string", "pattern": "^[a-z,]*$", "maxLength": 100},
    "comma-separated kinds to keep: slot, phase, tx, payout (default all)",
)
STATE_ROOT = _flag("state_root", "also compute the state root")
BLOB_LOCAL = _flag(
    "local",
    "answer from this ledger's own disk only (404 if it does not hold the blob), without asking its "
    "primary or the other validators",
)
PAGE_AFTER = _key("after", "return keys above this base58 key (default: from the first)")
PAGE_KEY = _key("key", "only this key (a base58 public key)")
SUBMITTER = _key("submitter", "whose list (default: the list the round was paid from)")
PAGE_LIMIT = _int("limit", ROUND_PAGE, 1, MAX_PAGE, "at most this many")
TX_ID = Param("tx_id", "path", {"type": "string"}, "hex SHA-256 of the canonical tx (anything else: 404)")
TASK_ID = Param("task_id", "path", {"type": "string"}, "task id (an unknown one: 404)")
ROUND = Param("round", "path", {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER}, "round number")
PUBKEY = Param("pubkey", "path", {"type": "string", "pattern": BASE58_KEY}, "base58 public key")
NODE_KEY = Param("key", "path", {"type": "string", "pattern": BASE58_KEY}, "the node's staking key (base58)")
CID = Param(
    "cid", "path", {"type": "string", "pattern": "^b[a-z2-7]{58}$"}, "CIDv1 raw sha2-256, base32 'b...'"
)


def _op(
    summary: str,
    *,
    params: tuple[Param, ...] = (),
    body: dict[str, Any] | None = None,
    ok: str = "200",
    content: str = _JSON,
    result: dict[str, Any] | None = None,
    errors: tuple[str, ...] = ("400",),
    body_required: bool = True,
) -> dict[str, Any]:
    """An operation: its parameters, body, answer and errors. Every error is an ``Error`` object;
    ``default`` covers the rest (a 503 while the ledger rebuilds its state, a 500)."""
    success: dict[str, Any] = {"description": "success", "content": {content: {"schema": result or {}}}}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {ok: success}
        | {
            code: {"description": "error", "content": {_JSON: {"schema": _ERROR}}}
            for code in (*errors, "default")
        },
    }
    if params:
        op["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.where == "path",
                "schema": p.schema,
                "description": p.text,
            }
            for p in params
        ]
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": body}
    return op


FLAGS = tuple(
    _flag(name, f"include the maps gated by {name} (default false: they come back as {{}})")
    for name in TASK_FLAGS
)

MAX_BATCH = 5000
"""The most envelopes in one ``POST /tx`` batch."""

_ENVELOPE = {
    "type": "object",
    "required": ["tx", "signature"],
    "properties": {
        "tx": {"type": "object", "description": "one of the tx_* schemas (components)"},
        "signature": {"type": "string", "description": "base58 ed25519 signature of the canonical tx"},
    },
}
_RECEIPT = {
    "type": "object",
    "required": ["tx_id", "slot", "seq", "events"],
    "properties": {
        "tx_id": {"type": "string"},
        "slot": {"type": "integer"},
        "seq": {"type": "integer"},
        "events": {"type": "array", "items": {"type": "object"}},
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/tx": {
        "post": _op(
            "Submit one signed envelope {tx, signature} or a JSON list of them. Answers once durable. "
            "The same transaction sent again returns its first receipt. A batch answers a list of "
            "receipts and {error, message} objects, in order.",
            body={
                _JSON: {
                    "schema": {
                        "oneOf": [
                            _ENVELOPE,
                            {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": MAX_BATCH,
                                "description": "a batch: each item is answered in place, a receipt or "
                                "{error, message} (also an item that is not an envelope)",
                                "items": {},
                            },
                        ]
                    }
                }
            },
            errors=("400", "403", "413", "503", "507"),
        )
    },
    "/tx/{tx_id}": {
        "get": _op(
            "The receipt of an accepted transaction.",
            params=(TX_ID,),
            result=_RECEIPT,
            errors=("404",),
        )
    },
    "/slot": {"get": _op("The current slot, the slot length and the newest log sequence number.", errors=())},
    "/tasks": {
        "get": _op(
            "Every task, in short form: its settings, counts (stakers) and, per round it still holds, "
            "how many submissions, audit triggers and lists, and the payout record.",
            errors=(),
        )
    },
    "/tasks/{task_id}": {
        "get": _op(
            "A task with Koii's TaskState field names; partial fetch as Koii's TaskStateOptions.",
            params=(TASK_ID, *FLAGS),
            errors=("400", "404"),
        )
    },
    "/tasks/{task_id}/rounds/{round}": {
        "get": _op(
            "One round: windows, a page of its submitters (proofs, audit triggers, assigned auditors, "
            "default-rule amounts, sorted by key), selected distribution submitters, each list's header "
            "(root, chunks, totals) and the payout record; next_after is the cursor of the next page.",
            params=(TASK_ID, ROUND, PAGE_AFTER, PAGE_LIMIT, PAGE_KEY),
            errors=("400", "404"),
        )
    },
    "/tasks/{task_id}/rounds/{round}/distribution": {
        "get": _op(
            "A page of one distribution list's entries {key, reward, slash} sorted by key (after payout "
            "the slash taken), with the list's header; next_after is the cursor of the next page.",
            params=(TASK_ID, ROUND, SUBMITTER, PAGE_AFTER, PAGE_LIMIT, PAGE_KEY),
            errors=("400", "404"),
        )
    },
    "/tasks/{task_id}/stakers": {
        "get": _op(
            "A page of a task's accounts (stakers, and keys with a claimable balance left) sorted by key: "
            "stake, available balance, last round with an accepted proof, node URL; the counts, and "
            "next_after, the cursor of the next page.",
            params=(TASK_ID, PAGE_AFTER, PAGE_LIMIT, PAGE_KEY),
            errors=("400", "404"),
        )
    },
    "/tasks/{task_id}/nodes/{key}": {
        "get": _op(
            "What one node reads of a task each tick, bounded by what it needs (not by the task's size): "
            "the task's settings and counts, the key's own entry of each per-key map, and per round the "
            "ledger holds the key's proof and those it audits (with their audit triggers), the round's "
            "lists, and key_rounds: its sample candidates, the accused proofs on whose panel it sits, and "
            "each distribution attempt's submitter and whether its list passed.",
            params=(TASK_ID, NODE_KEY),
            errors=("400", "404"),
        )
    },
    "/accounts/{pubkey}": {
        "get": _op(
            "A wallet's balance and its stake and available balance per task.",
            params=(PUBKEY,),
        )
    },
    "/log": {
        "get": _op(
            "Log entries after a sequence number, oldest first (for replicas).",
            params=(LOG_AFTER, LOG_LIMIT, LOG_WAIT),
        )
    },
    "/genesis": {"get": _op("The genesis document (params, slot_ms, anchor_ms) and its hash.", errors=())},
    "/events": {
        "get": _op(
            "Server-sent events: slot, phase, tx and payout.",
            content="text/event-stream",
            params=(EVENTS_TYPES, EVENTS_LIMIT),
        )
    },
    "/blobs": {
        "put": _op(
            "Store a blob; answers its CIDv1 (raw, sha2-256, base32).",
            body={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            body_required=False,  # no body: the empty blob
            ok="201",
            result={
                "type": "object",
                "required": ["cid", "size"],
                "properties": {"cid": {"type": "string"}, "size": {"type": "integer"}},
            },
            errors=("403", "413", "507"),
        )
    },
    "/blobs/{cid}": {
        "get": _op(
            "A blob's bytes, verified against its CID; a replica or validator that does not hold it "
            "fetches it from its primary or the other validators (CID-checked) and keeps it.",
            content="application/octet-stream",
            params=(CID, BLOB_LOCAL),
            errors=("400", "404", "500", "503", "507"),
        )
    },
    "/health": {
        "get": _op(
            "Liveness, role, newest seq and slot; ?state_root=true adds the state root.",
            params=(STATE_ROOT,),
            errors=("400", "503"),
        )
    },
    "/metrics": {"get": _op("Counters in Prometheus text format.", content="text/plain", errors=())},
    "/openapi.json": {"get": _op("This document.", errors=())},
    "/explorer": {
        "get": _op("The ledger explorer: HTML pages for people (pykoii.dashboard).", content="text/html")
    },
}


def openapi_document(route_paths: list[str]) -> dict[str, Any]:
    """The OpenAPI document; ``route_paths`` (the app's routes) must all be described."""
    missing = [path for path in route_paths if path not in PATHS]
    assert not missing, f"routes without OpenAPI description: {missing}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pykoii ledger",
            "version": "1",
            "description": "The ledger service of pykoii: signed transactions in, receipts out.",
        },
        "paths": PATHS,
        "components": {
            "schemas": {
                # One schema per instruction's transaction object, from ledger.bounds.FIELDS: the
                # same bounds the decoder enforces.
                **{f"tx_{kind}": schema for kind, schema in transaction_schemas().items()},
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "description": "a class name of pykoii.errors"},
                        "message": {"type": "string"},
                    },
                },
            }
        },
    }
