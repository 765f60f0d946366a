"""The node's two HTTP surfaces, as Starlette apps on one uvicorn server (``create_server_app``).

**Public port** (``--port``, 30017, Koii's; ``create_node_app``), what other nodes and anyone may read:

- ``GET /`` → ``{"status": "OK", "message": "Node is running", ...}``
- ``GET /tasks`` → ``[{"TaskName", "TaskID", "status", "isolation", "limits", "last_limit", ...}]``
- ``GET /tasks/{task_id}`` → one task's status, recent actions, node events and last error
- ``ANY /task/{task_id}/{path}`` → proxied to the task's own routes (the child's unix socket), the
  ``/task/<id>`` prefix stripped, without the client's ``Cookie`` and ``Authorization`` headers;
  ``422 {"message": "Task <id> not running"}`` when it is not.

**Operator port** (``--dashboard-port``, 30018, bound to 127.0.0.1 only; ``create_operator_app``):
every request is checked for Host, Origin and the operator secret (``dashboard/security.py``):

- ``GET /login?token=<secret>`` → session cookie (HttpOnly, SameSite=Strict), redirect to ``/``
- the dashboard (``/`` for browsers, ``/dashboard/...``)
- ``GET /`` (JSON), ``GET /tasks``, ``GET /tasks/{task_id}`` as on the public port
- ``GET /tasks/{task_id}/logs?lines=200`` → the tail of the task's log (text, variables masked)
- ``GET /tasks/{task_id}/events`` → the node's events of the task (JSON)
- ``POST /tasks`` ``{"task_id", "stake", "variables"}`` → add (validate, download, verify, stake, start)
- ``POST /tasks/{task_id}/stop`` · ``POST /tasks/{task_id}/start`` · ``DELETE /tasks/{task_id}``
- ``POST /tasks/{task_id}/follow`` → follow a migrated task to its new version (``Node.follow_migration``)

The CLI sends ``Authorization: Bearer <secret>``, the secret read from ``<data>/operator.token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..dashboard import create_dashboard
from ..dashboard.node_dashboard import FRAME_DENY
from ..dashboard.security import OperatorAuth, load_secret
from ..errors import PykoiiError, UnknownTaskError
from ..ports import listen_socket
from .model import log

if TYPE_CHECKING:
    from .runtime import Node

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
PRIVATE_HEADERS = {"cookie", "authorization"}
"""Never passed to a task's routes: the operator's session cookie is sent by browsers to every port
of 127.0.0.1, the task's port included."""
OPEN_PATHS = ("/login", "/dashboard/static/")


async def serve(node: Node, sockets: list[socket.socket] | None = None) -> None:
    """Serve ``node``'s public port and operator port (``sockets``, default: bind both from its
    config) and run its tasks until cancelled or until SIGINT/SIGTERM; every task child is stopped
    before this returns. After a signal, the node still reveals the proofs it already sent, each in
    its window (``Node.stop_revealing``), unless a second signal stops it at once."""
    config = node.config
    if sockets is None:
        sockets = [
            listen_socket(config.host, config.port),
            listen_socket("127.0.0.1", config.dashboard_port, "--dashboard-port"),
        ]
    public_port, operator_port = (int(sock.getsockname()[1]) for sock in sockets)
    node.publish(public_port, operator_port)
    await node.start()
    app = create_server_app(node, public_port, operator_port)
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        await server.serve(sockets=sockets)
        await _reveal_before_exit(node)
    finally:
        await node.close()


async def _reveal_before_exit(node: Node) -> None:
    """``node.stop_revealing``, a second SIGINT or SIGTERM meaning "stop now"."""
    now = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, now.set)
            handled.append(sig)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread: the caller's
            pass

    def say(text: str) -> None:
        print(text, flush=True)
        log.warning("%s", text)

    try:
        await node.stop_revealing(now, say)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


