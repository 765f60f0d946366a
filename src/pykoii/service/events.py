"""Live events for ``GET /events``: new slots, round phase changes, accepted transactions, payouts.

``EventHub.publish`` appends each event, encoded once as server-sent-event bytes, to one shared ring
of the last ``capacity`` events: publishing costs the same for one subscriber or a thousand, and a
subscriber costs a cursor, not a queue. Waiting subscribers are woken once per loop iteration, not
once per event. A subscriber whose cursor falls out of the ring (it reads slower than events come)
is dropped: it gets a final ``dropped`` event and its stream ends; if it is stuck writing to a
client that does not read, its stream is cancelled, which closes the connection.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from typing import Any

import orjson

from ..ledger import LedgerState, phase_of, round_of
from .slots import SlotClock
from .verify import Verified

PAYOUT_EVENTS = frozenset({"RoundPaid", "RoundFailed"})
"""Receipt events that ``GET /events`` streams as ``payout`` events."""

EVENT_KINDS = frozenset({"slot", "phase", "tx", "payout"})
"""What ``GET /events?types=`` may name (a dropped subscriber's final ``dropped`` event always comes)."""

Event = tuple[int, str, dict[str, Any], bytes]
"""``(event_id, kind, data, sse_bytes)``."""


class Subscription:
    """One subscriber's place in the hub: the id of the next event it wants, and what to keep."""

    __slots__ = ("cursor", "dropped", "ended", "kinds", "task", "writing")

    def __init__(self, cursor: int, kinds: frozenset[str]) -> None:
        self.cursor = cursor
        self.kinds = kinds
        self.dropped = False
        """Set when it fell out of the ring; the next ``wait`` answers the final event."""
        self.ended = False
        self.writing = False
        """True while its stream writes to the client (set by the stream)."""
        self.task: asyncio.Task[Any] | None = None
        """Its stream's task, cancelled if it is dropped while stuck writing."""


class EventHub:
    """Events in one shared ring; subscribers read it from their own cursor."""

    def __init__(
        self, capacity: int = 20_000, *, flush_seconds: float = 0.05, keepalive_seconds: float = 15.0
    ) -> None:
        self.capacity = capacity
        self.flush_seconds = flush_seconds
        self.keepalive_seconds = keepalive_seconds
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._ticks = 0
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._subscribers: set[Subscription] = set()
        self._next_id = 1
        self._wakeup: asyncio.Future[None] | None = None
        self._flush_scheduled = False

    def subscribe(self, kinds: frozenset[str] = frozenset()) -> Subscription:
        """A subscription to every event from now on (of ``kinds``, if given)."""
        subscription = Subscription(self._next_id, kinds)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a subscriber (O(1))."""
        self._subscribers.discard(subscription)
        subscription.ended = True

    @property
    def active(self) -> bool:
        """Whether anyone listens (publishers skip building events otherwise)."""
        return bool(self._subscribers)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Append one event to the ring (O(1)); subscribers are woken at most every
        ``flush_seconds``, with everything published since."""
        event_id = self._next_id
        self._next_id += 1
        encoded = b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, kind.encode(), orjson.dumps(data))
        self._ring.append((event_id, kind, data, encoded))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.flush_seconds, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._ring:
            oldest = self._ring[0][0]
            for subscription in [s for s in self._subscribers if s.cursor < oldest]:
                self._drop(subscription)
        self._wake()

    def _drop(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        subscription.dropped = True
        if subscription.writing and subscription.task is not None:
            subscription.task.cancel()  # stuck on a client that does not read: close it

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        self._wakeup = None

    def _keepalive(self) -> None:
        self._keepalive_timer = None
        self._ticks += 1
        self._wake()

    async def wait(self, subscription: Subscription) -> list[Event] | None:
        """The events for ``subscription`` since its last call, ``[]`` if none came within
        ``keepalive_seconds``, or ``None`` once its stream is over. A dropped subscriber gets a final
        ``dropped`` event first. One shared wake-up and one shared timer serve every waiter."""
        ticks = self._ticks
        while True:
            if subscription.ended:
                return None
            if subscription.dropped:
                subscription.ended = True
                data: dict[str, Any] = {
                    "reason": f"too slow: fell more than {self.capacity} events behind",
                    "resume_from": subscription.cursor,
                }
                return [(0, "dropped", data, b"event: dropped\ndata: %s\n\n" % orjson.dumps(data))]
            if self._ring and subscription.cursor < self._ring[0][0]:
                self._drop(subscription)
                continue
            events = self._since(subscription)
            if events:
                return events
            if self._ticks != ticks:
                return []  # the keep-alive tick
            loop = asyncio.get_running_loop()
            if self._wakeup is None:
                self._wakeup = loop.create_future()
            if self._keepalive_timer is None:
                self._keepalive_timer = loop.call_later(self.keepalive_seconds, self._keepalive)
            await asyncio.shield(self._wakeup)

    def _since(self, subscription: Subscription) -> list[Event]:
        """The ring's events from the subscription's cursor on (read from the newest end: O(new))."""
        count = self._next_id - subscription.cursor
        if count <= 0:
            return []
        subscription.cursor = self._next_id
        newest = list(itertools.islice(reversed(self._ring), count))
        newest.reverse()
        if subscription.kinds:
            return [event for event in newest if event[1] in subscription.kinds]
        return newest

    def close(self) -> None:
        """End every stream."""
        for subscription in self._subscribers:
            subscription.ended = True
        self._subscribers.clear()
        self._wake()


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
            self._publish_slot(await self.slots.wait_next())

    def _publish_slot(self, slot: int) -> None:
        """Stream a ``slot`` event, and a ``phase`` event for each task whose round phase changed."""
        if not self.events.active or self.recovering:
            return
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
