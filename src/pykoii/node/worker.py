"""The task child: ``python -m pykoii.node.worker``, one long-lived process per running task.

It runs inside the task's sandbox (see ``isolation.py``). It reads the node's ``init`` message, sets
its rlimits and the task variables as its environment (``limits.apply``), imports the author's
``Task``, serves the task's ``routes()`` on the listening unix socket the node passed it (uvicorn),
and then runs phases on request in two worker threads (``task`` on one, every other phase one at a
time on the other, Koii's phase model), so a slow phase never stops the routes or the other lane.
Ledger reads are sent to the node as requests; the key-value store is local (``store.py``).
See ``protocol.py`` for the messages.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import site
import socket
import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from ..errors import PykoiiError, SandboxError
from . import limits, protocol
from .store import SqliteStore


class Channel:
    """The child's end of the protocol: thread-safe writes, and blocking calls to the node."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self.reader, self.writer = reader, writer
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        with self._lock:
            self.writer.write(data)
            self.writer.flush()

    def call(self, method: str, *params: Any, timeout: float = 60.0) -> Any:
        """Ask the node for something and wait for its reply."""
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            future: Future[Any] = Future()
            self._pending[request_id] = future
        self.send({"kind": "request", "id": request_id, "method": method, "params": list(params)})
        return future.result(timeout)

    def resolve(self, message: dict[str, Any]) -> None:
        future = self._pending.pop(int(message["id"]), None)
        if future is None:
            return
        if message.get("ok"):
            future.set_result(message.get("value"))
        else:
            future.set_exception(SandboxError(f"the node could not answer: {message.get('error')}"))


class NodeLedger:
    """``sdk.LedgerReader`` answered by the node over the protocol."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def task_state(self) -> dict[str, Any]:
        return dict(self._channel.call("ledger.task_state"))

    def submissions(self, round_number: int) -> dict[str, dict[str, Any]]:
        return dict(self._channel.call("ledger.submissions", round_number))

    def audit_triggers(self, round_number: int) -> dict[str, dict[str, Any]]:
        return dict(self._channel.call("ledger.audit_triggers", round_number))

    def stakes(self) -> dict[str, int]:
        return dict(self._channel.call("ledger.stakes"))

    def node_urls(self) -> dict[str, str]:
        return dict(self._channel.call("ledger.node_urls"))


class NodeBlobs:
    """``sdk.BlobAccess`` through the node: the node puts and gets the ledger's blobs."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def put(self, data: bytes) -> str:
        from ..service.blobs import check_size

        data = bytes(data)
        check_size(data)
        return str(self._channel.call("node.blob_put", base64.b64encode(data).decode()))

    def get(self, cid: str) -> bytes:
        return base64.b64decode(self._channel.call("node.blob_get", str(cid)))


