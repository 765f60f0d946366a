"""The node's side of a task child: start it, run phases in it, stop it.

``TaskProcess`` keeps one long-lived child (``python -m pykoii.node.worker``) for one task:

- started under bubblewrap (``isolation.py``; through ``jail.py`` with the task's cgroups and own
  uid when the node is root), with an environment of only ``PATH``; the task variables reach the
  child in its ``init`` message, never a key or a wallet path;
- routes are served by the child on a unix socket the node creates and passes as a file
  descriptor, so the node can proxy ``/task/<id>/...`` to it;
- a watch every ``watch_every`` seconds stops the whole task when it is over a limit (cgroup
  counters, or the sandbox's process count and memory; the work folder's size) and says why;
- a phase that overruns ``timeout`` is stopped (SIGTERM, ``grace`` seconds, SIGKILL) and raised as
  ``TaskCodeError``; a child that dies or breaks the protocol raises ``TaskCodeError`` (with the tail
  of its stderr, or the limit that killed it) or ``SandboxError`` (not the author's fault); the node
  catches both, logs them to the task log, records a node event and restarts the child with backoff;
- stopped, nothing of the task is left: its processes are killed and its cgroups removed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PykoiiError, SandboxError, TaskCodeError
from . import isolation as iso
from . import limits as lim
from . import protocol

LedgerReads = Callable[[str, list[Any]], Awaitable[Any]]
"""How the node answers a child's ledger read: ``(method, params) -> JSON value``."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one task, for the task child and everything it forks. Each is a ``node run`` option."""

    memory_bytes: int = 1 << 30
    """Memory of the whole task (``--task-memory-mb``): a cgroup limit, or RLIMIT_AS and the watch."""
    processes: int = 256
    """Processes and threads of the whole task (``--task-processes``): ``pids.max`` and RLIMIT_NPROC."""
    cpus: float = 1.0
    """CPU cores the task may use at once (``--task-cpus``; cgroup CPU quota, root only)."""
    disk_bytes: int = 64 << 20
    """Floor of the task's disk limit (``--task-disk-mb``); a task whose ``space`` asks more gets that."""
    cpu_seconds: int = 3600
    """RLIMIT_CPU: CPU seconds of one process; past it the child is killed and restarted."""
    open_files: int = 256
    """RLIMIT_NOFILE."""
    phase_timeout: float = 60.0
    """Seconds a phase may run before it is stopped (``--phase-timeout``)."""
    grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL."""
    start_timeout: float = 30.0
    """Seconds a child may take to start and import the task code."""
    isolation: str = iso.BUBBLEWRAP
    """``bubblewrap`` (the default; refuses to run task code when it cannot isolate) or ``none``."""
    watch_every: float = 0.5
    """Seconds between two looks at the task's usage (limit hits, disk)."""


@dataclass(frozen=True)
class PhaseResult:
    """What one phase returned."""

    phase: str
    round: int
    value: Any
    seconds: float


