"""Live events for ``GET /events``: new slots, round phase changes, accepted transactions, payouts.

``EventHub.publish`` hands each event to every subscriber's bounded queue. A subscriber that falls
``maxsize`` events behind is dropped (its stream ends) rather than slowing the sequencer down.
"""

from __future__ import annotations

import asyncio
from typing import Any

STREAM_END = None
"""Put on a subscriber's queue when it was dropped or the service stops."""


class EventHub:
    """Fan-out of ``(kind, data)`` events to subscribers' queues."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._subscribers: set[asyncio.Queue[tuple[int, str, dict[str, Any]] | None]] = set()
        self._next_id = 0

    def subscribe(self) -> asyncio.Queue[tuple[int, str, dict[str, Any]] | None]:
        """A new queue that receives ``(event_id, kind, data)`` for every event from now on."""
        queue: asyncio.Queue[tuple[int, str, dict[str, Any]] | None] = asyncio.Queue(self.maxsize + 1)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[int, str, dict[str, Any]] | None]) -> None:
        """Stop sending events to ``queue``."""
        self._subscribers.discard(queue)

    @property
    def active(self) -> bool:
        """Whether anyone listens (publishers skip building events otherwise)."""
        return bool(self._subscribers)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send one event to every subscriber; drop those that are full."""
        self._next_id += 1
        for queue in list(self._subscribers):
            if queue.qsize() >= self.maxsize:
                self._subscribers.discard(queue)
                queue.put_nowait(STREAM_END)
            else:
                queue.put_nowait((self._next_id, kind, data))

    def close(self) -> None:
        """End every stream."""
        for queue in list(self._subscribers):
            queue.put_nowait(STREAM_END)
        self._subscribers.clear()