class ChannelLogHandler(logging.Handler):
    """Sends the task's log records to the node, which writes them to the task log."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.channel.send({"kind": "log", "level": record.levelname, "message": self.format(record)})
        except Exception:  # the pipe is gone: nothing left to tell
            pass


class Worker:
    """Runs phases of one task on behalf of the node."""

    def __init__(self, channel: Channel, init: dict[str, Any]) -> None:
        from ..sdk import RoundContext, load_task

        self.channel = channel
        self.task_id = str(init["task_id"])
        self.public_key = str(init.get("public_key", ""))
        self.variables = dict(init.get("variables", {}))
        self.store = SqliteStore(os.path.join(os.getcwd(), "store.sqlite3"))
        self.ledger = NodeLedger(channel)
        self.blobs = NodeBlobs(channel)
        self._slot_time: float | None = None
        self.log = logging.getLogger(f"pykoii.task.{self.task_id}")
        self.log.setLevel(logging.INFO)
        self.log.addHandler(ChannelLogHandler(channel))
        self.log.propagate = False
        if init.get("site"):  # the task's own environment (requirements.txt), before its code
            site.addsitedir(str(init["site"]))
        self.task = load_task(init["code"])
        self._RoundContext = RoundContext
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phase")
        self.work_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="work")
        """``task()`` runs here, so a slow one never holds up submission, audit or distribution."""

    def context(self, round_number: int, slot: int) -> Any:
        if self._slot_time is None:  # the ledger's slot length is fixed: ask once per child
            try:
                self._slot_time = float(self.channel.call("node.slot_time"))
            except SandboxError:  # a runner that answers no requests: Koii's fallback, 400 ms
                self._slot_time = 400.0
        return self._RoundContext(
            task_id=self.task_id,
            round=round_number,
            slot=slot,
            public_key=self.public_key,
            store=self.store,
            ledger=self.ledger,
            variables=self.variables,
            log=self.log,
            blobs=self.blobs,
            slot_time=self._slot_time,
            signer=self.sign,
        )

    def sign(self, data: bytes) -> str:
        """The node's signature of ``data`` under ``keys.PAYLOAD_DOMAIN`` (the node adds the prefix)."""
        return str(self.channel.call("node.sign", base64.b64encode(data).decode()))

    def run(self, message: dict[str, Any]) -> None:
        """Run one phase and send its ``result`` (called in the phase thread)."""
        from ..sdk import Submitter, as_distribution_list, invoke

        request_id = message["id"]
        phase = message.get("phase")
        try:
            if phase not in protocol.PHASES:
                raise SandboxError(f"unknown phase {phase!r}; accepted: {', '.join(protocol.PHASES)}")
            context = message.get("context", {})
            ctx = self.context(int(context.get("round", 0)), int(context.get("slot", 0)))
            args = message.get("args", {})
            method = getattr(self.task, phase)
            if phase == "audit":
                params: tuple[Any, ...] = (ctx, str(args["submission"]), str(args["submitter"]))
            elif phase == "distribution":
                submitters = [Submitter(**item) for item in args["submitters"]]
                params = (ctx, submitters, int(args["bounty"]))
            else:
                params = (ctx,)
            value = asyncio.run(invoke(method, *params))
            if phase == "distribution":
                listed = as_distribution_list(value)
                value = {"rewards": dict(listed.rewards), "slashes": dict(listed.slashes)}
            elif phase == "audit":
                value = bool(value)
            elif phase == "submission":
                value = None if value is None else str(value)  # None: skip the round
            else:
                value = None
            self.channel.send({"kind": "result", "id": request_id, "ok": True, "value": value})
        except BaseException as exc:  # noqa: BLE001 - every author failure is reported, none kills us
            kind = type(exc).__name__ if isinstance(exc, PykoiiError) else "TaskCodeError"
            self.channel.send(
                {
                    "kind": "result",
                    "id": request_id,
                    "ok": False,
                    "error_type": kind,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(limit=20),
                }
            )

    def serve_routes(self, listen_fd: int) -> None:
        """Serve the task's routes on the socket the node passed (in a background thread)."""
        import uvicorn

        app = task_app(self.task, self.task_id, self.store, self.ledger, self.variables)
        sock = socket.socket(fileno=listen_fd)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True, name="routes"
        )
        thread.start()


def task_app(task: Any, task_id: str, store: Any, ledger: Any, variables: Any) -> Any:
    """The Starlette app of a task's routes, as the node serves it under ``/task/<task_id>/``:
    ``routes()`` plus Koii's ``GET /`` and ``GET /id``; ``request.app.state`` has ``store``, ``task``,
    ``ledger`` and ``variables``. The simulator serves each virtual node with this same app."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def status(request: Any) -> JSONResponse:
        return JSONResponse({"status": 200, "message": "Running", "task_id": task_id})

    async def identity(request: Any) -> JSONResponse:
        return JSONResponse({"taskId": task_id})

    if getattr(task, "store", None) is None:
        try:
            task.store = store
        except AttributeError:
            pass
    app = Starlette(routes=[*list(task.routes() or []), Route("/", status), Route("/id", identity)])
    app.state.store = store
    app.state.task = task
    app.state.ledger = ledger
    app.state.variables = dict(variables)
    return app


def main() -> None:
    """Entry point of ``python -m pykoii.node.worker``."""
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray prints go to stderr, i.e. the task log, never into the protocol
    sys.stdout = sys.stderr
    channel = Channel(reader, writer)
    init = protocol.decode(reader.readline())
    try:
        level = limits.apply(init.get("sandbox", {}))
        os.environ.update({str(k): str(v) for k, v in dict(init.get("variables", {})).items()})
    except Exception as exc:
        channel.send({"kind": "ready", "ok": False, "error_type": "SandboxError", "error": str(exc)})
        return
    try:
        worker = Worker(channel, init)
        if init.get("listen_fd") is not None:
            worker.serve_routes(int(init["listen_fd"]))
    except BaseException as exc:  # noqa: BLE001
        channel.send(
            {
                "kind": "ready",
                "ok": False,
                "error_type": "TaskCodeError",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=20),
            }
        )
        return
    channel.send({"kind": "ready", "ok": True, "isolation": level, "pid": os.getpid()})
    while True:
        line = reader.readline()
        if not line:
            break
        message = protocol.decode(line)
        if message["kind"] == "run":
            lane = worker.work_executor if message.get("phase") == "task" else worker.executor
            lane.submit(worker.run, message)
        elif message["kind"] == "reply":
            channel.resolve(message)
        elif message["kind"] == "stop":
            break
    worker.store.close()
    writer.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
