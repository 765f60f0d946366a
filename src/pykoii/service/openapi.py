"""The OpenAPI 3.1 document of the ledger API, written by hand (``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from ..ledger.transactions import transaction_schemas

_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"


def _op(
    summary: str,
    *,
    params: tuple[tuple[str, str, str, str], ...] = (),
    body: str | None = None,
    ok: str = "200",
    content: str = _JSON,
    errors: tuple[str, ...] = ("400",),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {ok: {"description": "success", "content": {content: {}}}}
        | {code: {"description": "error", "content": {_JSON: {"schema": _ERROR}}} for code in errors},
    }
    if params:
        op["parameters"] = [
            {
                "name": name,
                "in": where,
                "required": where == "path",
                "schema": {"type": kind},
                "description": text,
            }
            for name, where, kind, text in params
        ]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {body: {}}}
    return op


FLAGS = tuple(
    (name, "query", "boolean", f"include the maps gated by {name} (default false: they come back as {{}})")
    for name in (
        "is_submission_required",
        "is_distribution_required",
        "is_available_balances_required",
        "is_stake_list_required",
    )
)

PAGE = (
    ("after", "query", "string", "return keys above this base58 key (default: from the first)"),
    ("limit", "query", "integer", "at most this many, 1-5000 (default 1000)"),
)

PATHS: dict[str, dict[str, Any]] = {
    "/tx": {
        "post": _op(
            "Submit one signed envelope {tx, signature} or a JSON list of them. Answers once durable. "
            "The same transaction sent again returns its first receipt. A batch answers a list of "
            "receipts and {error, message} objects, in order.",
            body=_JSON,
            errors=("400", "403", "413", "503"),
        )
    },
    "/tx/{tx_id}": {
        "get": _op(
            "The receipt of an accepted transaction.",
            params=(("tx_id", "path", "string", "hex SHA-256 of the canonical tx"),),
            errors=("404",),
        )
    },
    "/slot": {"get": _op("The current slot, the slot length and the newest log sequence number.", errors=())},
    "/tasks": {"get": _op("Every task, in short form.", errors=())},
    "/tasks/{task_id}": {
        "get": _op(
            "A task with Koii's TaskState field names; partial fetch as Koii's TaskStateOptions.",
            params=(("task_id", "path", "string", "task id"), *FLAGS),
            errors=("400", "404"),
        )
    },
    "/tasks/{task_id}/rounds/{round}": {
        "get": _op(
            "One round: windows, a page of its submitters (proofs, audit triggers, assigned auditors, "
            "default-rule amounts, sorted by key), selected distribution submitters, each list's header "
            "(root, chunks, totals) and the payout record; next_after is the cursor of the next page.",
            params=(
                ("task_id", "path", "string", "task id"),
                ("round", "path", "integer", "round number"),
                *PAGE,
                ("key", "query", "string", "only this submitter (a base58 public key)"),
            ),
            errors=("400", "404"),
        )
    },
    "/tasks/{task_id}/rounds/{round}/distribution": {
        "get": _op(
            "A page of one distribution list's entries {key, reward, slash} sorted by key (after payout "
            "the slash taken), with the list's header; next_after is the cursor of the next page.",
            params=(
                ("task_id", "path", "string", "task id"),
                ("round", "path", "integer", "round number"),
                ("submitter", "query", "string", "whose list (default: the list the round was paid from)"),
                *PAGE,
                ("key", "query", "string", "only this key's entry (a base58 public key)"),
            ),
            errors=("400", "404"),
        )
    },
    "/accounts/{pubkey}": {
        "get": _op(
            "A wallet's balance and its stake and available balance per task.",
            params=(("pubkey", "path", "string", "base58 public key"),),
        )
    },
    "/log": {
        "get": _op(
            "Log entries after a sequence number, oldest first (for replicas).",
            params=(
                ("after", "query", "integer", "return entries with seq > after (default 0)"),
                ("limit", "query", "integer", "at most this many, 1-5000 (default 1000)"),
                ("wait", "query", "integer", "seconds to wait for a new entry when there is none (0-30)"),
            ),
        )
    },
    "/genesis": {"get": _op("The genesis document (params, slot_ms, anchor_ms) and its hash.", errors=())},
    "/events": {
        "get": _op(
            "Server-sent events: slot, phase, tx and payout.",
            content="text/event-stream",
            params=(
                ("types", "query", "string", "comma-separated kinds to keep (default all)"),
                ("limit", "query", "integer", "close the stream after this many events (0: never)"),
            ),
        )
    },
    "/blobs": {
        "put": _op(
            "Store a blob; answers its CIDv1 (raw, sha2-256, base32).",
            body="application/octet-stream",
            ok="201",
            errors=("403", "413"),
        )
    },
    "/blobs/{cid}": {
        "get": _op(
            "A blob's bytes, verified against its CID.",
            content="application/octet-stream",
            params=(("cid", "path", "string", "CIDv1 'b...'"),),
            errors=("400", "404", "500"),
        )
    },
    "/health": {
        "get": _op(
            "Liveness, role, newest seq and slot; ?state_root=true adds the state root.",
            params=(("state_root", "query", "boolean", "also compute the state root"),),
            errors=("503",),
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
