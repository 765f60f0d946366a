"""The node: runs the tasks its operator added, round after round, and serves port 30017.

``Node(config, client=..., clock=...)`` holds

- the operator's **main wallet** (``--wallet``; pays for stakes, receives claims) and a separate
  **staking key**, created on first run in ``<data>/keys/staking_wallet.json`` as Koii's node does:
  it signs stakes, submissions, votes, distribution lists and payouts;
- a **journal** (``journal.py``) of its tasks and of every transaction it sent, written before and
  after each send, so a restarted node never submits twice for a round;
- one **sandboxed child** per running task (``sandbox.py``), restarted with backoff when it dies.

Each task has its own loop on the injected ``Clock``: read the slot and the task's state from the
ledger, ask ``schedule.due_actions`` what is due, run the needed phase in the child, sign with the
staking key and send. The node's own round logic is only that executor: *what* is due and *how to
vote* come from ``schedule.py``, shared with the simulator.

Koii's phase model: ``task(R)`` runs on its own lane beside the loop (``lanes.py``), and a phase
that ends after its window closed is logged with its numbers.

Data folder (``--data``, default ``~/.pykoii/node``)::

    keys/                   0700: staking_wallet.json (and main_wallet.json if the node made it)
    node.sqlite3            the journal (tasks, actions)
    operator.token          0600: the operator secret (dashboard login link, `pykoii node …` CLI)
    operator.json           0600: the operator port's URL, written by `node run`, read by the CLI
    executables/<cid>/      unpacked task code (read-only for the child)
    tasks/<task_id>/        the child's own folder: store.sqlite3, anything the task writes
    logs/node.log           the node's log; logs/<task_id>.log the task's log (rotating)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import logging.handlers
import os
import time
from pathlib import Path
from typing import Any

from .. import taskenv
from ..clock import Clock, SystemClock
from ..config import roe_to_koii
from ..dashboard.security import load_secret
from ..errors import ConfigError, KeyFileError, PykoiiError, SandboxError, TaskCodeError
from ..keys import Keypair
from ..ledger.rounds import round_of
from ..packaging import extract_archive, verify_cid
from . import schedule
from .answers import child_answers
from .control import OPERATOR_FILE
from .history import RewardHistory
from .journal import Journal, TaskRecord
from .lanes import WorkLane
from .ledger_access import NodeLedger
from .limits import space_bytes
from .masking import Masker
from .model import FLAG_AFTER_ROUNDS, LOCAL_CODE, NodeConfig, TaskRuntime, log
from .operations import NodeActions
from .sandbox import TaskProcess

__all__ = ["FLAG_AFTER_ROUNDS", "LOCAL_CODE", "Node", "NodeConfig", "TaskRuntime"]


class Node(WorkLane, NodeActions):
    """One node: keys, journal, and one loop per task. ``pykoii.node.app.serve(node)`` serves its
    public and operator ports and runs the loops; ``start()``/``close()`` run them without HTTP."""

    def __init__(
        self, config: NodeConfig, *, client: Any = None, transport: Any = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.ledger = NodeLedger(config.ledger_url, client=client, transport=transport)
        self.data_dir = config.data_dir.resolve()
        for folder in ("keys", "executables", "tasks", "logs"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir / "keys", 0o700)
        self.wallet = self._load_or_create(config.wallet_path or self.data_dir / "keys" / "main_wallet.json")
        self.staking = self._load_or_create(self.data_dir / "keys" / "staking_wallet.json")
        self.ledger.key = self.staking.public_key  # whose part of each task the node reads
        self.journal = Journal(self.data_dir / "node.sqlite3")
        self.history = RewardHistory(self.ledger.client, self.staking.public_key, self.journal)
        """What the staking key earned and lost per round (the dashboard shows it), read as payouts
        are seen."""
        self.operator_secret = load_secret(self.data_dir)
        self.tasks: dict[str, TaskRuntime] = {}
        self.slot = -1
        self._slot_read_at = self.clock.now()
        self._socket_dir: Path | None = None
        self._node_tag = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:10]
        self._setup_node_log()

    # -- keys and logs --------------------------------------------------------------------------

    @staticmethod
    def _load_or_create(path: Path) -> Keypair:
        try:
            return Keypair.load(path)
        except KeyFileError:
            if path.exists():
                raise
            log.info("creating keypair %s", path)
            keypair = Keypair.generate()
            keypair.save(path)
            return keypair

    def _setup_node_log(self) -> None:
        handler = logging.handlers.RotatingFileHandler(
            self.data_dir / "logs" / "node.log", maxBytes=5 * 1024 * 1024, backupCount=3
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._node_log_handler = handler

    def _runtime(self, record: TaskRecord) -> TaskRuntime:
        """The task's runtime, with its log (task variables masked) set up."""
        runtime = self.tasks.get(record.task_id)
        if runtime is None:
            masker = Masker(record.variables)
            runtime = self.tasks[record.task_id] = TaskRuntime(
                record=record, logger=self._task_logger(record.task_id, masker), masker=masker
            )
        runtime.record = record
        runtime.masker.update(record.variables)
        return runtime

    def _task_logger(self, task_id: str, masker: Masker) -> logging.Logger:
        logger = logging.getLogger(f"pykoii.node.task.{self.data_dir}.{task_id}")
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
        handler = logging.handlers.RotatingFileHandler(
            self._task_log_path(task_id), maxBytes=5 * 1024 * 1024, backupCount=3
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.addFilter(masker)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        return logger

    def _event(self, runtime: TaskRuntime, kind: str, detail: str) -> None:
        """Record a node event of the task (masked), apart from the task's own log."""
        detail = runtime.masker.mask(detail)
        self.journal.event(runtime.record.task_id, kind, detail, time.time())
        runtime.logger.info("node event %s: %s", kind, detail)

    def _fail(self, runtime: TaskRuntime, error: str) -> None:
        """Say why the task failed last; not the ledger's fault unless the caller says so after
        (``ledger_error``: a later error of the task is not cleared when the ledger answers)."""
        runtime.last_error = runtime.masker.mask(error)
        runtime.ledger_error = False

    def _task_log_path(self, task_id: str) -> Path:
        return self.data_dir / "logs" / f"{_safe(task_id)}.log"

    # -- public reads (the HTTP app) ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "main_account": self.wallet.public_key,
            "staking_key": self.staking.public_key,
            "ledger": self.config.ledger_url,
            "slot": self.slot,
            "tasks": len(self.tasks),
        }

    def task_list(self) -> list[dict[str, Any]]:
        return [self._summary(rt) for rt in self.tasks.values()]

    def task_info(self, task_id: str) -> dict[str, Any] | None:
        runtime = self.tasks.get(task_id)
        if runtime is None:
            return None
        recent = self.journal.actions(task_id)[-30:]
        return {
            **self._summary(runtime),
            "stake": runtime.record.stake,
            "variables": sorted(runtime.record.variables),
            "events": self.journal.events(task_id, 50),
            "actions": [
                {
                    "kind": a.kind,
                    "round": a.round,
                    "candidate": a.candidate,
                    "status": a.status,
                    "error": a.error,
                    "slot": a.slot,
                }
                for a in recent
            ],
        }

    def _summary(self, runtime: TaskRuntime) -> dict[str, Any]:
        return {
            "TaskName": runtime.state.get("task_name", ""),
            "TaskID": runtime.record.task_id,
            "status": runtime.status,
            "running": runtime.process is not None and runtime.process.running,
            "flagged": runtime.flagged,
            "isolation": runtime.process.isolation if runtime.process else self.config.limits.isolation,
            "limits": runtime.process.limits_kind if runtime.process else "",
            "last_limit": runtime.process.limit_hit if runtime.process else "",
            "restarts": runtime.restarts,
            "round": runtime.current_round,
            "last_submitted_round": runtime.last_submitted_round,
            "last_error": runtime.last_error,
            "code_cid": runtime.record.code_cid,
            "migrated_to": runtime.migrated_to,
        }

    def task_socket(self, task_id: str) -> str | None:
        runtime = self.tasks.get(task_id)
        if runtime is None or runtime.process is None or not runtime.process.running:
            return None
        return runtime.process.socket_path

    def task_log_tail(self, task_id: str, lines: int) -> str | None:
        if task_id not in self.tasks and self.journal.task(task_id) is None:
            return None
        path = self._task_log_path(task_id)
        if not path.exists():
            return ""
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - lines * 400))
            text = handle.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) + "\n"

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every task the journal says should run; for the others (stopped, or removed
        before the proofs they sent were revealed), reveal what a previous run sent."""
        for record in self.journal.tasks():
            if record.enabled:
                await self._launch(record)
            else:
                runtime = self._runtime(record)
                runtime.status = "removing" if record.removed else "stopped"
                runtime.reveals = asyncio.get_running_loop().create_task(self._reveals_after_stop(runtime))

    def public_base_url(self) -> str:
        """The public port's URL (what is registered with stakes)."""
        return self.config.public_url or f"http://{self.config.host}:{self.config.port}"

    def operator_url(self) -> str:
        return f"http://127.0.0.1:{self.config.dashboard_port}"

    def login_link(self) -> str:
        """The link that logs a browser in to the dashboard (it holds the operator secret)."""
        return f"{self.operator_url()}/login?token={self.operator_secret}"

    def publish(self, public_port: int, operator_port: int) -> None:
        """Write ``<data>/operator.json`` (0600): the operator URL, the public URL and the node's
        public keys, how ``pykoii node …`` and ``pykoii claim`` find this node from its ``--data``."""
        self.config.port, self.config.dashboard_port = public_port, operator_port
        info = {
            "url": self.operator_url(),
            "public_url": self.public_base_url(),
            "main_account": self.wallet.public_key,
            "staking_key": self.staking.public_key,
        }
        path = self.data_dir / OPERATOR_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(info, handle)

    async def close(self) -> None:
        for task_id in list(self.tasks):
            await self._halt(task_id, status=None)
        self.journal.close()
        self.ledger.close()
        log.removeHandler(self._node_log_handler)
        self._node_log_handler.close()

    async def _launch(self, record: TaskRecord) -> None:
        runtime = self._runtime(record)
        if runtime.status in ("stopped", "removing"):
            await self._halt(record.task_id, status=None)  # only its reveals after a stop ran
        if runtime.loop is not None and not runtime.loop.done():
            return
        runtime.status = "starting"
        runtime.loop = asyncio.get_running_loop().create_task(self._task_loop(runtime))

    async def _halt(self, task_id: str, status: str | None = "stopped") -> None:
        runtime = self.tasks.get(task_id)
        if runtime is None:
            return
        for job in (runtime.loop, runtime.work, runtime.reveals):
            if job is not None:
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job
        runtime.loop = runtime.work = runtime.reveals = None
        runtime.working = None
        if runtime.process is not None:
            await runtime.process.stop()
        if status is not None:
            runtime.status = status

    # -- the per-task loop ---------------------------------------------------------------------------

    async def _task_loop(self, runtime: TaskRuntime) -> None:
        task_id = runtime.record.task_id
        while True:
            try:
                process = runtime.process
                if process is not None and not process.running:
                    if runtime.work is not None and not runtime.work.done():
                        # The work lane's phase saw the exit (its overrun stops the child; or the
                        # child died in it): let it say why, rather than "outside a phase". It ends
                        # within the phase's limit and the stop's grace.
                        limits = self.config.limits
                        await asyncio.wait([runtime.work], timeout=limits.phase_timeout + limits.grace + 5)
                    if runtime.status == "running":  # it died outside any phase: nobody said why yet
                        await process.terminate()  # records the exit as a node event
                        self._fail(
                            runtime,
                            f"task {task_id}: the child exited outside a phase ({process.exit_reason()}); "
                            f"last stderr lines:\n{process.tail()}",
                        )
                        runtime.logger.error("%s", runtime.last_error)
                    await self._backoff(runtime)  # it died (in a phase here or on the work lane)
                if runtime.process is None or not runtime.process.running:
                    await self._reveal_due(runtime)  # before the seconds a child takes to start
                    await self._start_child(runtime)
                await self._tick(runtime)
                if runtime.ledger_error:  # the ledger answers again: the error is over
                    runtime.logger.info("the ledger answers again")
                    runtime.last_error, runtime.ledger_error = "", False
                if runtime.migrated_to:
                    await self._migrated(runtime)
                    return
                if (
                    runtime.process is not None
                    and runtime.process.running
                    and runtime.started_at
                    and self.clock.now() - runtime.started_at > self.config.stable_after
                ):
                    runtime.backoff = 0.0
            except asyncio.CancelledError:
                raise
            except (TaskCodeError, SandboxError, ConfigError) as exc:  # ConfigError: requirements
                self._fail(runtime, str(exc))
                runtime.logger.error("%s: %s", exc.name, exc)
                log.error("task %s: %s: %s", task_id, exc.name, runtime.last_error.splitlines()[0])
                if runtime.process is None or not runtime.process.running:
                    runtime.status = "failed"  # said why: back off, then restart, at the top
                    continue
            except PykoiiError as exc:  # the ledger is away or refused a read: try again next tick
                self._fail(runtime, str(exc))
                runtime.ledger_error = True
                runtime.logger.warning("%s: %s", exc.name, exc)
            except Exception as exc:  # noqa: BLE001 - a node bug must not stop the other tasks
                self._fail(runtime, f"{type(exc).__name__}: {exc}")
                log.error("task %s: unexpected error: %s", task_id, runtime.last_error)
            await self.clock.sleep_until(self.clock.now() + self.config.poll_interval)

    async def _backoff(self, runtime: TaskRuntime) -> None:
        runtime.status = "backoff"
        runtime.backoff = min(max(runtime.backoff * 2, self.config.restart_backoff), self.config.max_backoff)
        runtime.logger.warning("restarting the task child in %.1f s", runtime.backoff)
        cause = runtime.last_error.splitlines()[0] if runtime.last_error else "the child is not running"
        self._event(runtime, "restart", f"in {runtime.backoff:.1f} s, after: {cause}")
        await self.clock.sleep_until(self.clock.now() + runtime.backoff)

    async def _start_child(self, runtime: TaskRuntime) -> None:
        record = runtime.record
        if runtime.process is not None:
            runtime.restarts += 1
            await runtime.process.terminate()
        runtime.status = "starting"
        code_dir = await self._ensure_code(record.code_cid)
        hide = [str(self.data_dir), str(Path.home())]
        if self.config.wallet_path is not None:
            hide.append(str(Path(self.config.wallet_path).resolve()))
        if self._socket_dir is None:
            import tempfile

            self._socket_dir = Path(tempfile.mkdtemp(prefix="pykoii-node-"))
        runtime.process = TaskProcess(
            space_bytes=space_bytes(code_dir),
            cgroup_name=f"pykoii-{self._node_tag}-{_safe(record.task_id)}"[:100],
            on_event=lambda kind, detail: self._event(runtime, kind, detail),
            task_id=record.task_id,
            code_dir=code_dir,
            work_dir=self.data_dir / "tasks" / _safe(record.task_id),
            public_key=self.staking.public_key,
            variables=record.variables,
            hide=hide,
            limits=self.config.limits,
            ledger_reads=child_answers(self, record.task_id),
            log=runtime.logger,
            socket_dir=self._socket_dir,
            site_packages=await self._environment(code_dir),
        )
        await runtime.process.start()
        runtime.started_at = self.clock.now()
        runtime.status = "running"
        pid = runtime.process.process.pid if runtime.process.process else "?"
        runtime.logger.info("task child started (pid %s, isolation %s)", pid, runtime.process.isolation)
        await runtime.process.run_phase("setup", max(runtime.current_round, 0), max(self.slot, 0))

    # -- one tick ----------------------------------------------------------------------------------

    async def _tick(self, runtime: TaskRuntime) -> None:
        task_id = runtime.record.task_id
        await self._resend_pending(runtime)
        self.slot = await self.ledger.slot()
        self._slot_read_at = self.clock.now()
        state, facts = await self.ledger.key_facts(task_id)
        runtime.state = state
        runtime.reads.clear()
        if self.history.unread(task_id, state):  # a payout not seen yet: the key's one entry of it
            await asyncio.to_thread(self.history.update, task_id, state)
        if state.get("is_migrated") and state.get("migrated_to"):
            runtime.migrated_to = str(state["migrated_to"])
            return
        task = schedule.as_task_state(state)
        current = round_of(task, self.slot)
        runtime.current_round = current
        if runtime.first_round is None:
            runtime.first_round = current
        self._watchdog(runtime, task, current)
        record = schedule.NodeRecord.from_json(self.journal.load_record(task_id))
        await self._run_due(
            runtime,
            task,
            record,
            schedule.due_actions(task, self.slot, record, self.staking.public_key, facts),
        )
        if current > 8 and current % 4 == 0:
            record.prune(current - 6)
            self.journal.save_record(task_id, record.to_json())
            self.journal.prune(task_id, current - 6)

    def _watchdog(self, runtime: TaskRuntime, task: Any, current: int) -> None:
        me = self.staking.public_key
        last = task.last_submission_round.get(me)
        if last is not None:
            runtime.last_submitted_round = int(last)
        reference = (
            runtime.last_submitted_round
            if runtime.last_submitted_round is not None
            else (runtime.first_round if runtime.first_round is not None else current)
        )
        flagged = current - 1 - reference >= FLAG_AFTER_ROUNDS
        if flagged and not runtime.flagged:
            runtime.logger.warning(
                "no accepted submission for %d rounds (last: %s); the task is flagged",
                FLAG_AFTER_ROUNDS,
                runtime.last_submitted_round,
            )
        runtime.flagged = flagged
        self._watch_stake(runtime, task)

    def _watch_stake(self, runtime: TaskRuntime, task: Any) -> None:
        """Say in the task's log when the stake shrank (slashed) and when it fell below the minimum."""
        stake = int(task.stake_list.get(self.staking.public_key, 0))
        before, runtime.stake_seen = runtime.stake_seen, stake
        if before is None or stake >= before:
            return
        runtime.logger.warning(
            "slashed: the stake went from %s to %s KOII (-%s KOII)",
            roe_to_koii(before),
            roe_to_koii(stake),
            roe_to_koii(before - stake),
        )
        minimum = int(task.minimum_stake_amount)
        if stake < minimum:
            runtime.logger.warning(
                "stake below minimum: %s KOII < %s KOII; the ledger refuses this node's submissions "
                "until it stakes more (dashboard: Stake more)",
                roe_to_koii(stake),
                roe_to_koii(minimum),
            )

    # -- ledger plumbing --------------------------------------------------------------------------

    async def _environment(self, code_dir: Path) -> str:
        """The task's requirements.txt installed (``taskenv``, cached by its hash): its site-packages."""
        return await asyncio.to_thread(taskenv.environment_for, code_dir, self.data_dir / "venvs")

    async def _ensure_code(self, cid: str) -> Path:
        if cid.startswith(LOCAL_CODE):
            return Path(cid.removeprefix(LOCAL_CODE))
        folder = self.data_dir / "executables" / cid
        if (folder / "task.py").is_file():
            return folder
        data = await self.ledger.blob(cid)
        verify_cid(data, cid)
        extract_archive(data, folder)
        os.chmod(self.data_dir / "executables", 0o755)
        log.info("downloaded and verified task code %s (%d bytes)", cid, len(data))
        return folder


def _safe(task_id: str) -> str:
    return "".join(c for c in task_id if c.isalnum() or c in "-_")[:64] or "task"
