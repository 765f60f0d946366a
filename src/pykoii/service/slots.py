"""The slot clock: which slot it is now, from an anchored wall time and the slot length.

Slot 0 began at the ledger's genesis, ``anchor_ms`` milliseconds after the epoch; slot ``n`` covers
``[anchor_ms + n*slot_ms, anchor_ms + (n+1)*slot_ms)``. Wall time is read once, when the clock is
made, and converted to the monotonic ``Clock``; from then on only monotonic time moves the slot,
so an NTP step during a run changes nothing. The slot never goes backwards: it starts no lower
than ``floor`` (the last slot in the log, across restarts) and never falls below the last slot it
returned.

>>> from pykoii.clock import ManualClock
>>> clock = ManualClock(start=0.0, wall_start=1000.0)
>>> slots = SlotClock(clock, anchor_ms=999_000, slot_ms=400)
>>> slots.current()
2
>>> clock.advance(0.4)
>>> slots.current()
3
"""

from __future__ import annotations

from ..clock import WallClock


class SlotClock:
    """Slot numbers from an injected clock; monotonic, anchored on the ledger's genesis time."""

    def __init__(self, clock: WallClock, *, anchor_ms: int, slot_ms: int, floor: int = 0) -> None:
        if slot_ms <= 0:
            raise ValueError(f"slot_ms must be a positive number of milliseconds, got {slot_ms}")
        self.clock = clock
        self.slot_ms = slot_ms
        self.anchor_ms = anchor_ms
        # The monotonic reading at which slot 0 began.
        self._origin = clock.now() - (clock.wall() - anchor_ms / 1000)
        self._last = max(floor, 0)

    def current(self) -> int:
        """The current slot (never lower than any slot returned before)."""
        slot = int((self.clock.now() - self._origin) * 1000 // self.slot_ms)
        if slot > self._last:
            self._last = slot
        return self._last

    def start_of(self, slot: int) -> float:
        """The ``clock.now()`` reading at which ``slot`` begins."""
        return self._origin + slot * self.slot_ms / 1000

    async def wait_next(self) -> int:
        """Sleep until the next slot begins; return it."""
        target = self.current() + 1
        while self.current() < target:  # event loops may wake a timer a little early
            await self.clock.sleep_until(self.start_of(target) + 1e-4)
        return self.current()