@dataclass
class TaskProcess:
    """One task's child process. Use ``start``, then ``run_phase`` as often as needed, then ``stop``."""

    task_id: str
    code_dir: Path
    work_dir: Path
    public_key: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    hide: Sequence[str] = ()
    """Paths the child must not see (the node's data folder, home, wallet file)."""
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    ledger_reads: LedgerReads | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("pykoii.task"))
    socket_dir: Path | None = None
    space_bytes: int = 0
    """The task's own ``space`` (config-task.yml); the disk limit is the larger of it and the floor."""
    cgroup_name: str = ""
    """Name of the task's cgroups (unique per node and task); default derived from the work folder."""
    on_event: Callable[[str, str], None] | None = None
    """Called with ``(kind, detail)`` for the node's record of the task: start, exit, limit."""
    site_packages: str = ""  # the task's own environment (``taskenv.py``), read-only, on its path

    def __post_init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.isolation = iso.NONE
        self.limits_kind = lim.RLIMITS
        self.limit_hit = ""  # why the node stopped the child: a limit, a phase overrun (or "")
        self.cgroups: lim.Cgroups | None = None
        self._counters: dict[str, int] = {}
        self._watch: asyncio.Task[None] | None = None
        self._reported: asyncio.subprocess.Process | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._next_id = 0
        self._readers: list[asyncio.Task[None]] = []
        self._phase_lock = asyncio.Lock()
        self._work_lock = asyncio.Lock()  # ``task`` runs on its own lane (``schedule.waits_for_work``)
        self._listener: socket.socket | None = None
        self._own_socket_dir = False

    # -- life cycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the child is up and has not exited."""
        return self.process is not None and self.process.returncode is None

    @property
    def socket_path(self) -> str:
        """The unix socket the task's routes answer on."""
        if self.socket_dir is None:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="pykoii-"))
            self._own_socket_dir = True
        digest = hashlib.sha256(self.task_id.encode()).hexdigest()[:16]
        return str(self.socket_dir / f"{digest}.sock")

    @property
    def disk_limit(self) -> int:
        """Bytes the task may keep in its work folder (and in each of its ``/tmp``, ``/dev/shm``)."""
        return max(self.limits.disk_bytes, self.space_bytes)

    async def start(self) -> None:
        """Start the child in its sandbox and wait until it has imported the task code."""
        if self.running:
            return
        self.stderr_tail.clear()
        self.limit_hit = ""
        command = self._command()
        self._listen()
        assert self._listener is not None
        try:
            self.process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(self.work_dir),
                env=iso.child_environment(),
                start_new_session=True,
                pass_fds=(self._listener.fileno(),),
                limit=protocol.MAX_LINE,
            )
        except OSError as exc:
            raise SandboxError(
                f"could not start the task child for {self.task_id}: {exc}", task_id=self.task_id
            ) from exc
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._readers = [loop.create_task(self._read_stdout()), loop.create_task(self._read_stderr())]
        self._send(
            {
                "kind": "init",
                "task_id": self.task_id,
                "code": str(self.code_dir),
                "public_key": self.public_key,
                "variables": dict(self.variables),
                "listen_fd": self._listener.fileno(),
                "sandbox": self._plan(),
                "site": self.site_packages,
            }
        )
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), self.limits.start_timeout)
        except TimeoutError:
            await self.terminate()
            raise TaskCodeError(
                f"task {self.task_id}: the child did not become ready within {self.limits.start_timeout} s "
                f"(importing the task code took too long?); last stderr lines:\n{self.tail()}",
                task_id=self.task_id,
            ) from None
        except _ChildExited:
            await self.terminate()
            raise TaskCodeError(
                f"task {self.task_id}: the child exited while starting ({self.exit_reason()}); "
                f"last stderr lines:\n{self.tail()}",
                task_id=self.task_id,
            ) from None
        if not ready.get("ok"):
            await self.terminate()
            error_class = SandboxError if ready.get("error_type") == "SandboxError" else TaskCodeError
            raise error_class(
                f"task {self.task_id} could not start: {ready.get('error')}\n"
                f"{_last_lines(ready.get('traceback', ''))}",
                task_id=self.task_id,
            )
        self._watch = loop.create_task(self._watch_limits())
        assert self.process is not None
        self._event(
            "start",
            f"pid {self.process.pid}, isolation {self.isolation}, limits {self.limits_kind}"
            f" (memory {self.limits.memory_bytes >> 20} MiB, {self.limits.processes} processes,"
            f" disk {self.disk_limit >> 20} MiB)",
        )
        if self.isolation == iso.NONE:
            self.log.warning(
                "task child runs WITHOUT isolation (--isolation none): it can read and change "
                "whatever the node's user can"
            )

    def _command(self) -> list[str]:
        """The command that starts the child: bubblewrap (through ``jail.py`` when root), or bare."""
        worker = [sys.executable, "-m", "pykoii.node.worker"]
        root = os.geteuid() == 0
        self.isolation = self.limits.isolation
        if self.isolation not in iso.LEVELS:
            raise SandboxError(
                f"isolation {self.isolation!r} is not one of {', '.join(iso.LEVELS)}", task_id=self.task_id
            )
        uid = iso.task_uid(self.work_dir, f"{self.work_dir}") if root else None
        if self.isolation == iso.NONE:
            iso.prepare_work_dir(self.work_dir, None)
            self.limits_kind = lim.RLIMITS
            return worker
        iso.require_isolation(self.task_id)
        iso.prepare_work_dir(self.work_dir, uid)
        python = [*iso.python_paths(), *([self.site_packages] if self.site_packages else [])]
        command = (
            iso.bwrap_args(
                work_dir=self.work_dir,
                code_dir=self.code_dir,
                hide=self.hide,
                keep=python,
                tmp_bytes=self.disk_limit,
            )
            + worker
        )
        if not root:
            self.limits_kind = lim.RLIMITS
            return command
        self.limits_kind = lim.limits_kind()
        procs: list[str] = []
        if self.limits_kind == lim.CGROUPS:
            name = (
                self.cgroup_name or "pykoii-" + hashlib.sha256(str(self.work_dir).encode()).hexdigest()[:16]
            )
            self.cgroups = lim.Cgroups(name)
            try:
                procs = self.cgroups.create(self.limits.memory_bytes, self.limits.processes, self.limits.cpus)
            except OSError as exc:
                raise SandboxError(f"task {self.task_id}: cannot set up its cgroups: {exc}") from exc
            self._counters = self.cgroups.counters()
        needed = [*python, str(self.code_dir), str(self.work_dir)]
        plan = {
            "uid": uid,
            "cgroups": procs,
            "cover": iso.private_ancestors(needed),
            "keep": [*python, str(self.code_dir)],
            "keep_rw": [str(self.work_dir)],
        }
        return iso.jail_command(plan, command)

    async def stop(self) -> None:
        """Ask the child to finish; stop it by signal if it does not within ``grace``."""
        if self.running:
            with contextlib.suppress(OSError, RuntimeError):
                self._send({"kind": "stop"})
        await self.terminate()

    async def terminate(self) -> None:
        """SIGTERM the child's process group, wait ``grace`` seconds, then SIGKILL it; then kill
        whatever is left in the task's cgroups and remove them. Nothing of the task survives this."""
        process = self.process
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if process is not None and process.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 0.5)
            if process.returncode is None:
                self._signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), self.limits.grace)
                except TimeoutError:
                    self.log.warning(
                        "task child did not exit %s s after SIGTERM; sending SIGKILL "
                        "(raise --grace to give it longer)",
                        self.limits.grace,
                    )
                    self._signal(signal.SIGKILL)
                    await process.wait()
        if self.cgroups is not None and (killed := await asyncio.to_thread(self.cgroups.kill)):
            self.log.warning("killed %d process(es) the task left behind", killed)
        if process is not None and process is not self._reported:
            self._reported = process
            self._event("exit", self.exit_reason())
        if self.cgroups is not None:  # once exit_reason has read the kernel's counters in them
            await asyncio.to_thread(self.cgroups.remove)
        for reader in self._readers:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(reader, 2.0)
        self._readers = []
        self._fail_pending()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
        if self._own_socket_dir and self.socket_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.socket_dir)
            self.socket_dir = None
            self._own_socket_dir = False

    # -- phases ---------------------------------------------------------------------------------

    async def run_phase(
        self,
        phase: str,
        round_number: int,
        slot: int = 0,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> PhaseResult:
        """Run one phase in the child and return its value.

        Raises ``TaskCodeError`` when the task code fails, overruns ``timeout`` (the child is then
        stopped) or kills its process; ``SandboxError`` when the child is not running or broke the
        protocol.
        """
        timeout = self.limits.phase_timeout if timeout is None else timeout
        async with self._work_lock if phase == "task" else self._phase_lock:
            if not self.running:
                raise SandboxError(f"task {self.task_id}: the child is not running", task_id=self.task_id)
            self._next_id += 1
            request_id = self._next_id
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            started = time.perf_counter()
            self._send(
                {
                    "kind": "run",
                    "id": request_id,
                    "phase": phase,
                    "context": {"round": round_number, "slot": slot},
                    "args": dict(args or {}),
                }
            )
            try:
                result = await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                self._pending.pop(request_id, None)
                self.limit_hit = f"phase {phase} of round {round_number} ran over its {timeout:g} s limit"
                await self.terminate()
                raise TaskCodeError(
                    f"task {self.task_id}: phase {phase} of round {round_number} ran over its {timeout:g} s "
                    f"limit; the child was stopped (SIGTERM, then SIGKILL after {self.limits.grace:g} s) "
                    "and will be restarted. Raise --phase-timeout if the task needs longer.",
                    task_id=self.task_id,
                    phase=phase,
                    round=round_number,
                    timeout=timeout,
                ) from None
            except _ChildExited:
                await self.terminate()
                raise TaskCodeError(
                    f"task {self.task_id}: the child died during phase {phase} of round {round_number} "
                    f"({self.exit_reason()}); last stderr lines:\n{self.tail()}",
                    task_id=self.task_id,
                    phase=phase,
                    round=round_number,
                    returncode=self._returncode(),
                ) from None
        seconds = time.perf_counter() - started
        if not result.get("ok"):
            error_class = SandboxError if result.get("error_type") == "SandboxError" else TaskCodeError
            raise error_class(
                f"task {self.task_id}: phase {phase} of round {round_number} failed: {result.get('error')}\n"
                f"{_last_lines(result.get('traceback', ''))}",
                task_id=self.task_id,
                phase=phase,
                round=round_number,
            )
        return PhaseResult(phase=phase, round=round_number, value=result.get("value"), seconds=seconds)

    def tail(self, lines: int = 20) -> str:
        """The last lines the child wrote on stderr."""
        return "\n".join(list(self.stderr_tail)[-lines:]) or "(nothing on stderr)"

    # -- plumbing -------------------------------------------------------------------------------

    def _plan(self) -> dict[str, Any]:
        return {
            "isolation": self.isolation,
            "memory_bytes": self.limits.memory_bytes if self.limits_kind == lim.RLIMITS else 0,
            "processes": self.limits.processes,
            "file_bytes": self.disk_limit,
            "cpu_seconds": self.limits.cpu_seconds,
            "open_files": self.limits.open_files,
        }

    def _event(self, kind: str, detail: str) -> None:
        if self.on_event is not None:
            self.on_event(kind, detail)

    def _over_limit(self, disk_due: bool) -> str:
        """Why the task is over one of its limits right now (empty when it is not)."""
        why = lim.over_limit(
            cgroups=self.cgroups,
            before=self._counters,
            pid=self.process.pid if self.process is not None and self.isolation != iso.NONE else None,
            memory=self.limits.memory_bytes,
            processes=self.limits.processes,
        )
        if not why and disk_due:
            used = lim.disk_usage(self.work_dir)
            if used > self.disk_limit:
                why = (
                    f"disk limit: the work folder holds {used >> 20} MiB (limit {self.disk_limit >> 20} MiB)"
                )
        return why

    async def _watch_limits(self) -> None:
        """Every ``watch_every`` seconds: over a limit, record why and kill the whole task."""
        looks = 0
        while self.running:
            await asyncio.sleep(self.limits.watch_every)
            looks += 1
            disk_due = looks % max(1, int(2.0 / self.limits.watch_every)) == 0
            why = await asyncio.to_thread(self._over_limit, disk_due)
            if why and self.running:
                self.limit_hit = why
                self._event("limit", why)
                self.log.error("stopping the task: %s", why)
                self._signal(signal.SIGKILL)
                if self.cgroups is not None:
                    await asyncio.to_thread(self.cgroups.kill)
                return

    def _listen(self) -> None:
        path = self.socket_path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(128)
        listener.set_inheritable(True)
        self._listener = listener

    def _send(self, message: dict[str, Any]) -> None:
        if self.process is None or self.process.stdin is None or self.process.stdin.is_closing():
            raise SandboxError(f"task {self.task_id}: the child's input is closed", task_id=self.task_id)
        self.process.stdin.write(protocol.encode(message))

    def _signal(self, signum: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        stdout = self.process.stdout
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                try:
                    message = protocol.decode(line)
                except PykoiiError as exc:
                    self.log.error("%s", exc)
                    continue
                self._dispatch(message)
                await asyncio.sleep(0)  # readline() of buffered lines never yields: a log flood held the loop
        except (ValueError, asyncio.LimitOverrunError) as exc:
            self.log.error("task child broke the protocol: %s", exc)
            self._signal(signal.SIGKILL)
        finally:
            self._fail_pending()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        if kind == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(message)
        elif kind == "result":
            future = self._pending.pop(int(message.get("id", -1)), None)
            if future is not None and not future.done():
                future.set_result(message)
        elif kind == "request":
            asyncio.get_running_loop().create_task(self._answer(message))
        elif kind == "log":
            level = logging.getLevelName(str(message.get("level", "INFO")))
            self.log.log(level if isinstance(level, int) else logging.INFO, "%s", message.get("message", ""))

    async def _answer(self, message: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"kind": "reply", "id": message.get("id")}
        try:
            if self.ledger_reads is None:
                raise SandboxError("this node answers no ledger reads")
            reply.update(
                ok=True,
                value=await self.ledger_reads(str(message.get("method")), list(message.get("params", []))),
            )
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the child
            reply.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(PykoiiError, RuntimeError, OSError):
            self._send(reply)

    async def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        stderr = self.process.stderr
        while True:
            try:
                line = await stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                break
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail.append(text)
            self.log.log(logging.ERROR if "error" in text.lower() else logging.WARNING, "%s", text)
            await asyncio.sleep(0)  # as in _read_stdout

    def _fail_pending(self) -> None:
        for future in [*self._pending.values(), self._ready]:
            if future is not None and not future.done():
                future.set_exception(_ChildExited())
                future.exception()  # mark retrieved
        self._pending.clear()

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def exit_reason(self) -> str:
        """How the child ended: its exit code or signal, or the limit that stopped it."""
        code = self._returncode()
        if code is None:
            return "still running"
        if not self.limit_hit and self.cgroups is not None:
            why = self._over_limit(disk_due=False)  # the kernel may have struck before the watch looked
            if why:
                self.limit_hit = why
                self._event("limit", why)
        return self.limit_hit or lim.describe_exit(code, sandboxed=self.isolation != iso.NONE)


class _ChildExited(Exception):
    """The child's output closed while something waited for it."""


def _last_lines(text: str, count: int = 12) -> str:
    return "\n".join(text.rstrip().splitlines()[-count:])


async def run_task_code(
    entry: str | Path,
    phase: str,
    ctx: Mapping[str, Any],
    *,
    timeout: float,
    grace: float = 5.0,
    args: Mapping[str, Any] | None = None,
    work_dir: str | Path | None = None,
) -> PhaseResult:
    """Run one phase of the task at ``entry`` in a fresh sandboxed child, then stop it.

    ``ctx`` gives ``round``, ``slot``, ``task_id`` and ``public_key``. For a long-lived child use
    ``TaskProcess``; this is the one-shot form, for tools and tests.
    """
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="pykoii-task-"))
    process = TaskProcess(
        task_id=str(ctx.get("task_id", "local")),
        code_dir=Path(entry).resolve(),
        work_dir=work,
        public_key=str(ctx.get("public_key", "")),
        limits=SandboxLimits(phase_timeout=timeout, grace=grace),
    )
    await process.start()
    try:
        return await process.run_phase(phase, int(ctx.get("round", 0)), int(ctx.get("slot", 0)), args)
    finally:
        await process.stop()
