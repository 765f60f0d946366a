"""A task's metadata blob (its CID is the task's ``task_metadata``; ``pykoii task deploy`` writes
it): author, description, links, tags, environment. Read through whatever fetches blobs (the
explorer's ``LedgerSource.blob``, the node's ledger), cached per CID (content-addressed: a CID's
bytes never change), and cleaned for the pages: strings only, links only ``http(s)://``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ..errors import PykoiiError

TEXT_FIELDS = ("author", "description", "environment", "task_audit_program", "migrationDescription")
LINK_FIELDS = ("repositoryUrl", "infoUrl", "imageUrl", "koiiOceanUrl")
MAX_BYTES = 64 * 1024
_cache: dict[str, dict[str, Any]] = {}


def clean(raw: Any) -> dict[str, Any]:
    """The fields the pages show, from a decoded metadata blob."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Any] = {
        k: str(raw[k])[:2000] for k in TEXT_FIELDS if isinstance(raw.get(k), str) and raw[k]
    }
    for name in LINK_FIELDS:
        value = raw.get(name)
        if isinstance(value, str) and value.startswith(("https://", "http://")):
            out[name] = value[:500]
    tags = raw.get("tags")
    if isinstance(tags, list):
        out["tags"] = [str(t)[:40] for t in tags[:20] if isinstance(t, str | int)]
    return out


async def task_metadata(fetch: Callable[[str], Awaitable[bytes]], cid: str) -> dict[str, Any]:
    """The task's metadata, ``{}`` when it has none or its blob cannot be read (the page says so)."""
    if not cid:
        return {}
    if cid not in _cache:
        try:
            data = await fetch(cid)
            _cache[cid] = clean(orjson.loads(data[:MAX_BYTES])) if len(data) <= MAX_BYTES else {}
        except (PykoiiError, orjson.JSONDecodeError):
            return {}
    return _cache[cid]
