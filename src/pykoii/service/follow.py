"""A replica: stream a primary's log, check it, apply it, and serve the read routes.

``follow`` long-polls ``GET /log?after=<our seq>&wait=...`` and hands each page to
``LedgerStore.append_replicated``, which checks the hash chain and every signature, applies each
entry at its recorded slot and appends it to the replica's own durable log. The replica's store is
read-only: ``POST /tx`` and ``PUT /blobs`` are refused with ``ReadOnlyReplicaError``; ``GET /blobs``
fetches a blob it does not hold from the primary (``blob_source``, checked against its CID) and keeps
it. A validator finds the blobs it does not hold on the other validators the same way.

A replica never stops on its own: every failure (the primary down, a proxy's HTML error page, a
malformed or non-verifying answer, its own full disk) is logged and retried with exponential
backoff (``Replication``), and ``/health`` reports the lag behind the primary and since when the
replica is stalled, answering 503 once it has been stalled for ``stall_seconds``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..client import LedgerClient
from ..errors import LedgerUnavailableError, LogCorruptionError, NotFoundError, PykoiiError
from .blobs import MAX_BLOB_BYTES
from .store import Genesis, LedgerStore

LOG = logging.getLogger("pykoii.ledger.follow")


def primary_genesis(client: LedgerClient) -> Genesis:
    """The primary's genesis, checked against the hash it announces."""
    answer = client.genesis()
    genesis = Genesis.from_plain(answer["genesis"])
    if genesis.hash != answer["hash"]:
        raise LogCorruptionError(
            f"the primary's genesis hashes to {genesis.hash}, not to the {answer['hash']} it announces"
        )
    return genesis


def blob_source(
    urls: Sequence[str], *, local: bool = False, timeout: float = 10.0, max_bytes: int = MAX_BLOB_BYTES
) -> Callable[[str], bytes]:
    """How a ledger fetches a blob it does not hold: ``GET /blobs/{cid}`` of each ledger at ``urls``
    in turn (a replica: its primary; a validator: the other validators, asked with ``local`` so that
    they do not ask on in turn); the first copy that matches the CID wins (``LedgerClient.get_blob``
    checks it; an answer over ``max_bytes`` is refused before it is all read). None has it:
    ``NotFoundError``, or ``LedgerUnavailableError`` if one that could hold it did not answer or
    answered wrong bytes; each names what every ledger said."""
    clients = [LedgerClient(url, retries=0, timeout=timeout) for url in urls]

    def fetch(cid: str) -> bytes:
        said: list[str] = []
        unreachable = False
        for client in clients:
            try:
                return client.get_blob(cid, local=local, max_bytes=max_bytes)
            except PykoiiError as exc:
                unreachable = unreachable or not isinstance(exc, NotFoundError)
                said.append(f"{client.base_url}: {exc.name}: {exc.message[:160]}")
                if not isinstance(exc, NotFoundError):
                    LOG.warning("blob %s: %s", cid, said[-1])
        where = "; ".join(said) or "no other ledger is configured"
        if unreachable:
            raise LedgerUnavailableError(
                f"blob {cid} is not held here and no other ledger served it ({where}); retry later", cid=cid
            )
        raise NotFoundError(f"no blob has id {cid}, here or on the other ledgers ({where})", cid=cid)

    return fetch


@dataclass
class Replication:
    """What a replica knows about its primary, for ``/health``."""

    primary: str
    stall_seconds: float = 30.0
    """Stalled this long, ``/health`` answers 503."""
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    primary_seq: int = 0
    """The primary's newest seq, as of its last good answer."""
    stalled_since: float | None = None
    """Wall time of the first failure since the last good answer (``None``: not stalled)."""
    last_error: str | None = None
    failures: int = 0

    def failed(self, now: float, error: BaseException) -> float:
        """Record a failure at wall time ``now``; return the seconds to wait before retrying."""
        if self.stalled_since is None:
            self.stalled_since = now
        self.failures += 1
        self.last_error = f"{type(error).__name__}: {error}"[:500]
        return min(self.max_backoff, self.min_backoff * 2.0 ** min(self.failures - 1, 16))

    def succeeded(self, primary_seq: int) -> None:
        if self.stalled_since is not None:
            LOG.warning("replica: %s answers again after %d failures", self.primary, self.failures)
        self.primary_seq = max(self.primary_seq, primary_seq)
        self.stalled_since, self.last_error, self.failures = None, None, 0

    def stalled(self, now: float) -> bool:
        return self.stalled_since is not None and now - self.stalled_since >= self.stall_seconds

    def view(self, seq: int, now: float) -> dict[str, Any]:
        """The ``replication`` part of the replica's ``/health``."""
        since = self.stalled_since
        return {
            "primary": self.primary,
            "primary_seq": self.primary_seq,
            "lag": max(0, self.primary_seq - seq),
            "stalled_since": None
            if since is None
            else datetime.datetime.fromtimestamp(since, datetime.UTC).isoformat(timespec="seconds"),
            "stalled_seconds": 0.0 if since is None else round(now - since, 1),
            "last_error": self.last_error,
        }


async def follow(
    store: LedgerStore, client: LedgerClient, replication: Replication, *, wait: int = 5, page: int = 2000
) -> None:
    """Replicate forever (until cancelled), retrying every failure with backoff."""
    clock = store.clock
    while True:
        try:
            answer = await asyncio.to_thread(client.log, store.durable_seq, limit=page, wait=wait)
            if not isinstance(answer, dict) or answer.get("genesis_hash") != store.genesis.hash:
                got = answer.get("genesis_hash") if isinstance(answer, dict) else type(answer).__name__
                raise LogCorruptionError(
                    f"the primary's genesis {got} is not this replica's {store.genesis.hash}; "
                    "follow it with an empty --data folder"
                )
            await store.append_replicated(answer["entries"])
            replication.succeeded(int(answer["last_seq"]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            delay = replication.failed(clock.wall(), exc)
            LOG.warning(
                "replica: following %s failed at seq %d (%s); failure %d, retrying in %.1f s",
                replication.primary,
                store.durable_seq,
                replication.last_error,
                replication.failures,
                delay,
            )
            await clock.sleep_until(clock.now() + delay)
