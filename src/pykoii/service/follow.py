"""A replica: stream a primary's log, check it, apply it, and serve the read routes.

``follow`` long-polls ``GET /log?after=<our seq>&wait=...`` and hands each page to
``LedgerStore.append_replicated``, which checks the hash chain and every signature, applies each
entry at its recorded slot and appends it to the replica's own durable log. The replica's store is
read-only: ``POST /tx`` and ``PUT /blobs`` are refused with ``ReadOnlyReplicaError``.
"""

from __future__ import annotations

import asyncio

from ..client import LedgerClient
from ..errors import LedgerUnavailableError, LogCorruptionError
from .store import Genesis, LedgerStore


def primary_genesis(client: LedgerClient) -> Genesis:
    """The primary's genesis, checked against the hash it announces."""
    answer = client.genesis()
    genesis = Genesis.from_plain(answer["genesis"])
    if genesis.hash != answer["hash"]:
        raise LogCorruptionError(
            f"the primary's genesis hashes to {genesis.hash}, not to the {answer['hash']} it announces"
        )
    return genesis


async def follow(
    store: LedgerStore, client: LedgerClient, *, wait: int = 5, page: int = 2000, retry_seconds: float = 1.0
) -> None:
    """Replicate forever (until cancelled). Raises ``LogCorruptionError`` if the primary's log does
    not verify or belongs to another genesis."""
    while True:
        try:
            answer = await asyncio.to_thread(client.log, store.seq, limit=page, wait=wait)
        except LedgerUnavailableError:
            await store.clock.sleep_until(store.clock.now() + retry_seconds)
            continue
        try:
            if answer["genesis_hash"] != store.genesis.hash:
                raise LogCorruptionError(
                    f"the primary's genesis {answer['genesis_hash']} is not this replica's "
                    f"{store.genesis.hash}; follow it with an empty --data folder"
                )
            await store.append_replicated(answer["entries"])
        except LogCorruptionError as exc:
            store.mark_failed(exc)
            raise
