"""The node's side of a task child: start it, run phases in it, stop it.

``TaskProcess`` keeps one long-lived child (``python -m pykoii.node.worker``) for one task:

- started with ``sys.executable`` in the task's own folder, with an environment of only ``PATH``
  and the task variables, no key and no wallet path;
- the child sandboxes itself before importing task code (``isolation.py``): resource limits, a
  private mount namespace hiding the node's data folder, the operator's home and the wallet, and
  an unprivileged user;
- routes are served by the child on a unix socket the node creates and passes as a file
  descriptor, so the node can proxy ``/task/<id>/...`` to it;
- a phase that overruns ``timeout`` is stopped (SIGTERM, ``grace`` seconds, SIGKILL) and raised as
  ``TaskCodeError``; a child that dies or breaks the protocol raises ``TaskCodeError`` (with the tail
  of its stderr) or ``SandboxError`` (not the author's fault). The node catches both, logs them to
  the task log, and restarts the child with backoff.

>>> # result = await run_task_code("examples/hello_world", "submission", {"round": 3}, timeout=10)
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
from . import protocol

LedgerReads = Callable[[str, list[Any]], Awaitable[Any]]
"""How the node answers a child's ledger read: ``(method, params) -> JSON value``."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one task child. Each can be changed with a ``pykoii node run`` option."""

    memory_bytes: int = 1 << 30
    """RLIMIT_AS of the child (``--task-memory-mb``)."""
    cpu_seconds: int = 3600
    """RLIMIT_CPU: CPU seconds over the child's life; past it the child is killed and restarted."""
    open_files: int = 256
    """RLIMIT_NOFILE."""
    phase_timeout: float = 60.0
    """Seconds a phase may run before it is stopped (``--phase-timeout``)."""
    grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL."""
    start_timeout: float = 30.0
    """Seconds a child may take to sandbox itself and import the task code."""
    user: str = "nobody"
    """The unprivileged user a child runs as when the node runs as root."""
    isolation: str = "auto"
    """``auto`` (isolate when root), ``strict`` (refuse to run without isolation) or ``off``."""


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

    def __post_init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.isolation = "none"
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._next_id = 0
        self._readers: list[asyncio.Task[None]] = []
        self._phase_lock = asyncio.Lock()
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

    async def start(self) -> None:
        """Start the child and wait until it has sandboxed itself and imported the task code."""
        if self.running:
            return
        self.stderr_tail.clear()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_work_dir()
        self._listen()
        assert self._listener is not None
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(self.variables)}
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pykoii.node.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(self.work_dir),
                env=env,
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
                f"task {self.task_id}: the child exited while starting (code {self._returncode()}); "
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
        self.isolation = str(ready.get("isolation", "none"))
        if self.isolation == "none" and self.limits.isolation != "off":
            self.log.warning(
                "task child runs without isolation (the node is not root); it can read "
                "whatever the node's user can read"
            )

    async def stop(self) -> None:
        """Ask the child to finish; stop it by signal if it does not within ``grace``."""
        if self.running:
            with contextlib.suppress(OSError, RuntimeError):
                self._send({"kind": "stop"})
        await self.terminate()

    async def terminate(self) -> None:
        """SIGTERM the child's process group, wait ``grace`` seconds, then SIGKILL it."""
        process = self.process
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
        async with self._phase_lock:
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
                    f"({self._exit_reason()}); last stderr lines:\n{self.tail()}",
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
            "memory_bytes": self.limits.memory_bytes,
            "cpu_seconds": self.limits.cpu_seconds,
            "open_files": self.limits.open_files,
            "user": self.limits.user,
            "mode": self.limits.isolation,
            "hide": [p for p in self.hide if p not in ("", "/")],
            "keep": [str(self.code_dir)],
            "work_dir": str(self.work_dir),
        }

    def _prepare_work_dir(self) -> None:
        """Give the work folder to the unprivileged user the child will become."""
        if os.geteuid() != 0 or self.limits.isolation == "off":
            return
        import pwd

        user = self.limits.user
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        for root, dirs, files in os.walk(self.work_dir):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                with contextlib.suppress(OSError):
                    os.chown(name, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        os.chmod(self.work_dir, 0o700)

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

    def _fail_pending(self) -> None:
        for future in [*self._pending.values(), self._ready]:
            if future is not None and not future.done():
                future.set_exception(_ChildExited())
                future.exception()  # mark retrieved
        self._pending.clear()

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def _exit_reason(self) -> str:
        code = self._returncode()
        if code is None:
            return "still running"
        if code < 0:
            name = signal.Signals(-code).name
            hint = {
                "SIGXCPU": "it used up its CPU-time limit (--task-cpu-seconds)",
                "SIGKILL": "killed, perhaps by the memory limit (--task-memory-mb)",
            }.get(name, name)
            return f"signal {name}: {hint}"
        return f"exit code {code}"


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
