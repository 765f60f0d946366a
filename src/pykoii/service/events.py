"""Live events for ``GET /events``: new slots, round phase changes, accepted transactions, payouts.

``EventHub.publish`` hands each event to every subscriber's bounded queue. A subscriber that falls
``maxsize`` events behind is dropped (its stream ends) rather than slowing the sequencer down.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..ledger import LedgerState, phase_of, round_of
from .slots import SlotClock
from .verify import Verified

PAYOUT_EVENTS = frozenset({"RoundPaid", "RoundFailed"})
"""Receipt events that ``GET /events`` streams as ``payout`` events."""

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


class EventSource:
    """What ``LedgerStore`` publishes (a mixin: the store sets these attributes)."""

    events: EventHub
    state: LedgerState
    slots: SlotClock
    recovering: bool
    _phases: dict[str, tuple[int, str]]

    def _publish(self, receipts: list[tuple[dict[str, Any], Verified]]) -> None:
        for plain, outcome in receipts:
            tx = outcome.tx
            self.events.publish(
                "tx",
                {
                    "tx_id": plain["tx_id"],
                    "seq": plain["seq"],
                    "slot": plain["slot"],
                    "type": tx.TYPE,
                    "signer": tx.signer,
                },
            )
            for event in plain["events"]:
                if event["kind"] in PAYOUT_EVENTS:
                    self.events.publish("payout", event)

    async def _ticker(self) -> None:
        while True:
            slot = await self.slots.wait_next()
            if not self.events.active or self.recovering:
                continue
            self.events.publish("slot", {"slot": slot})
            for task_id, task in self.state.tasks.items():
                if not task.is_active or task.is_migrated or slot < task.starting_slot:
                    continue
                now = (round_of(task, slot), phase_of(task, slot).value)
                if self._phases.get(task_id) != now:
                    self._phases[task_id] = now
                    self.events.publish(
                        "phase", {"task_id": task_id, "round": now[0], "phase": now[1], "slot": slot}
                    )
