"""The node's work lane: ``task(R)`` runs beside the loop, Koii's phase model.

``schedule.py`` says which action is work (``is_work``) and what waits for it (``waits_for_work``);
this mixin of ``Node`` starts the work as a background job, times every phase against its window
(``schedule.overrun``) and logs a phase that ended after its window closed, with the numbers.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import SandboxError, TaskCodeError
from . import schedule
from .executor import RoundExecutor

if TYPE_CHECKING:
    from .model import TaskRuntime


class WorkLane(RoundExecutor):
    """The part of ``Node`` that runs ``task()`` on its own lane (``Node`` provides the attributes)."""

    slot: int
    clock: Any
    config: Any
    journal: Any
    ledger: Any
    _slot_read_at: float

    def _fail(self, runtime: TaskRuntime, error: str) -> None:
        raise NotImplementedError  # Node's: last_error, masked

    async def _run_due(self, runtime: TaskRuntime, task: Any, record: Any, actions: list[Any]) -> None:
        """Carry out the due actions: work on its lane, the rest in order, each timed against its window."""
        for action in actions:
            if schedule.waits_for_work(action, runtime.working):
                continue
            if schedule.is_work(action):
                self._start_work(runtime, task, record, action)
                continue
            started, began = self._slot_now(), self.clock.now()
            await self._execute(runtime, task, record, action)
            self._check_window(runtime, task, action, started, began)

    def _slot_now(self) -> int:
        """The ledger's slot now, from the last read and the time since (no extra request)."""
        elapsed_ms = (self.clock.now() - self._slot_read_at) * 1000
        return self.slot + int(elapsed_ms // max(self.ledger.slot_ms, 1))

    def _start_work(self, runtime: TaskRuntime, task: Any, record: Any, action: Any) -> None:
        """Start ``task(R)`` on the work lane; the loop goes on with the other phases meanwhile."""
        record.mark(action.key)
        self.journal.save_record(runtime.record.task_id, record.to_json())
        process = runtime.process
        assert process is not None
        started, began, slot = self._slot_now(), self.clock.now(), self.slot

        async def work() -> None:
            try:
                await process.run_phase("task", action.round, slot)
            except (TaskCodeError, SandboxError) as exc:
                self._fail(runtime, str(exc))
                runtime.logger.error("%s: %s", exc.name, exc)
                if not process.running:
                    runtime.status = "failed"  # the loop restarts it with backoff
            else:
                self._check_window(runtime, task, action, started, began)
            finally:
                runtime.working = None

        runtime.working = action.round
        runtime.work = asyncio.get_running_loop().create_task(work())

    def _check_window(self, runtime: TaskRuntime, task: Any, action: Any, started: int, began: float) -> None:
        late = schedule.overrun(task, action, started, self._slot_now(), self.clock.now() - began)
        if late is not None:
            self._fail(runtime, late)
            runtime.logger.warning("%s", late)
