"""The operator's actions on a node: add, stop, start, remove and follow tasks; stake more,
withdraw and claim. Each is a method of ``Node`` (this is its mixin); the control API, the CLI and
the dashboard call them and only present the result.

Money moves only by signed transactions: the **staking key** stakes, withdraws and claims; the
**main wallet** tops the staking key up and receives claims.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    ConfigError,
    InsufficientFundsError,
    InsufficientStakeError,
    InvalidRequestError,
    NothingToClaimError,
    PykoiiError,
    UnknownTaskError,
)
from ..ledger.rounds import reveal_slots
from . import isolation, schedule
from .journal import TaskRecord
from .model import LOCAL_CODE, TaskRuntime, log

if TYPE_CHECKING:
    from .journal import Journal
    from .ledger_access import NodeLedger
    from .model import NodeConfig


class NodeActions:
    """The operator's actions (a mixin of ``Node``, which provides the attributes)."""

    config: NodeConfig
    ledger: NodeLedger
    journal: Journal
    wallet: Any
    staking: Any
    tasks: dict[str, TaskRuntime]
    data_dir: Path
    slot: int

    if TYPE_CHECKING:  # provided by Node

        async def _launch(self, record: TaskRecord) -> None: ...
        async def _halt(self, task_id: str, status: str | None = "stopped") -> None: ...
        async def _ensure_code(self, cid: str) -> Path: ...
        async def _environment(self, code_dir: Path) -> str: ...
        def _summary(self, runtime: TaskRuntime) -> dict[str, Any]: ...
        def _runtime(self, record: TaskRecord) -> TaskRuntime: ...
        def _event(self, runtime: TaskRuntime, kind: str, detail: str) -> None: ...
        def public_base_url(self) -> str: ...
        async def _reveal_due(self, runtime: TaskRuntime) -> list[tuple[int, range]]: ...

    async def add_task(
        self, task_id: str, stake: int, variables: dict[str, str], code: str | None = None
    ) -> dict[str, Any]:
        """Download and verify the task's code, stake ``stake`` ROE, and start the task.

        Every ``TASK_VARIABLE`` the task names must be given (an empty value counts when given on
        purpose); a missing one is refused before any code is fetched or any KOII moves. Adding a
        task that is already added merges ``variables`` into its own and, when they changed,
        restarts its child with them (the result's ``message`` says so). ``code`` (development
        only) runs a local folder instead of the published code.
        """
        state = await self.ledger.task(task_id)
        previous = self.journal.task(task_id)
        merged = {**(previous.variables if previous else {}), **variables}
        missing_variables(state, merged)
        self._check_addable(task_id, state, stake)
        if code is not None:
            cid = LOCAL_CODE + str(Path(code).resolve())
            log.warning(
                "task %s runs LOCAL code %s, not its published %s", task_id, code, state["task_audit_program"]
            )
        else:
            cid = str(state["task_audit_program"])
        await self._environment(await self._ensure_code(cid))  # requirements.txt: refused before staking
        await self._stake(task_id, state, stake)
        record = TaskRecord(task_id=task_id, stake=stake, variables=merged, enabled=True, code_cid=cid)
        self.journal.put_task(record)
        message = ""
        runtime = self.tasks.get(task_id)
        changed = previous is not None and (previous.variables != merged or previous.code_cid != cid)
        if changed and runtime is not None and runtime.loop is not None and not runtime.loop.done():
            await self._halt(task_id, status=None)
            message = "its variables or code changed: the task child was restarted with them"
            runtime.logger.info(
                "task variables changed (%s); restarting the task child", ", ".join(sorted(merged))
            )
        await self._launch(record)
        summary = self._summary(self.tasks[task_id])
        if message:
            summary["message"] = message
        return summary

    async def stop_task(self, task_id: str) -> dict[str, Any]:
        """Stop the task's child and its rounds. A proof already sent is still revealed in its window
        (``_reveals_after_stop``): unrevealed, it would be judged invalid and 70 % of the stake
        slashed. The result's ``message`` names those proofs."""
        record = self._record(task_id)
        record.enabled = False
        self.journal.put_task(record)
        await self._halt(task_id, status="removing" if record.removed else "stopped")
        runtime = self._runtime(record)
        self._event(runtime, "stop", "stopped by the operator")
        message = await self._keep_revealing(runtime)
        return {**self._summary(runtime), **({"message": message} if message else {})}

    async def start_task(self, task_id: str) -> dict[str, Any]:
        record = self._record(task_id)
        record.enabled, record.removed = True, False  # a task being removed is kept after all
        self.journal.put_task(record)
        await self._launch(record)
        return self._summary(self.tasks[task_id])

    async def remove_task(self, task_id: str) -> dict[str, Any]:
        """Stop the task and forget it, once every proof it already sent is revealed in its window
        (status ``removing`` until then, kept through a restart of the node)."""
        record = self._record(task_id)
        record.enabled, record.removed = False, True
        self.journal.put_task(record)
        await self._halt(task_id, status="removing")
        runtime = self._runtime(record)
        self._event(runtime, "remove", "removed by the operator; no process of it is left")
        message = await self._keep_revealing(runtime)
        stake = "the stake stays on the ledger: withdraw it once its rounds are paid, then claim"
        return {
            "TaskID": task_id,
            "status": "removing" if task_id in self.tasks else "removed",
            "stake": record.stake,
            "message": f"{message}; {stake}" if message else stake,
        }

    async def _keep_revealing(self, runtime: TaskRuntime) -> str:
        """After ``stop-task`` or ``remove-task``: send the reveals due now and, while proofs sent
        before still await theirs, keep revealing them in the background (``_reveals_after_stop``);
        what the operator is told about them ("" when none)."""
        try:
            pending = await self._reveal_due(runtime)
        except UnknownTaskError:
            pending = []
        except PykoiiError as exc:
            runtime.reveals = asyncio.get_running_loop().create_task(self._reveals_after_stop(runtime))
            return (
                f"the ledger did not answer ({exc.name}): the node reveals the proofs it already sent, "
                "if any, once it does"
            )
        if not pending:
            self._forget_if_removed(runtime)
            return ""
        runtime.reveals = asyncio.get_running_loop().create_task(self._reveals_after_stop(runtime))
        then = "then forgets the task" if runtime.record.removed else "then stops"
        windows = self._windows(pending)
        return f"the node reveals the proofs it already sent, each in its window, {then}: {windows}"

    async def _reveals_after_stop(self, runtime: TaskRuntime) -> None:
        """Reveal, once each window opens, the proofs this node sent before the task was stopped or
        removed; then end (and forget a removed task)."""
        while True:
            try:
                if not await self._reveal_due(runtime):
                    break
            except UnknownTaskError:  # the ledger holds no such task: nothing to reveal
                break
            except PykoiiError as exc:  # the ledger is away: try again
                runtime.logger.warning("stopped, revealing the proofs already sent: %s: %s", exc.name, exc)
            await asyncio.sleep(self.config.poll_interval)
        self._forget_if_removed(runtime)

    def _forget_if_removed(self, runtime: TaskRuntime) -> None:
        task_id = runtime.record.task_id
        if runtime.record.removed and self.tasks.get(task_id) is runtime:
            self._event(runtime, "forget", "every proof it sent is revealed: the task is forgotten")
            self.journal.remove_task(task_id)
            del self.tasks[task_id]

    def _windows(self, pending: list[tuple[int, range]]) -> str:
        """``round 7 (reveal window slots 120-123: opens in about 3 s, closes in about 4 s)``, one
        per proof."""
        parts = []
        for number, window in pending:
            opens, closes = (
                (edge - self.slot) * self.ledger.slot_ms / 1000 for edge in (window.start, window.stop)
            )
            when = f"opens in about {opens:.0f} s" if opens > 0 else "open now"
            parts.append(
                f"round {number} (reveal window slots {window.start}-{window.stop - 1}: {when}, "
                f"closes in about {closes:.0f} s)"
            )
        return ", ".join(parts)

    async def stop_revealing(self, now: asyncio.Event, say: Callable[[str], None] = print) -> None:
        """A clean shutdown (``node run`` on SIGINT/SIGTERM): stop every task child, then reveal each
        proof already sent, in its window, and return once none is left; ``say`` tells the operator
        which and how long. ``now`` set (a second signal): return at once, saying which proofs are
        then lost unless the node is restarted before their windows close. Waits at most a
        submission window plus a reveal window of the task (the ledger may never answer)."""
        for task_id in list(self.tasks):
            await self._halt(task_id, status=None)
        waiting: list[TaskRuntime] = []
        for runtime in list(self.tasks.values()):
            task_id = runtime.record.task_id
            try:
                pending = await self._reveal_due(runtime)
            except UnknownTaskError:
                pending = []
            except PykoiiError as exc:
                say(f"task {task_id}: the ledger does not answer ({exc.name}: {exc}); trying again")
                pending = None
            if pending == []:  # every proof sent is revealed (not None: the ledger did not answer)
                self._forget_if_removed(runtime)
                continue
            waiting.append(runtime)
            if pending:
                say(f"task {task_id}: revealing the proofs already sent: {self._windows(pending)}")
        if not waiting:
            return
        say(
            "the node exits once they are revealed; SIGINT or SIGTERM again stops it now and loses "
            "them (unless it is restarted before their windows close)"
        )
        loop = asyncio.get_running_loop()
        jobs = [loop.create_task(self._reveals_after_stop(runtime)) for runtime in waiting]
        for runtime, job in zip(waiting, jobs, strict=True):
            runtime.reveals = job
        stop_now = loop.create_task(now.wait())
        bound = max(self._reveal_wait(runtime) for runtime in waiting)
        ends: list[asyncio.Future[Any]] = [asyncio.gather(*jobs, return_exceptions=True), stop_now]
        await asyncio.wait(ends, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
        stop_now.cancel()
        lost = [(runtime, job) for runtime, job in zip(waiting, jobs, strict=True) if not job.done()]
        for runtime, job in lost:
            job.cancel()
            windows = (
                self._windows(runtime.unrevealed) if runtime.unrevealed else "which, unknown (no ledger)"
            )
            say(
                f"task {runtime.record.task_id}: NOT revealed, so judged invalid and slashed unless the "
                f"node is restarted before the window closes: {windows}"
            )
        if not lost:
            say("every proof sent is revealed")

    def _reveal_wait(self, runtime: TaskRuntime) -> float:
        """Seconds until the last reveal window of the task's unrevealed proofs closes, and 5 s; when
        the ledger did not answer, the longest it can be: a submission window and a reveal window."""
        if runtime.unrevealed:
            slots = max(window.stop for _, window in runtime.unrevealed) - self.slot
        elif runtime.state:
            task = schedule.as_task_state(runtime.state)
            slots = task.submission_window + reveal_slots(task)
        else:
            slots = 0
        return max(0, slots) * self.ledger.slot_ms / 1000 + 5.0

    async def follow_migration(self, task_id: str) -> dict[str, Any]:
        """Add the version ``task_id`` was migrated to, with the same stake and variables, and stop
        running the old one (its stake stays on it: withdraw it after the lock, then claim)."""
        record = self._record(task_id)
        state = await self.ledger.task(task_id)
        new_id = str(state.get("migrated_to") or "")
        if not new_id:
            raise InvalidRequestError(
                f"task {task_id} has not been migrated; nothing to follow", task_id=task_id
            )
        runtime = self.tasks.get(task_id)
        try:
            info = await self.add_task(new_id, record.stake, record.variables)
        except PykoiiError as exc:
            if runtime is not None:
                runtime.last_error = f"could not follow the migration to {new_id}: {exc.name}: {exc}"
            raise
        record.enabled = False
        self.journal.put_task(record)
        if runtime is not None:
            runtime.last_error = ""
            runtime.logger.info("followed the migration: now running %s", new_id)
        log.info("task %s: followed the migration to %s", task_id, new_id)
        return {
            **info,
            "message": f"task {task_id} was migrated to {new_id}: staked {record.stake} ROE on it and "
            f"started it; the old stake stays on {task_id} (withdraw it after the lock, then claim)",
        }

    def _check_addable(self, task_id: str, state: dict[str, Any], stake: int) -> None:
        """Refuse, before anything is downloaded or any money moves, what would fail later: a stake
        under the task's minimum, a node that cannot isolate task code."""
        minimum = int(state.get("minimum_stake_amount", 0))
        if isinstance(stake, bool) or not isinstance(stake, int) or stake <= 0:
            raise InvalidRequestError(f"stake must be a positive amount of ROE, got {stake!r}", stake=stake)
        already = int(state.get("stake_list", {}).get(self.staking.public_key, 0))
        if max(stake, already) < minimum:
            raise InsufficientStakeError(
                f"task {task_id} needs a stake of at least {minimum} ROE; {stake} ROE was asked",
                stake=stake,
                minimum=minimum,
            )
        if self.config.limits.isolation != isolation.NONE:
            isolation.require_isolation(task_id)

    def _record(self, task_id: str) -> TaskRecord:
        record: TaskRecord | None = self.journal.task(task_id)
        if record is None:
            raise UnknownTaskError(
                f"task {task_id} is not added to this node; add it with `pykoii node add-task`",
                task_id=task_id,
            )
        return record

    # -- money ------------------------------------------------------------------------------------

    async def send_signed(self, keypair: Any, tx: dict[str, Any]) -> dict[str, Any]:
        """Sign ``tx`` with ``keypair`` at the ledger's current slot and send it; the receipt."""
        slot = await self.ledger.slot()
        return await self.ledger.send(keypair.sign_transaction({**tx, "recent_slot": slot}))

    async def stake_more(self, task_id: str, amount: int) -> dict[str, Any]:
        """Stake ``amount`` ROE more on the task, moving it from the main wallet to the staking key
        first when the staking key holds less; the stake's receipt."""
        me = self.staking.public_key
        balance = await self.ledger.balance(me)
        if balance < amount:
            await self.send_signed(self.wallet, {"type": "transfer", "to": me, "amount": amount - balance})
        return await self.send_signed(self.staking, {"type": "stake", "task_id": task_id, "amount": amount})

    async def withdraw(self, task_id: str) -> dict[str, Any]:
        """Unstake the whole stake into the task's claimable balance (``StakeLockedError`` while the
        last submission can still be audited); the receipt."""
        return await self.send_signed(self.staking, {"type": "withdraw", "task_id": task_id})

    async def claim(self, task_id: str) -> dict[str, Any]:
        """Move the staking key's claimable balance on the task to the main wallet; the receipt.
        ``NothingToClaimError`` when there is nothing, without sending anything."""
        state = await self.ledger.task(task_id)
        if not int(state.get("available_balances", {}).get(self.staking.public_key, 0)):
            raise NothingToClaimError(
                f"this node has no claimable balance on task {task_id} yet", task_id=task_id
            )
        tx = {"type": "claim_reward", "task_id": task_id, "beneficiary": self.wallet.public_key}
        return await self.send_signed(self.staking, tx)

    async def _stake(self, task_id: str, state: dict[str, Any], stake: int) -> None:
        me = self.staking.public_key
        already = int(state.get("stake_list", {}).get(me, 0))
        if already >= stake:
            return
        needed = stake - already
        slot = await self.ledger.slot()
        balance = await self.ledger.balance(me)
        if balance < needed:
            wallet = await self.ledger.balance(self.wallet.public_key)
            if wallet < needed - balance:
                raise InsufficientFundsError(
                    f"staking {needed} ROE on task {task_id} needs {needed - balance} ROE from the main "
                    f"wallet {self.wallet.public_key}, which holds {wallet} ROE; nothing was moved",
                    needed=needed - balance,
                    balance=wallet,
                )
            transfer = self.wallet.sign_transaction(
                {"type": "transfer", "to": me, "amount": needed - balance, "recent_slot": slot}
            )
            await self.ledger.send(transfer)
        url = self.public_base_url()
        envelope = self.staking.sign_transaction(
            {"type": "stake", "task_id": task_id, "amount": needed, "ip_address": url, "recent_slot": slot}
        )
        await self.ledger.send(envelope)
        log.info("staked %d ROE on task %s", needed, task_id)

    # -- migrations ---------------------------------------------------------------------------------

    async def _migrated(self, runtime: TaskRuntime) -> None:
        """The task was migrated: stop its child, then follow (``auto``) or wait for the operator."""
        task_id, new_id = runtime.record.task_id, runtime.migrated_to
        if runtime.process is not None:
            await runtime.process.stop()
        runtime.status = "migrated"
        if self.journal.task(new_id) is not None:
            return
        if self.config.follow_migrations == "auto":
            runtime.logger.info(
                "the task was migrated to %s; following it (--follow-migrations auto)", new_id
            )
            asyncio.get_running_loop().create_task(self._follow_quietly(task_id))
            return
        text = (
            f"the task was migrated to {new_id}; to follow it, press Follow on the dashboard or run "
            f"`pykoii node follow {task_id} --data {self.data_dir}` (--follow-migrations ask)"
        )
        runtime.logger.warning("%s", text)
        log.warning("task %s: %s", task_id, text)

    async def _follow_quietly(self, task_id: str) -> None:
        try:
            await self.follow_migration(task_id)
        except PykoiiError as exc:
            log.error("task %s: could not follow its migration: %s: %s", task_id, exc.name, exc)


def missing_variables(state: dict[str, Any], variables: dict[str, str]) -> None:
    """Refuse (``ConfigError``) when a ``TASK_VARIABLE`` of the task is not in ``variables``."""
    wanted = [t for t in state.get("requirements_tags", []) if t.get("type") == "TASK_VARIABLE"]
    missing = [t for t in wanted if t.get("value") not in variables]
    if not missing:
        return
    names = ", ".join(
        f"{t['value']} ({t['description']})" if t.get("description") else str(t["value"]) for t in missing
    )
    raise ConfigError(
        f"task {state.get('task_id', '')} needs the task variable(s) {names}; received "
        f"{', '.join(sorted(variables)) or 'none'}; pass --var NAME=VALUE for each (nothing was staked)",
        missing=[t["value"] for t in missing],
    )
