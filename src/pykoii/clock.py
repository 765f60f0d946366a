"""Time, injected. The only module that reads the real clock.

Services and nodes take a ``Clock``; tests and the simulator pass a ``ManualClock`` and move time by
hand, so nothing sleeps for real and runs are deterministic.

>>> clock = ManualClock(start=100.0)
>>> clock.advance(2.5)
>>> clock.now()
102.5
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds, and a way to wait for a moment."""

    def now(self) -> float:
        """Seconds on this clock (monotonic)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class WallClock(Clock, Protocol):
    """A ``Clock`` that can also read wall time (seconds since the epoch) and sleep synchronously.

    The ledger service anchors its slot clock on wall time so that slots survive restarts, and the
    client sleeps between retries.
    """

    def wall(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (synchronous code only)."""
        ...


class SystemClock:
    """The real monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps people read (never for ledger rules)."""
        return time.time()

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when told to; sleepers wake as ``advance`` passes their deadline."""

    def __init__(self, start: float = 0.0, *, wall_start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        """Wall time, moving with ``now()`` from ``wall_start``."""
        return self._now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        """Synchronous sleep on a manual clock: time simply moves on by ``seconds``."""
        self.advance(max(seconds, 0.0))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def next_deadline(self) -> float | None:
        """The earliest deadline anyone waits for, if any."""
        return self._sleepers[0][0] if self._sleepers else None