class _Server(uvicorn.Server):
    """uvicorn's server, but SIGINT and SIGTERM only ask it to stop: uvicorn re-raises the signal
    once it stopped serving, which would kill the node before it stops its task children."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        try:
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        except ValueError:  # not the main thread: the caller owns the signals
            yield
            return
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def create_server_app(node: Node, public_port: int, operator_port: int) -> ASGIApp:
    """One ASGI app for both sockets: the operator app on ``operator_port``, the public one on the other."""
    public = create_node_app(node)
    operator = create_operator_app(node, operator_port)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") or ("", 0)
        target = operator if scope["type"] != "lifespan" and server[1] == operator_port else public
        await target(scope, receive, send)

    return app


def _error(exc: PykoiiError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": exc.name, "message": str(exc)}, status)


def _reads(node: Node) -> tuple[Any, Any, Any]:
    """The read routes both ports serve: status, task list, one task."""

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({"status": "OK", "message": "Node is running", **node.status()})

    async def tasks(request: Request) -> JSONResponse:
        return JSONResponse(node.task_list())

    async def task_detail(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        info = node.task_info(task_id)
        if info is None:
            return JSONResponse({"message": f"Task {task_id} is not added to this node"}, 404)
        return JSONResponse(info)

    return status, tasks, task_detail


def create_node_app(node: Node) -> Starlette:
    """The public app (port 30017): status, tasks, and the tasks' own routes. Nothing here acts."""
    status, tasks, task_detail = _reads(node)

    async def proxy(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        socket_path = node.task_socket(task_id)
        if socket_path is None:
            return JSONResponse({"message": f"Task {task_id} not running"}, 422)
        path = "/" + request.path_params.get("path", "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | PRIVATE_HEADERS}
        transport = httpx.AsyncHTTPTransport(uds=socket_path)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://task", timeout=30.0) as client:
                upstream = await client.request(
                    request.method,
                    path,
                    params=list(request.query_params.multi_items()),
                    headers=headers,
                    content=await request.body(),
                )
        except httpx.HTTPError as exc:
            return JSONResponse({"message": f"Task {task_id} did not answer: {exc}"}, 502)
        out_headers = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-encoding", "set-cookie")
        }
        return Response(upstream.content, upstream.status_code, headers=out_headers)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(
        routes=[
            Route("/", status),
            Route("/tasks", tasks),
            Route("/tasks/{task_id}", task_detail),
            Route("/task/{task_id}", proxy, methods=methods),
            Route("/task/{task_id}/{path:path}", proxy, methods=methods),
        ]
    )


def create_operator_app(node: Node, port: int) -> ASGIApp:
    """The operator app (loopback port ``port``): dashboard and control API, behind ``OperatorAuth``."""
    auth = OperatorAuth(load_secret(node.data_dir), port)
    status, tasks, task_detail = _reads(node)

    async def login(request: Request) -> Response:
        session = auth.login(request.query_params.get("token", ""))
        if session is None:
            return HTMLResponse(
                LOGIN_PAGE.format(message="That login link is not this node's."), 403, headers=FRAME_DENY
            )
        response = RedirectResponse("/", 303, headers=FRAME_DENY)
        response.headers["set-cookie"] = auth.cookie_header(session)
        return response

    async def add(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            info = await node.add_task(
                str(body["task_id"]), int(body["stake"]), dict(body.get("variables", {})), body.get("code")
            )
        except PykoiiError as exc:
            return _error(exc)
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse(
                {"error": "InvalidRequestError", "message": f"POST /tasks needs task_id, stake (ROE): {exc}"},
                400,
            )
        return JSONResponse(info, 201)

    async def remove(request: Request) -> JSONResponse:
        try:
            return JSONResponse(await node.remove_task(request.path_params["task_id"]))
        except PykoiiError as exc:
            return _error(exc, 404)

    async def task_control(request: Request) -> JSONResponse:
        task_id, verb = request.path_params["task_id"], request.path_params["verb"]
        try:
            if verb == "stop":
                return JSONResponse(await node.stop_task(task_id))
            if verb == "start":
                return JSONResponse(await node.start_task(task_id))
            if verb == "follow":
                return JSONResponse(await node.follow_migration(task_id))
        except UnknownTaskError as exc:
            return _error(exc, 404)
        except PykoiiError as exc:
            return _error(exc, 400)
        return JSONResponse({"message": f"unknown action {verb!r}; accepted: start, stop, follow"}, 404)

    async def task_logs(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            lines = max(1, min(int(request.query_params.get("lines", "200")), 10_000))
        except ValueError:
            return JSONResponse({"message": "lines must be an integer"}, 400)
        text = node.task_log_tail(task_id, lines)
        if text is None:
            return JSONResponse({"message": f"Task {task_id} is not added to this node"}, 404)
        return PlainTextResponse(text)

    async def task_events(request: Request) -> JSONResponse:
        task_id = request.path_params["task_id"]
        return JSONResponse(node.journal.events(task_id, 500))

    app = Starlette(
        routes=[
            Route("/login", login),
            *create_dashboard(node, auth),
            Route("/", status),
            Route("/tasks", tasks, methods=["GET"]),
            Route("/tasks", add, methods=["POST"]),
            Route("/tasks/{task_id}", task_detail, methods=["GET"]),
            Route("/tasks/{task_id}", remove, methods=["DELETE"]),
            Route("/tasks/{task_id}/logs", task_logs),
            Route("/tasks/{task_id}/events", task_events),
            Route("/tasks/{task_id}/{verb}", task_control, methods=["POST"]),
        ]
    )

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request = Request(scope)
        why = auth.check(request)
        if why is not None:
            response: Response = JSONResponse({"error": "Forbidden", "message": why}, 403, headers=FRAME_DENY)
        elif scope["path"].startswith(OPEN_PATHS) or auth.authenticated(request):
            await app(scope, receive, send)
            return
        elif "text/html" in request.headers.get("accept", ""):
            response = HTMLResponse(LOGIN_PAGE.format(message="Log in first."), 401, headers=FRAME_DENY)
        else:
            response = JSONResponse(
                {
                    "error": "Unauthorized",
                    "message": "operator requests need the node's operator secret (<data>/operator.token) "
                    "as `Authorization: Bearer`, or the session of the login link `pykoii node run` printed",
                },
                401,
            )
        await response(scope, receive, send)

    return guarded


LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pykoii node: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
<h1>pykoii node</h1><p>{message}</p>
<p>Open the login link that <code>pykoii node run</code> printed when it started
(<code>http://127.0.0.1:PORT/login?token=…</code>); the token is also in the node's data folder,
<code>operator.token</code>.</p></body></html>
"""
