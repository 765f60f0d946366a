"""The virtual nodes' HTTP server: every node's task routes, over real HTTP, in this process.

One uvicorn server on a free loopback port, in a background thread, serves each virtual node under
its own prefix: node N's ``/task/<task_id>/...`` answers at
``http://127.0.0.1:<port>/node-N/task/<task_id>/...``, built with the node's own app
(``pykoii.node.worker.task_app``: the task's ``routes()`` plus ``/`` and ``/id``) over the node's own
store. The URLs the task reads from the ledger point there (``StateReader``), so an auditor that
fetches a submitter's route gets the submitter's real answer, status codes and all. A route that
raises or answers 5xx is recorded in ``errors``, which fails the simulation.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError
from ..node.worker import task_app
from .nodes import SimulatedNode


class NodeServer:
    """Serves the routes of ``nodes``; ``start()`` before the run, ``stop()`` after."""

    def __init__(self, nodes: Iterable[SimulatedNode], task_id: str, ledger_of: Any) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Mount

        self.errors: list[str] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        mounts = []
        for node in nodes:
            app = task_app(node.task, task_id, node.store, ledger_of(node), node.variables)
            prefix = f"/node-{node.index}/task/{task_id}"
            mounts.append(Mount(prefix, app=self._recording(app, node.index)))
            node.url = f"{self.base}/node-{node.index}"
        self.app = Starlette(routes=mounts)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _recording(self, app: Any, index: int) -> Any:
        errors = self.errors

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            path = str(scope.get("path", "")).removeprefix(f"/node-{index}")

            async def watch(message: Any) -> None:
                if message["type"] == "http.response.start" and message["status"] >= 500:
                    errors.append(f"node {index} route {path}: HTTP {message['status']}")
                await send(message)

            try:
                await app(scope, receive, watch)
            except Exception as exc:
                errors.append(f"node {index} route {path}: {type(exc).__name__}: {exc}")
                raise

        return recorded

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app, log_level="critical", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])),
            daemon=True,
            name="simulated-nodes",
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise ConfigError(f"the simulated nodes' HTTP server did not start on {self.base}")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._sock.close()


__all__ = ["NodeServer"]
